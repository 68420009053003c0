package cpu

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// RoPE rotates the interleaved pairs (2i, 2i+1) of every head of x
// [..., L, heads·d] by angles [L, d/2] (shared by all heads and leading
// dims): out₂ᵢ = x₂ᵢcos − x₂ᵢ₊₁sin, out₂ᵢ₊₁ = x₂ᵢsin + x₂ᵢ₊₁cos. cos/sin of
// the float32 angles and every product and sum are float32; the result is
// rounded once to x's dtype.
func (b *Backend) RoPE(x, angles backend.Tensor, heads int) backend.Tensor {
	cx, ca := floatT("RoPE", x), floatT("RoPE angles", angles)
	if len(cx.shape) < 2 || heads <= 0 || cx.shape[len(cx.shape)-1]%heads != 0 {
		backend.Fail("cpu: RoPE: x %v is not [..., L, heads·d] for %d heads", cx.shape, heads)
	}
	l := cx.shape[len(cx.shape)-2]
	d := cx.shape[len(cx.shape)-1] / heads
	if d%2 != 0 {
		backend.Fail("cpu: RoPE: head dim %d of x %v is odd", d, cx.shape)
	}
	half := d / 2
	if len(ca.shape) != 2 || ca.shape[0] != l || ca.shape[1] != half {
		backend.Fail("cpu: RoPE: angles have shape %v, want [%d %d] for x %v with %d heads", ca.shape, l, half, cx.shape, heads)
	}
	cos := make([]float32, len(ca.F))
	sin := make([]float32, len(ca.F))
	for i, a := range ca.F {
		cos[i] = float32(math.Cos(float64(a)))
		sin[i] = float32(math.Sin(float64(a)))
	}
	out := b.newOut(cx.dt, cx.shape)
	width := heads * d
	rowsN := len(cx.F) / max(width, 1)
	b.rows(rowsN, width, func(r int) {
		p := r % l
		cr, sr := cos[p*half:(p+1)*half], sin[p*half:(p+1)*half]
		xr, yr := cx.F[r*width:(r+1)*width], out.F[r*width:(r+1)*width]
		for h := 0; h < heads; h++ {
			xh, yh := xr[h*d:(h+1)*d], yr[h*d:(h+1)*d]
			for i := 0; i < half; i++ {
				x0, x1 := xh[2*i], xh[2*i+1]
				c, s := cr[i], sr[i]
				yh[2*i] = float32(x0*c) - float32(x1*s)
				yh[2*i+1] = float32(x0*s) + float32(x1*c)
			}
		}
		roundSlice(out.dt, yr)
	})
	return out
}
