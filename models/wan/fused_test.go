package wan

import (
	"slices"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// fusedDiT is the CPU backend with the optional fused DiT ops the model
// looks for (LinearGELU, RMSNormRoPE, AddLayerNorm) written as their
// definitions, so the model's fused plumbing — which tensors each block
// hands to the next and frees — runs without a GPU. It remembers every
// tensor the fused ops return, to check that Forward frees them all.
type fusedDiT struct {
	*cpu.Backend
	calls map[string]int
	made  []backend.Tensor
}

func (f *fusedDiT) keep(name string, ts ...backend.Tensor) {
	f.calls[name]++
	f.made = append(f.made, ts...)
}

func (f *fusedDiT) LinearGELU(x, w, bias backend.Tensor) backend.Tensor {
	h := f.Linear(x, w, bias)
	g := f.GELUTanh(h)
	f.Free(h)
	f.keep("LinearGELU", g)
	return g
}

func (f *fusedDiT) RMSNormRoPE(x, w backend.Tensor, eps float32, mode backend.NormMode, angles backend.Tensor, heads int) backend.Tensor {
	r := f.RMSNorm(x, w, eps, mode)
	out := f.RoPE(r, angles, heads)
	f.Free(r)
	f.keep("RMSNormRoPE", out)
	return out
}

func (f *fusedDiT) AddLayerNorm(x, y, gate, w, bias, shift, scale backend.Tensor, eps float32) (sum, normed backend.Tensor) {
	if gate != nil {
		sum = f.GatedAdd(x, y, gate)
	} else {
		sum = f.Add(x, y)
	}
	if shift != nil {
		n := f.LayerNorm(sum, nil, nil, eps, sum.DType())
		normed = f.Modulate(n, shift, scale)
		f.Free(n)
	} else {
		normed = f.LayerNorm(sum, w, bias, eps, sum.DType())
	}
	f.keep("AddLayerNorm", sum, normed)
	return sum, normed
}

// freed reports whether the CPU backend has dropped t's storage (it fails
// on any use of a freed tensor).
func freed(t backend.Tensor) (yes bool) {
	defer func() { yes = recover() != nil }()
	cpu.T(t)
	return false
}

// TestFusedForwardMatches runs the conformance DiT through the fused ops
// and checks the output equals the CPU backend's bit for bit (the fused ops
// here are compositions, so any difference is the model's plumbing: a
// wrong tensor handed on, or one used after Free, which the CPU backend
// reports) and that every tensor the fused ops made was freed.
// ExactRounding must keep the GELU out of the GEMM.
func TestFusedForwardMatches(t *testing.T) {
	in := loadInputs(t)
	for _, c := range []struct {
		name string
		opt  Options
		gelu bool // LinearGELU expected
	}{
		{"bf16", Options{DType: tensor.BF16, Norm: backend.NormDefault}, true},
		{"bf16_exact", Options{DType: tensor.BF16, Norm: backend.NormDefault, ExactRounding: true}, false},
		{"fp32", Options{DType: tensor.F32, Norm: backend.NormDefault}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := forwardOn(t, cpu.New(), c.opt, in)
			f := &fusedDiT{Backend: cpu.New(), calls: map[string]int{}}
			got := forwardOn(t, f, c.opt, in)
			if !slices.Equal(got, want) {
				golden.Compare(t, c.name+" fused forward", got, want, 0)
				t.Errorf("fused forward differs from the plain one")
			}
			t.Logf("fused op calls %v", f.calls)
			if f.calls["AddLayerNorm"] == 0 || f.calls["RMSNormRoPE"] == 0 {
				t.Errorf("fused ops not used: %v", f.calls)
			}
			if (f.calls["LinearGELU"] > 0) != c.gelu {
				t.Errorf("LinearGELU ran %d times, want it used: %v", f.calls["LinearGELU"], c.gelu)
			}
			for i, x := range f.made {
				if !freed(x) {
					t.Errorf("tensor %d of %d made by a fused op (%v %v) was not freed", i, len(f.made), x.DType(), x.Shape())
				}
			}
		})
	}
}

func forwardOn(t *testing.T, be backend.DiT, opt Options, in goldenInputs) []float32 {
	t.Helper()
	return forwardFile(t, be, golden.Open(t, "dit_weights.safetensors"), opt, in)
}

// forwardFile is one forward of the model in f on the set's inputs.
func forwardFile(t *testing.T, be backend.DiT, f checkpoint.File, opt Options, in goldenInputs) []float32 {
	t.Helper()
	m, err := Load(be, f, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
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
