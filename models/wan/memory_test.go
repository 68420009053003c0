package wan

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/sizeclass"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestDeviceTensorsMatchLoad: the tensors DeviceTensors lists (what memory
// estimates count) are exactly the ones Load uploads, with their dtypes and
// shapes, for bf16, float32, -quant and dense (no proj_l) loads.
func TestDeviceTensorsMatchLoad(t *testing.T) {
	bf16Path, quantPath := tinyDiTFiles(t)
	for _, c := range []struct {
		name string
		path string
		opt  Options
	}{
		{"bf16 sla", bf16Path, Options{Attention: backend.SLA}},
		{"bf16 dense", bf16Path, Options{Attention: backend.Dense}},
		{"f32", bf16Path, Options{DType: tensor.F32}},
		{"quant sagesla", quantPath, Options{Attention: backend.SageSLA}},
	} {
		f := openFile(t, c.path)
		fi, err := DetectConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := DeviceTensors(fi, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Load(cpu.New(), f, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range m.params() {
			for _, x := range []*backend.Tensor{p.dst, p.scale} {
				if x != nil && *x != nil {
					got = append(got, describe(*x))
				}
			}
		}
		m.Free()
		var w []string
		for _, i := range want {
			w = append(w, i.DType.String()+fmt.Sprint(i.Shape))
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s: Load uploads %d tensors, DeviceTensors lists %d:\n got %v\nwant %v", c.name, len(got), len(w), got, w)
		}
	}
}

func describe(t backend.Tensor) string { return t.DType().String() + fmt.Sprint(t.Shape()) }

// TestOffloadForwardMatches: with Offload (the CPU backend's Streamer) the
// text embedding and the forward give exactly the resident model's output
// (bf16 SLA, -quant SageSLA, float32 dense), the device keeps two blocks'
// Linear weights, and DeviceTensors lists what stays resident.
func TestOffloadForwardMatches(t *testing.T) {
	bf16Path, quantPath := tinyDiTFiles(t)
	// Three blocks of different random weights, so the slots are reused
	// (block 2 goes into slot 0) and a block given another's weights shows.
	c3 := base("", T2V, 128, 256, 1, 3, 16)
	c3.FreqDim, c3.TextDim = 64, loraTextDim
	three := testmodels.NewRandom("random:three-blocks", Tensors(c3), 4)
	for _, c := range []struct {
		name string
		f    checkpoint.File
		opt  Options
	}{
		{"bf16 sla 3 blocks", three, Options{Attention: backend.SLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
		{"quant sagesla", openFile(t, quantPath), Options{Attention: backend.SageSLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
		{"f32 dense", openFile(t, bf16Path), Options{DType: tensor.F32}},
	} {
		f := c.f
		ref := loadWithLoRA(t, f, c.opt)
		want := tinyForward(t, ref)
		opt := c.opt
		opt.Offload = true
		m := loadWithLoRA(t, f, opt)
		got := tinyForward(t, m)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the offloaded forward differs from the resident one", c.name)
		}
		for i := range m.blocks {
			if m.blocks[i].sq.w != nil {
				t.Fatalf("%s: block %d's q weight is on the device", c.name, i)
			}
		}
		fi, _ := DetectConfig(f)
		ts, err := DeviceTensors(fi, opt)
		if err != nil {
			t.Fatal(err)
		}
		full, _ := DeviceTensors(fi, c.opt)
		perBlock := 10
		if fi.Quantized {
			perBlock = 20
		}
		if want := len(full) - perBlock*max(0, fi.Config.Layers-2); len(ts) != want {
			t.Errorf("%s: DeviceTensors lists %d tensors with offload, want %d", c.name, len(ts), want)
		}
	}
}

// countingBE counts the bytes a load puts on the device (uploads and the
// streamer's device slots) and in host memory (the streamer's copies), in
// the CUDA pool's size classes, around the CPU backend.
type countingBE struct {
	*cpu.Backend
	dev, host int64
}

func poolBytes(dt tensor.DType, shape []int) int64 {
	return sizeclass.Round(int64(tensor.NumElements(shape)) * int64(dt.Size()))
}

func (c *countingBE) Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	c.dev += poolBytes(dt, shape)
	return c.Backend.Upload(dt, shape, data)
}

func (c *countingBE) UploadInt8(shape []int, data []int8) backend.Tensor {
	c.dev += poolBytes(tensor.I8, shape)
	return c.Backend.UploadInt8(shape, data)
}

func (c *countingBE) Alloc(dt tensor.DType, shape []int) backend.Tensor {
	c.dev += poolBytes(dt, shape)
	return c.Backend.Alloc(dt, shape)
}

func (c *countingBE) HostUpload(dt tensor.DType, shape []int, data []float32) backend.HostTensor {
	c.host += int64(tensor.NumElements(shape) * dt.Size())
	return c.Backend.HostUpload(dt, shape, data)
}

func (c *countingBE) HostUploadInt8(shape []int, data []int8) backend.HostTensor {
	c.host += int64(tensor.NumElements(shape))
	return c.Backend.HostUploadInt8(shape, data)
}

// TestOffloadDeviceBytes: what Load allocates on the device, slots
// included, is what DeviceTensors lists (what the memory planner counts),
// byte for byte in pool size classes, for bf16 and -quant files resident
// and offloaded (five blocks, so three are streamed only); with offload the
// host holds every block's Linear weights (codes and scales for -quant).
func TestOffloadDeviceBytes(t *testing.T) {
	c5 := base("", T2V, 256, 512, 2, 5, 16)
	c5.FreqDim, c5.TextDim = 64, loraTextDim
	f5 := testmodels.NewRandom("random:five-blocks", Tensors(c5), 4)
	qp := filepath.Join(t.TempDir(), "five-quant.safetensors")
	if err := quant.QuantizeCheckpoint(f5, qp); err != nil {
		t.Fatal(err)
	}
	for _, f := range []checkpoint.File{f5, openFile(t, qp)} {
		fi, err := DetectConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		var linHost int64 // every block's Linear weights (and scales)
		for _, s := range expectedTensors(fi.Config, fi.layout()) {
			if strings.HasPrefix(s.name, "blocks.") && (strings.HasSuffix(s.name, ".int8_weight") || strings.HasSuffix(s.name, ".scale") ||
				strings.HasSuffix(s.name, ".weight") && slices.ContainsFunc(blockLinears, func(l string) bool { return strings.HasSuffix(s.name, "."+l+".weight") })) {
				dt := tensor.BF16
				switch {
				case strings.HasSuffix(s.name, ".int8_weight"):
					dt = tensor.I8
				case strings.HasSuffix(s.name, ".scale"):
					dt = tensor.F32
				}
				linHost += int64(tensor.NumElements(s.shape) * dt.Size())
			}
		}
		for _, off := range []bool{false, true} {
			opt := Options{Attention: backend.SageSLA, Offload: off}
			be := &countingBE{Backend: cpu.New()}
			m, err := Load(be, f, opt)
			if err != nil {
				t.Fatal(err)
			}
			ts, err := DeviceTensors(fi, opt)
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, x := range ts {
				want += poolBytes(x.DType, x.Shape)
			}
			t.Logf("quantised %v, offload %v: device %d bytes (listed %d), host %d", fi.Quantized, off, be.dev, want, be.host)
			if be.dev != want {
				t.Errorf("quantised %v, offload %v: Load puts %d bytes on the device, DeviceTensors lists %d", fi.Quantized, off, be.dev, want)
			}
			if wantHost := map[bool]int64{false: 0, true: linHost}[off]; be.host != wantHost {
				t.Errorf("quantised %v, offload %v: %d bytes in host memory, want %d", fi.Quantized, off, be.host, wantHost)
			}
			m.Free()
		}
	}
}
