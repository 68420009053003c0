package sla

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// sparse is the SLA Triton kernel's forward (REFERENCE.md §4.2) on bf16
// q, k, v [heads, L, d]: per query block, flash-style online softmax over
// the selected key blocks (ascending), scores in float32 scaled by
// d^-0.5·log2(e), p = exp2(s − m), bf16(p)·v accumulated in float32,
// finally o/l rounded to bf16. Output [heads, L, d].
func sparse(q, k, v []float32, g Geometry, bmap []int8) []float32 {
	qb, kb, d := g.QBlocks(), g.KBlocks(), g.D
	// The kernel's constant: Python computes qk_scale·log2(e) in float64.
	scale := float32(math.Pow(float64(d), -0.5) * 1.4426950408889634)
	out := make([]float32, len(q))
	parallelFor(g.Heads*qb, func(lo, hi int) {
		bq := g.BlockQ
		mrow := make([]float32, bq)
		lrow := make([]float32, bq)
		o := make([]float32, bq*d)
		s := make([]float32, g.BlockK)
		for t := lo; t < hi; t++ {
			h, i := t/qb, t%qb
			r0, r1 := i*bq, min(i*bq+bq, g.L)
			base := h * g.L * d
			for r := range r1 - r0 {
				mrow[r] = float32(math.Inf(-1))
				lrow[r] = 0
			}
			clear(o)
			for _, j := range selectedBlocks(bmap[t*kb : t*kb+kb]) {
				c0, c1 := j*g.BlockK, min(j*g.BlockK+g.BlockK, g.L)
				for r := r0; r < r1; r++ {
					qr := q[base+r*d : base+r*d+d]
					ri := r - r0
					mNew := mrow[ri]
					for c := c0; c < c1; c++ {
						s[c-c0] = dot(qr, k[base+c*d:base+c*d+d]) * scale
						mNew = max(mNew, s[c-c0])
					}
					alpha := exp2f(mrow[ri] - mNew)
					or := o[ri*d : ri*d+d]
					for x := range or {
						or[x] *= alpha
					}
					var lij float32
					for c := c0; c < c1; c++ {
						p := exp2f(s[c-c0] - mNew)
						lij += p
						pb := tensor.RoundBF16(p)
						if pb == 0 {
							continue
						}
						vr := v[base+c*d : base+c*d+d]
						for x, vv := range vr {
							or[x] += pb * vv
						}
					}
					lrow[ri] = lrow[ri]*alpha + lij
					mrow[ri] = mNew
				}
			}
			for r := r0; r < r1; r++ {
				ri := r - r0
				dst := out[base+r*d : base+r*d+d]
				for x := range dst {
					dst[x] = tensor.RoundBF16(o[ri*d+x] / lrow[ri])
				}
			}
		}
	})
	return out
}
