package sla

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// sparse is the SLA Triton kernel's forward (docs/NUMERICS.md §6.2) on bf16
// q, k, v [heads, L, d]: per query block, flash-style online softmax over
// the selected key blocks in the kernel's visiting order (see selection),
// scores S = Q·Kᵀ in float32 scaled by
// d^-0.5·log2(e), p = exp2(s − m), bf16(p)·V accumulated in float32,
// finally o/l rounded to bf16. Output [heads, L, d].
func sparse(q, k, v []float32, g Geometry, order [][]int, mm MatMul) []float32 {
	qb, d, L := g.QBlocks(), g.D, g.L
	// The kernel's constant: Python computes qk_scale·log2(e) in float64.
	scale := float32(math.Pow(float64(d), -0.5) * 1.4426950408889634)
	vt := make([][]float32, g.Heads) // V per head as [d, L], the B operand of P·V
	parallel.For(g.Heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			vt[h] = transpose(v[h*L*d:(h+1)*L*d], L, d)
		}
	})
	out := make([]float32, len(q))
	parallel.For(g.Heads*qb, func(lo, hi int) {
		bq, bk := g.BlockQ, g.BlockK
		mrow := make([]float32, bq)
		lrow := make([]float32, bq)
		o := make([]float32, bq*d)
		s := make([]float32, bq*bk)
		pv := make([]float32, bq*d)
		for t := lo; t < hi; t++ {
			h, i := t/qb, t%qb
			r0, r1 := i*bq, min(i*bq+bq, L)
			nr := r1 - r0
			base := h * L * d
			for r := range nr {
				mrow[r] = float32(math.Inf(-1))
				lrow[r] = 0
			}
			clear(o)
			for _, j := range order[t] {
				c0, c1 := j*bk, min(j*bk+bk, L)
				nk := c1 - c0
				mm(nr, nk, d, q[base+r0*d:], d, k[base+c0*d:], d, s, nk)
				for r := range nr {
					sr := s[r*nk : r*nk+nk]
					mNew := mrow[r]
					for c := range sr {
						sr[c] *= scale
						mNew = max(mNew, sr[c])
					}
					alpha := exp2f(mrow[r] - mNew)
					var lij float32
					for c, x := range sr {
						p := exp2f(x - mNew)
						lij += p
						sr[c] = tensor.RoundBF16(p)
					}
					lrow[r] = lrow[r]*alpha + lij
					mrow[r] = mNew
					or := o[r*d : r*d+d]
					for x := range or {
						or[x] *= alpha
					}
				}
				mm(nr, d, nk, s, nk, vt[h][c0:], L, pv, d)
				for x := range o[:nr*d] {
					o[x] += pv[x]
				}
			}
			for r := range nr {
				dst := out[base+(r0+r)*d : base+(r0+r)*d+d]
				for x := range dst {
					dst[x] = tensor.RoundBF16(o[r*d+x] / lrow[r])
				}
			}
		}
	})
	return out
}
