package wan

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// int8ActCPU is the CPU backend plus int8ActOps written as the ops they
// replace (the bf16 op, then package quant's quantiser; the int8 GEMM on
// the codes), so the model's quantised-activation path runs without a GPU.
// calls counts each op's runs.
type int8ActCPU struct {
	*cpu.Backend
	calls map[string]int
}

func (b int8ActCPU) quantise(x backend.Tensor) (q, s backend.Tensor) {
	shape := x.Shape()
	k := shape[len(shape)-1]
	v := b.Download(x)
	codes, sc, err := quant.Quantize(v, len(v)/k, k)
	if err != nil {
		backend.FailErr(err)
	}
	sr, scn := quant.ScaleShape(len(v)/k, k)
	return b.UploadInt8(shape, codes), b.Upload(tensor.F32, []int{sr, scn}, sc)
}

func (b int8ActCPU) AddLayerNormInt8(x, y, gate, w, bias, shift, scale backend.Tensor, eps float32) (sum, q, s backend.Tensor) {
	b.calls["AddLayerNormInt8"]++
	src := x
	switch {
	case y != nil && gate != nil:
		sum = b.GatedAdd(x, y, gate)
		src = sum
	case y != nil:
		sum = b.Add(x, y)
		src = sum
	}
	n := b.LayerNorm(src, w, bias, eps, x.DType())
	if shift != nil { // bf16(LN(x))·(1+scale)+shift, as Model.normModulate
		mod := b.Modulate(n, shift, scale)
		b.Free(n)
		n = mod
	}
	defer b.Free(n)
	q, s = b.quantise(n)
	return sum, q, s
}

func (b int8ActCPU) Int8LinearQ(q, s, w, ws, bias backend.Tensor) backend.Tensor {
	b.calls["Int8LinearQ"]++
	qt, st, wt, wst := cpu.T(q), cpu.T(s), cpu.T(w), cpu.T(ws)
	n, k := wt.Shape()[0], wt.Shape()[1]
	m := len(qt.I) / k
	y, err := quant.GEMM(qt.I, st.F, wt.I, wst.F, m, n, k)
	if err != nil {
		backend.FailErr(err)
	}
	var bv []float32
	if bias != nil {
		bv = cpu.T(bias).F
	}
	for i := range y { // bf16 output, then the bias added in bf16 (quant.Linear's finish)
		y[i] = tensor.RoundBF16(y[i])
		if bv != nil {
			y[i] = tensor.RoundBF16(y[i] + bv[i%n])
		}
	}
	shape := append(append([]int(nil), qt.Shape()[:len(qt.Shape())-1]...), n)
	return b.Upload(tensor.BF16, shape, y)
}

func (b int8ActCPU) Int8LinearGELUQ(q, s, w, ws, bias backend.Tensor) (backend.Tensor, backend.Tensor) {
	b.calls["Int8LinearGELUQ"]++
	h := b.Int8LinearQ(q, s, w, ws, bias)
	defer b.Free(h)
	g := b.GELUTanh(h)
	defer b.Free(g)
	return b.quantise(g)
}

// TestInt8ActivationsPath runs the golden int8 DiT on the CPU twice: with
// the backend's own Int8Linear (each Linear quantises its bf16 input), and
// through int8ActOps, where the norms hand quantised activations to the
// Linears (shared by q/k/v) and the FFN's GELU hands its codes to the
// second Linear. The two outputs must be bit-identical: the quantised path
// must feed every Linear exactly the codes it would have made itself.
func TestInt8ActivationsPath(t *testing.T) {
	in := loadInputs(t)
	opt := Options{DType: tensor.BF16, Norm: backend.NormFast, Attention: backend.Dense, Linear: LinearInt8}
	run := func(be backend.DiT) []float32 {
		m, err := Load(be, golden.Open(t, "dit_int8.pth"), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		if _, ok := m.int8Acts(); ok != isInt8Act(be) {
			t.Fatalf("int8Acts() = %v on %T", ok, be)
		}
		txt, err := m.EmbedText(in.text, in.rows)
		if err != nil {
			t.Fatal(err)
		}
		defer txt.Free()
		out, err := m.Forward(in.x, in.shape, in.t, txt)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	plain := run(cpu.New())
	ops := int8ActCPU{cpu.New(), map[string]int{}}
	fused := run(ops)
	// Otherwise the comparison below is of the per-Linear path with itself.
	for _, op := range []string{"AddLayerNormInt8", "Int8LinearQ", "Int8LinearGELUQ"} {
		if ops.calls[op] == 0 {
			t.Errorf("the forward never ran %s: %v", op, ops.calls)
		}
	}
	t.Logf("quantised-activation op calls %v", ops.calls)
	diff := 0
	for i := range plain {
		if math.Float32bits(plain[i]) != math.Float32bits(fused[i]) {
			diff++
		}
	}
	if diff > 0 {
		t.Fatalf("%d of %d outputs differ between the quantised-activation path and per-Linear quantisation", diff, len(plain))
	}
}

func isInt8Act(be backend.DiT) bool { _, ok := be.(int8ActOps); return ok }
