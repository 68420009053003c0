package cpu

import (
	"math"

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

// vaeConvBlock is how many output positions of one frame one im2col block
// holds: large enough to amortise the weight reads, small enough that the
// column block stays in cache.
const vaeConvBlock = 64

// Conv3d implements backend.VAEOps as an implicit GEMM: per output frame and
// block of output positions it gathers the receptive fields into a column
// block [positions][Cin·kt·kh·kw] and takes dot products with the weight
// rows, which already have that layout.
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
	To, Ho, Wo := os[1], os[2], os[3]
	st, sh, sw := p.Strides()
	K := cin * kt * kh * kw
	npos := Ho * Wo
	nblk := (npos + vaeConvBlock - 1) / vaeConvBlock
	out := make([]float32, cout*To*npos)
	dt := x.dt
	xf, wf := x.F, w.F

	b.parallelFor(To*nblk, func(lo, hi int) {
		col := make([]float32, vaeConvBlock*K)
		acc := make([]float32, vaeConvBlock*4)
		for task := lo; task < hi; task++ {
			to, blk := task/nblk, task%nblk
			p0 := blk * vaeConvBlock
			n := min(vaeConvBlock, npos-p0)
			// Gather: col[j][(ci,dt,dh,dw)] = padded input.
			for j := 0; j < n; j++ {
				ho, wo := (p0+j)/Wo, (p0+j)%Wo
				c := col[j*K : (j+1)*K]
				k := 0
				for ci := 0; ci < cin; ci++ {
					for a := 0; a < kt; a++ {
						ti := to*st + a - p.PadT[0]
						for bb := 0; bb < kh; bb++ {
							yi := ho*sh + bb - p.PadH[0]
							if ti < 0 || ti >= T0 || yi < 0 || yi >= H {
								for cc := 0; cc < kw; cc++ {
									c[k+cc] = 0
								}
								k += kw
								continue
							}
							row := xf[((ci*T0+ti)*H+yi)*W : ((ci*T0+ti)*H+yi+1)*W]
							wi0 := wo*sw - p.PadW[0]
							for cc := 0; cc < kw; cc++ {
								wi := wi0 + cc
								if wi < 0 || wi >= W {
									c[k+cc] = 0
								} else {
									c[k+cc] = row[wi]
								}
							}
							k += kw
						}
					}
				}
			}
			// Multiply: four output channels at a time share each column load.
			co := 0
			for ; co+4 <= cout; co += 4 {
				vaeDot4(wf[co*K:(co+4)*K], K, col[:n*K], n, acc)
				for r := 0; r < 4; r++ {
					vaeStoreConv(out, acc[r*vaeConvBlock:r*vaeConvBlock+n], co+r, to, To, npos, p0, dt, bias)
				}
			}
			for ; co < cout; co++ {
				wr := wf[co*K : (co+1)*K]
				for j := 0; j < n; j++ {
					acc[j] = vaeDot(wr, col[j*K:(j+1)*K])
				}
				vaeStoreConv(out, acc[:n], co, to, To, npos, p0, dt, bias)
			}
		}
	})
	return &Tensor{shape: os, dt: dt, F: out}
}

// vaeStoreConv writes one output channel's block, rounding as Conv3d documents.
func vaeStoreConv(out, acc []float32, co, to, To, npos, p0 int, dt tensor.DType, bias []float32) {
	dst := out[(co*To+to)*npos+p0:]
	var bv float32
	if bias != nil {
		bv = bias[co]
	}
	for j, v := range acc {
		v = vaeRound(dt, v)
		if bias != nil {
			v = vaeRound(dt, v+bv)
		}
		dst[j] = v
	}
}

// vaeDot is a float32 dot product with four partial sums.
func vaeDot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// vaeDot4 computes acc[r*vaeConvBlock+j] = w[r]·col[j] for four weight rows of
// length K and n column rows.
func vaeDot4(w []float32, K int, col []float32, n int, acc []float32) {
	w0, w1, w2, w3 := w[:K], w[K:2*K], w[2*K:3*K], w[3*K:4*K]
	for j := 0; j < n; j++ {
		c := col[j*K : (j+1)*K]
		var s0, s1, s2, s3 float32
		for k, v := range c {
			s0 += w0[k] * v
			s1 += w1[k] * v
			s2 += w2[k] * v
			s3 += w3[k] * v
		}
		acc[j] = s0
		acc[vaeConvBlock+j] = s1
		acc[2*vaeConvBlock+j] = s2
		acc[3*vaeConvBlock+j] = s3
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
	return &Tensor{shape: append([]int(nil), x.shape...), dt: dt, F: out}
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
	return &Tensor{shape: []int{C, T0, 2 * H, 2 * W}, dt: x.dt, F: out}
}

// vaeAttnBlock is how many queries one FrameAttention task handles; it bounds
// the score buffer to vaeAttnBlock·H·W floats.
const vaeAttnBlock = 32

// FrameAttention implements backend.VAEOps.
func (b *Backend) FrameAttention(qkvt backend.Tensor) backend.Tensor {
	x := T(qkvt)
	vaeCheckFloat("frame attention", x)
	if len(x.shape) != 4 || x.shape[0]%3 != 0 {
		backend.Fail("frame attention: want qkv [3C,T,H,W], got %v", x.shape)
	}
	C, T0, P := x.shape[0]/3, x.shape[1], x.shape[2]*x.shape[3]
	dt := x.dt
	scale := float32(1 / math.Sqrt(float64(C)))
	// Token-major copies: [3][T][P][C], so every dot product is contiguous.
	tm := make([]float32, len(x.F))
	b.parallelFor(3*T0, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			part, t := r/T0, r%T0
			dst := tm[r*P*C : (r+1)*P*C]
			for c := 0; c < C; c++ {
				src := x.F[((part*C+c)*T0+t)*P:]
				for i := 0; i < P; i++ {
					dst[i*C+c] = src[i]
				}
			}
		}
	})
	out := make([]float32, C*T0*P)
	nq := (P + vaeAttnBlock - 1) / vaeAttnBlock
	b.parallelFor(T0*nq, func(lo, hi int) {
		s := make([]float32, P)
		o := make([]float32, C)
		for task := lo; task < hi; task++ {
			t, qb := task/nq, task%nq
			q := tm[(0*T0+t)*P*C:]
			k := tm[(1*T0+t)*P*C : (1*T0+t+1)*P*C]
			v := tm[(2*T0+t)*P*C : (2*T0+t+1)*P*C]
			for i := qb * vaeAttnBlock; i < min(P, (qb+1)*vaeAttnBlock); i++ {
				qi := q[i*C : (i+1)*C]
				m := float32(math.Inf(-1))
				for j := 0; j < P; j++ {
					s[j] = vaeDot(qi, k[j*C:(j+1)*C]) * scale
					m = max(m, s[j])
				}
				var sum float64
				for j := range s {
					e := float32(math.Exp(float64(s[j] - m)))
					s[j] = e
					sum += float64(e)
				}
				clear(o)
				for j, pj := range s {
					vj := v[j*C : (j+1)*C]
					for c := range o {
						o[c] += pj * vj[c]
					}
				}
				inv := float32(1 / sum)
				for c, oc := range o {
					out[(c*T0+t)*P+i] = vaeRound(dt, oc*inv)
				}
			}
		}
	})
	return &Tensor{shape: []int{C, T0, x.shape[2], x.shape[3]}, dt: dt, F: out}
}
