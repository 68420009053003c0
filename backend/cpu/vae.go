package cpu

import (
	"math"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// This file holds the VAE ops (backend.VAEOps) of the CPU backend.

// vaeRound rounds v to dt (a no-op for F32).
func vaeRound(dt tensor.DType, v float32) float32 {
	if dt == tensor.BF16 {
		return tensor.RoundBF16(v)
	}
	return v
}

// vaeCheckFloat fails unless t is a float tensor.
func vaeCheckFloat(op string, t *Tensor) {
	if t.dt != tensor.F32 && t.dt != tensor.BF16 {
		backend.Fail("%s: want a float32 or bfloat16 tensor, got %v", op, t.dt)
	}
}

// vaeColFloats bounds one im2col block (floats): large enough to give the
// GEMM long rows, small enough to stay a few tens of MiB at the real VAE's
// widths.
const vaeColFloats = 1 << 22

// vaeColPool recycles im2col blocks between convolutions.
var vaeColPool = sync.Pool{New: func() any { return new([]float32) }}

// Conv3dWithHistory implements backend.Conv3dHistory as the reference:
// the concatenation, then Conv3d.
func (b *Backend) Conv3dWithHistory(hist, x, w, bias backend.Tensor, p backend.Conv3dParams) backend.Tensor {
	if hist == nil {
		return b.Conv3d(x, w, bias, p)
	}
	in := b.Concat(1, hist, x)
	defer b.Free(in)
	return b.Conv3d(in, w, bias, p)
}

// Conv3d implements backend.VAEOps as an implicit GEMM. The input is first
// copied channels-last with its zero padding, [T'][H'][W'][Cin], so that
// for one output position and one (kt, kh) tap the kw taps' inputs are a
// single contiguous run of kw·Cin values. The output positions (all frames,
// flattened) are taken in blocks; each block's receptive fields are
// gathered with those copies into rows of a column matrix whose layout,
// (kt, kh, kw, Cin), the weight is permuted to, and Gemm multiplies the
// weight [Cout, K] by it straight into the output. Rounding and bias follow
// in a separate pass, as Conv3d documents.
func (b *Backend) Conv3d(xt, wt, biast backend.Tensor, p backend.Conv3dParams) backend.Tensor {
	x, w := T(xt), T(wt)
	vaeCheckFloat("conv3d input", x)
	vaeCheckFloat("conv3d weight", w)
	os := backend.Conv3dOutShape(x.shape, w.shape, p)
	cout, cin := w.shape[0], w.shape[1]
	kt, kh, kw := w.shape[2], w.shape[3], w.shape[4]
	var bias []float32
	if biast != nil {
		bt := T(biast)
		backend.CheckShape("conv3d bias", bt, cout)
		bias = bt.F
	}
	T0, H, W := x.shape[1], x.shape[2], x.shape[3]
	Ho, Wo := os[2], os[3]
	st, sh, sw := p.Strides()
	K := cin * kt * kh * kw
	npos := Ho * Wo
	total := os[1] * npos

	// Padded channels-last input.
	Tp, Hp, Wp := T0+p.PadT[0]+p.PadT[1], H+p.PadH[0]+p.PadH[1], W+p.PadW[0]+p.PadW[1]
	xp := make([]float32, Tp*Hp*Wp*cin)
	b.parallelFor(T0*H, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t, h := r/H, r%H
			dst := xp[(((t+p.PadT[0])*Hp+h+p.PadH[0])*Wp+p.PadW[0])*cin:]
			for ci := 0; ci < cin; ci++ {
				src := x.F[((ci*T0+t)*H+h)*W : ((ci*T0+t)*H+h+1)*W]
				for i, v := range src {
					dst[i*cin+ci] = v
				}
			}
		}
	})
	// Weight permuted to [Cout][kt][kh][kw][Cin].
	wp := make([]float32, cout*K)
	taps := kt * kh * kw
	for co := 0; co < cout; co++ {
		for ci := 0; ci < cin; ci++ {
			src := w.F[(co*cin+ci)*taps : (co*cin+ci+1)*taps]
			for tap, v := range src {
				wp[co*K+tap*cin+ci] = v
			}
		}
	}

	out := make([]float32, cout*total)
	blk := max(16, min(total, vaeColFloats/max(K, 1)))
	colp := vaeColPool.Get().(*[]float32)
	defer vaeColPool.Put(colp)
	if cap(*colp) < blk*K {
		*colp = make([]float32, blk*K)
	}
	col := (*colp)[:blk*K] // every row is written before Gemm reads it
	run := kw * cin
	for q0 := 0; q0 < total; q0 += blk {
		n := min(blk, total-q0)
		b.parallelFor(n, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				q := q0 + j
				to, rest := q/npos, q%npos
				ho, wo := rest/Wo, rest%Wo
				c := col[j*K : (j+1)*K]
				for a := 0; a < kt; a++ {
					for bb := 0; bb < kh; bb++ {
						src := xp[(((to*st+a)*Hp+ho*sh+bb)*Wp+wo*sw)*cin:]
						copy(c[(a*kh+bb)*run:(a*kh+bb+1)*run], src[:run])
					}
				}
			}
		})
		Gemm(cout, n, K, wp, K, col[:n*K], K, out[q0:], total, nil)
	}
	if x.dt == tensor.BF16 || bias != nil {
		b.parallelFor(cout, func(lo, hi int) {
			for co := lo; co < hi; co++ {
				vaeStoreConv(out[co*total:(co+1)*total], co, x.dt, bias)
			}
		})
	}
	return b.track(&Tensor{shape: os, dt: x.dt, F: out})
}

// vaeStoreConv rounds one output channel in place and adds its bias,
// rounding as Conv3d documents.
func vaeStoreConv(row []float32, co int, dt tensor.DType, bias []float32) {
	var bv float32
	if bias != nil {
		bv = bias[co]
	}
	for j, v := range row {
		v = vaeRound(dt, v)
		if bias != nil {
			v = vaeRound(dt, v+bv)
		}
		row[j] = v
	}
}

// ChannelRMSNorm implements backend.VAEOps.
func (b *Backend) ChannelRMSNorm(xt, gt backend.Tensor, silu bool) backend.Tensor {
	x, g := T(xt), T(gt)
	vaeCheckFloat("channel rms norm", x)
	if len(x.shape) < 2 {
		backend.Fail("channel rms norm: want [C,...], got %v", x.shape)
	}
	C := x.shape[0]
	backend.CheckShape("channel rms norm gamma", g, C)
	P := len(x.F) / C
	dt := x.dt
	scale := float32(math.Sqrt(float64(C)))
	out := make([]float32, len(x.F))
	const span = 1024
	b.parallelFor((P+span-1)/span, func(lo, hi int) {
		ss := make([]float64, span)
		for blk := lo; blk < hi; blk++ {
			p0 := blk * span
			n := min(span, P-p0)
			clear(ss[:n])
			for c := 0; c < C; c++ {
				row := x.F[c*P+p0 : c*P+p0+n]
				for j, v := range row {
					ss[j] += float64(v) * float64(v)
				}
			}
			for j := 0; j < n; j++ {
				d := vaeRound(dt, float32(math.Sqrt(ss[j])))
				ss[j] = float64(max(d, 1e-12))
			}
			for c := 0; c < C; c++ {
				gc := g.F[c]
				src := x.F[c*P+p0 : c*P+p0+n]
				dst := out[c*P+p0 : c*P+p0+n]
				for j, v := range src {
					y := vaeRound(dt, v/float32(ss[j]))
					y = vaeRound(dt, y*scale)
					y = vaeRound(dt, y*gc)
					if silu {
						y = vaeRound(dt, vaeSiLU(y))
					}
					dst[j] = y
				}
			}
		}
	})
	return b.track(&Tensor{shape: append([]int(nil), x.shape...), dt: dt, F: out})
}

// vaeSiLU is x·sigmoid(x) evaluated in float64 and rounded to float32.
func vaeSiLU(x float32) float32 {
	return float32(float64(x) / (1 + math.Exp(-float64(x))))
}

// UpsampleNearest2x implements backend.VAEOps.
func (b *Backend) UpsampleNearest2x(xt backend.Tensor) backend.Tensor {
	x := T(xt)
	vaeCheckFloat("upsample", x)
	if len(x.shape) != 4 {
		backend.Fail("upsample: want [C,T,H,W], got %v", x.shape)
	}
	C, T0, H, W := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	out := make([]float32, C*T0*4*H*W)
	b.parallelFor(C*T0*H, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src := x.F[r*W : (r+1)*W]
			ct, h := r/H, r%H
			d0 := out[(ct*2*H+2*h)*2*W : (ct*2*H+2*h+1)*2*W]
			for i, v := range src {
				d0[2*i] = v
				d0[2*i+1] = v
			}
			copy(out[(ct*2*H+2*h+1)*2*W:(ct*2*H+2*h+2)*2*W], d0)
		}
	})
	return b.track(&Tensor{shape: []int{C, T0, 2 * H, 2 * W}, dt: x.dt, F: out})
}

// vaeAttnFloats bounds the score block of FrameAttention (floats).
const vaeAttnFloats = 1 << 22

// FrameAttention implements backend.VAEOps with two Gemm calls per block of
// queries: scores S = q·kᵀ against token-major copies of q and k, then
// P·v straight from v's channel-first rows.
func (b *Backend) FrameAttention(qkvt backend.Tensor) backend.Tensor {
	x := T(qkvt)
	vaeCheckFloat("frame attention", x)
	if len(x.shape) != 4 || x.shape[0]%3 != 0 || x.shape[0] == 0 {
		backend.Fail("frame attention: want qkv [3C,T,H,W], got %v", x.shape)
	}
	C, T0, P := x.shape[0]/3, x.shape[1], x.shape[2]*x.shape[3]
	dt := x.dt
	scale := float32(1 / math.Sqrt(float64(C)))
	out := make([]float32, C*T0*P)
	R := max(1, min(P, vaeAttnFloats/max(P, 1)))
	q := make([]float32, P*C)
	k := make([]float32, P*C)
	s := make([]float32, R*P)
	o := make([]float32, R*C)
	inv := make([]float32, R)
	for t := 0; t < T0; t++ {
		// Token-major q and k of frame t: [P][C].
		b.parallelFor(2*C, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				part, c := r/C, r%C
				dst := q
				if part == 1 {
					dst = k
				}
				src := x.F[((part*C+c)*T0+t)*P : ((part*C+c)*T0+t+1)*P]
				for i, v := range src {
					dst[i*C+c] = v
				}
			}
		})
		v := x.F[(2*C*T0+t)*P:] // row c at c·T0·P
		for i0 := 0; i0 < P; i0 += R {
			n := min(R, P-i0)
			Gemm(n, P, C, q[i0*C:], C, k, C, s, P, nil)
			b.parallelFor(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					row := s[i*P : (i+1)*P]
					m := float32(math.Inf(-1))
					for j := range row {
						row[j] *= scale
						m = max(m, row[j])
					}
					var sum float64
					for j, sj := range row {
						e := float32(math.Exp(float64(sj - m)))
						row[j] = vaeRound(dt, e) // flash attention multiplies v by P in the input dtype
						sum += float64(e)
					}
					inv[i] = float32(1 / sum)
				}
			})
			Gemm(n, C, P, s, P, v, T0*P, o, C, nil)
			for i := 0; i < n; i++ {
				for c := 0; c < C; c++ {
					out[(c*T0+t)*P+i0+i] = vaeRound(dt, o[i*C+c]*inv[i])
				}
			}
		}
	}
	return b.track(&Tensor{shape: []int{C, T0, x.shape[2], x.shape[3]}, dt: dt, F: out})
}
