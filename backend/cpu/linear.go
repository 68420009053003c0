package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// Linear returns x·wᵀ + bias for x [..., K], w [N, K], bias [N] or nil,
// accumulated in float32 (bias added to the float32 sum, as cuBLAS's
// epilogue does) and rounded once to x's dtype. The weights are used at
// their stored precision.
func (b *Backend) Linear(x, w, bias backend.Tensor) backend.Tensor {
	cx, cw := floatT("Linear", x), floatT("Linear", w)
	if len(cx.shape) < 1 || len(cw.shape) != 2 {
		backend.Fail("cpu: Linear: want x [..., K] and w [N, K], got x %v and w %v", cx.shape, cw.shape)
	}
	k := cx.shape[len(cx.shape)-1]
	n := cw.shape[0]
	if cw.shape[1] != k {
		backend.Fail("cpu: Linear: x %v has K=%d but w %v has K=%d", cx.shape, k, cw.shape, cw.shape[1])
	}
	var bv []float32
	if bias != nil {
		cb := floatT("Linear bias", bias)
		if len(cb.shape) != 1 || cb.shape[0] != n {
			backend.Fail("cpu: Linear: bias shape %v, want [%d] for w %v", cb.shape, n, cw.shape)
		}
		bv = cb.F
	}
	outShape := append(append([]int(nil), cx.shape[:len(cx.shape)-1]...), n)
	out := b.newOut(cx.dt, outShape)
	m := len(cx.F) / max(k, 1)
	if k == 0 {
		m = len(out.F) / max(n, 1)
	}
	b.gemm(m, n, k, cx.F, k, cw.F, k, out.F, n, bv)
	b.elementwise(len(out.F), func(lo, hi int) { roundSlice(out.dt, out.F[lo:hi]) })
	return out
}
