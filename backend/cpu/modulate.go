package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Modulate returns x·(1+scale)+shift: (1+scale), the product and the sum
// each rounded to float32 as PyTorch's three kernels do, then one rounding
// to x's dtype. shift and scale are [D] or any suffix of x's shape (e.g.
// per-token [L, D]).
func (b *Backend) Modulate(x, shift, scale backend.Tensor) backend.Tensor {
	cx, csh := suffixOperand("Modulate shift", x, shift)
	_, csc := suffixOperand("Modulate scale", x, scale)
	if !backend.SameShape(csh.shape, csc.shape) {
		backend.Fail("cpu: Modulate: shift %v and scale %v differ in shape", csh.shape, csc.shape)
	}
	out := b.newOut(cx.dt, cx.shape)
	n := len(csh.F)
	b.elementwise(len(out.F), func(lo, hi int) {
		forRuns(lo, hi, n, func(i, j, cnt int) {
			x, o, sc, sh := cx.F[i:i+cnt], out.F[i:i+cnt], csc.F[j:j+cnt], csh.F[j:j+cnt]
			for t := range o {
				o[t] = float32(x[t]*float32(1+sc[t])) + sh[t]
			}
		})
		roundSlice(out.dt, out.F[lo:hi])
	})
	return out
}

// GatedAdd returns x + y·gate. For BF16 x the gate is rounded to bf16, the
// product rounded to bf16 and the sum rounded to bf16 (TD's
// `x + y * e.type_as(x)`); for F32 x each step rounds to float32. y has x's
// shape; gate is [D] or another suffix of it.
func (b *Backend) GatedAdd(x, y, gate backend.Tensor) backend.Tensor {
	cx, cy := floatT("GatedAdd", x), floatT("GatedAdd", y)
	if !backend.SameShape(cx.shape, cy.shape) {
		backend.Fail("cpu: GatedAdd: y has shape %v, x has %v", cy.shape, cx.shape)
	}
	_, cg := suffixOperand("GatedAdd gate", x, gate)
	g := append([]float32(nil), cg.F...)
	roundSlice(cx.dt, g)
	out := b.newOut(cx.dt, cx.shape)
	n := len(g)
	bf := cx.dt == tensor.BF16
	b.elementwise(len(out.F), func(lo, hi int) {
		forRuns(lo, hi, n, func(i, j, cnt int) {
			x, y, o, gr := cx.F[i:i+cnt], cy.F[i:i+cnt], out.F[i:i+cnt], g[j:j+cnt]
			for t := range o {
				p := float32(y[t] * gr[t])
				if bf {
					p = tensor.RoundBF16(p)
				}
				o[t] = x[t] + p
			}
		})
		roundSlice(out.dt, out.F[lo:hi])
	})
	return out
}
