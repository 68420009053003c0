package wan

import (
	"fmt"
	"slices"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
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
