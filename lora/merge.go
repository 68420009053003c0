package lora

import (
	"fmt"
	"sort"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Params lists every parameter the set changes, sorted.
func (s *Set) Params() []string {
	if s == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, b := range s.items {
		for p := range b.deltas {
			seen[p] = true
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Touches reports whether the set changes param.
func (s *Set) Touches(param string) bool {
	if s == nil {
		return false
	}
	for _, b := range s.items {
		if len(b.deltas[param]) > 0 {
			return true
		}
	}
	return false
}

// Delta returns Σ s·(B·A) + Σ s·diff over the set's changes to param
// (shape: the parameter's), in float32: each B·A is a float32 GEMM, each
// term is scaled by s = strength × format scale (alpha/rank or 1) rounded
// once to float32, and terms are summed in adapter order. It returns nil
// when no adapter changes param.
func (s *Set) Delta(param string, shape []int) (acc []float32, err error) {
	if s == nil {
		return nil, nil
	}
	defer backend.Recover(&err)
	n := tensor.NumElements(shape)
	for _, b := range s.items {
		a := b.a
		for _, d := range b.deltas[param] {
			term, err := a.term(d, shape)
			if err != nil {
				return nil, err
			}
			if len(term) != n {
				return nil, fmt.Errorf("LoRA %s: %s: delta of %d values for a parameter of shape %v", a.Path, param, len(term), shape)
			}
			sc := float32(a.Scale * d.scale)
			if acc == nil {
				for i, v := range term {
					term[i] = sc * v
				}
				acc = term
				continue
			}
			for i, v := range term {
				acc[i] += sc * v
			}
		}
	}
	return acc, nil
}

// Merge adds s.Delta(param, shape) to w in float32 and reports whether
// anything changed. The caller rounds w once to the model dtype.
func (s *Set) Merge(param string, shape []int, w []float32) (bool, error) {
	if len(w) != tensor.NumElements(shape) {
		return false, fmt.Errorf("lora: Merge %s: %d values for shape %v", param, len(w), shape)
	}
	d, err := s.Delta(param, shape)
	if err != nil || d == nil {
		return false, err
	}
	for i, v := range d {
		w[i] += v
	}
	return true, nil
}

// term returns one delta unscaled: B·A [out, in] or the diff tensor.
func (a *Adapter) term(d delta, shape []int) ([]float32, error) {
	if a.f == nil {
		return nil, fmt.Errorf("LoRA %s: closed", a.Path)
	}
	if d.kind == full {
		return a.f.Float32(d.diff)
	}
	A, err := a.f.Float32(d.down) // [rank, in]
	if err != nil {
		return nil, err
	}
	B, err := a.f.Float32(d.up) // [out, rank]
	if err != nil {
		return nil, err
	}
	out, in := rowsCols(shape)
	r := d.rank
	if len(A) != r*in || len(B) != out*r {
		return nil, fmt.Errorf("LoRA %s: %s: A has %d values and B %d, want %d×%d and %d×%d", a.Path, d.param, len(A), len(B), r, in, out, r)
	}
	// cpu.Gemm computes C = X·Yᵀ: X = B [out, r], Y = Aᵀ [in, r].
	At := make([]float32, in*r)
	for k := 0; k < r; k++ {
		row := A[k*in : (k+1)*in]
		for i, v := range row {
			At[i*r+k] = v
		}
	}
	D := make([]float32, out*in)
	cpu.Gemm(out, in, r, B, r, At, r, D, in, nil)
	return D, nil
}
