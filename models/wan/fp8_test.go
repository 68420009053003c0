package wan

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// fp8CPU is the CPU backend whose Int8Linear reads the "int8" weight bytes
// as e4m3 codes (a checkpoint written by fp8Checkpoint) and quantises the
// activation to e4m3 with quant's FP8 rule: the accuracy of an FP8
// block-scaled linear, emulated.
type fp8CPU struct {
	*cpu.Backend
	rows int // activation rows per scale: 1, or 128 (the int8 tiles)
}

func (b fp8CPU) Int8Linear(x, w, scale, bias backend.Tensor) backend.Tensor {
	xt, wt, st := cpu.T(x), cpu.T(w), cpu.T(scale)
	n, k := wt.Shape()[0], wt.Shape()[1]
	m := len(xt.F) / k
	xq, sx, err := quant.QuantizeFP8Tiles(xt.F, m, k, b.rows)
	if err != nil {
		backend.FailErr(err)
	}
	wq := unsafe.Slice((*uint8)(unsafe.Pointer(unsafe.SliceData(wt.I))), len(wt.I))
	y, err := quant.GEMMFP8(xq, sx, b.rows, wq, st.F, m, n, k)
	if err != nil {
		backend.FailErr(err)
	}
	var bv []float32
	if bias != nil {
		bv = cpu.T(bias).F
	}
	for i := range y { // as Int8Linear: bf16 output, bias added in bf16
		y[i] = tensor.RoundBF16(y[i])
		if bv != nil {
			y[i] = tensor.RoundBF16(y[i] + bv[i%n])
		}
	}
	return b.Upload(tensor.BF16, append(append([]int(nil), xt.Shape()[:len(xt.Shape())-1]...), n), y)
}

// fp8Checkpoint writes in's -quant layout (quant.QuantizedTensors: the same
// Linears, names and shapes as the int8 checkpoint) with e4m3 weight codes
// and FP8 tile scales in place of the int8 ones.
func fp8Checkpoint(t *testing.T, in checkpoint.File) checkpoint.File {
	ts, err := quant.QuantizedTensors(in)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string][]float32{} // base name -> scales, filled when its codes are made
	for i := range ts {
		name := ts[i].Name
		switch {
		case strings.HasSuffix(name, ".int8_weight"):
			base := strings.TrimSuffix(name, ".int8_weight")
			shape := ts[i].Shape
			ts[i].Load = func() ([]byte, error) {
				w, err := in.Float32(base + ".weight")
				if err != nil {
					return nil, err
				}
				q, s, err := quant.QuantizeFP8(w, shape[0], shape[1])
				codes[base] = s
				return q, err
			}
		case strings.HasSuffix(name, ".scale"):
			base := strings.TrimSuffix(name, ".scale")
			ts[i].Load = func() ([]byte, error) {
				s, ok := codes[base]
				if !ok {
					t.Fatalf("%s written before its codes", name)
				}
				out := make([]byte, 4*len(s))
				for j, v := range s {
					binary.LittleEndian.PutUint32(out[4*j:], math.Float32bits(v))
				}
				return out, nil
			}
		}
	}
	path := filepath.Join(t.TempDir(), "dit_fp8.pth")
	if err := checkpoint.WritePth(path, ts); err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFP8LinearsGoldenDistance measures, on the golden DiT (bf16, SLA, Fast
// norms, the set's inputs), how far W8A8 block Linears move the output from
// the bf16 model: int8 (the reference's quantised checkpoint) and FP8 e4m3
// (weights quantised here from the bf16 checkpoint per 128×128 tile,
// activations per row and 128 columns as DeepGEMM does; an exact-dot
// tensor core emulated). The reference's own int8-vs-bf16 distance (golden
// README) is 1.5e-2: int8 gives 1.50e-2 here, FP8 4.78e-2 (5.09e-2 with
// 128×128 activation tiles) — e4m3's 3 mantissa bits lose more than int8's
// 128 steps per tile, so an FP8 linear is not "equal accuracy" and was not
// built for the GPU (docs/PERF.md).
func TestFP8LinearsGoldenDistance(t *testing.T) {
	man := golden.LoadManifest(t)
	in := loadInputs(t)
	opt := Options{DType: tensor.BF16, Norm: backend.NormFast, Attention: backend.SLA,
		TopK:   man.Number(t, "configs", "dit", "sla_topk"),
		BlockQ: int(man.Number(t, "configs", "dit", "sla_BLKQ")),
		BlockK: int(man.Number(t, "configs", "dit", "sla_BLKK"))}
	run := func(be backend.DiT, f checkpoint.File, lin LinearMode) []float32 {
		o := opt
		o.Linear = lin
		return forwardFile(t, be, f, o, in)
	}
	weights := golden.Open(t, "dit_weights.pth")
	bf := run(cpu.New(), weights, LinearFloat)
	i8 := run(cpu.New(), golden.Open(t, "dit_int8.pth"), LinearInt8)
	f8 := run(fp8CPU{cpu.New(), 1}, fp8Checkpoint(t, weights), LinearInt8)
	rel := func(a, b []float32) float64 {
		var n, d float64
		for i := range a {
			e := float64(a[i]) - float64(b[i])
			n += e * e
			d += float64(b[i]) * float64(b[i])
		}
		return math.Sqrt(n / d)
	}
	d8, df := rel(i8, bf), rel(f8, bf)
	t.Logf("rel-L2 to the bf16 DiT output (CPU, SLA, Fast norms): int8 W8A8 %.3e; FP8 e4m3 W8A8 (1×128 activation scales) %.3e (reference int8 vs bf16: 1.51e-02)", d8, df)
	// int8 must reproduce the reference's own distance; FP8 must have
	// quantised (measured 5.1e-2: outside the golden DiT tolerance, 3.4× int8).
	if !(d8 > 1e-4 && d8 < 2e-2) {
		t.Errorf("int8: distance to bf16 %.3e, want in (1e-4, 2e-2) like the reference's 1.51e-2", d8)
	}
	if !(df > 1e-4 && df < 0.2) {
		t.Errorf("FP8: distance to bf16 %.3e, want in (1e-4, 0.2)", df)
	}
}
