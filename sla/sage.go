package sla

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// fp8Offset is SageAttention's S_FP8_OFFSET: P is computed as
// exp2(s − m + 8.807) ≈ 448·exp2(s − m) so that it fills the e4m3 range.
const fp8Offset = float32(8.807)

// vRange is the fp8 range V is scaled into (SageAttention2++'s 2.25).
const vRange = float32(2.25)

// int8Block quantises rows [r0, r1) of x [L, d] with one scale,
// s = max|x|/127 + 1e-7, code = trunc(x/s ± 0.5) (round half away from
// zero), SpargeAttn's Triton quantiser.
func int8Block(dst []int8, x []float32) float32 {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	s := amax/127 + float32(1e-7)
	for i, v := range x {
		y := v / s
		if y >= 0 {
			y += 0.5
		} else {
			y -= 0.5
		}
		dst[i] = int8(max(-128, min(127, int32(y)))) // int32() truncates toward zero
	}
	return s
}

// sageQuantized holds one head's SageSLA operands.
type sageQuantized struct {
	qi, ki []int8    // [L, d] codes (k smoothed by its bf16 mean)
	sq, sk []float32 // per query block, per key block
	v8     []float32 // [L, d] e4m3 values of v/vscale
	vscale []float32 // [d]
}

func sageQuantize(q, k, v []float32, g Geometry) sageQuantized {
	L, d := g.L, g.D
	z := sageQuantized{
		qi: make([]int8, L*d), ki: make([]int8, L*d),
		sq: make([]float32, g.QBlocks()), sk: make([]float32, g.KBlocks()),
		v8: make([]float32, L*d), vscale: make([]float32, d),
	}
	for i := range z.sq {
		r0, r1 := i*g.BlockQ, min(i*g.BlockQ+g.BlockQ, L)
		z.sq[i] = int8Block(z.qi[r0*d:r1*d], q[r0*d:r1*d])
	}
	// K smoothed by its mean over L (bf16 mean, bf16 difference).
	mean := make([]float64, d)
	for l := 0; l < L; l++ {
		for c, x := range k[l*d : l*d+d] {
			mean[c] += float64(x)
		}
	}
	km := make([]float32, d)
	for c := range km {
		km[c] = tensor.RoundBF16(float32(mean[c] / float64(L)))
	}
	ks := make([]float32, L*d)
	for l := 0; l < L; l++ {
		for c := range d {
			ks[l*d+c] = tensor.RoundBF16(k[l*d+c] - km[c])
		}
	}
	for j := range z.sk {
		r0, r1 := j*g.BlockK, min(j*g.BlockK+g.BlockK, L)
		z.sk[j] = int8Block(z.ki[r0*d:r1*d], ks[r0*d:r1*d])
	}
	// V: per channel, amax/2.25 scale, e4m3 codes of v·(2.25/amax).
	for c := range d {
		var amax float32
		for l := 0; l < L; l++ {
			amax = max(amax, float32(math.Abs(float64(v[l*d+c]))))
		}
		z.vscale[c] = amax / vRange
		if amax == 0 {
			continue // all-zero channel: codes stay 0 (the CUDA kernel would make NaN)
		}
		recp := vRange / amax
		for l := 0; l < L; l++ {
			z.v8[l*d+c] = tensor.F32FromE4M3(tensor.E4M3FromF32(v[l*d+c] * recp))
		}
	}
	return z
}

// sageSparse emulates SageSLA's sm90 sparse kernel (docs/NUMERICS.md §6.3) on
// bf16 q, k, v [heads, L, d]: int8 Q·K per block with float32 dequant
// scales, online softmax in exp2 with the fp8 offset, P rounded to e4m3
// before P·V against e4m3 V, float32 accumulation, O/d·vscale → bf16.
// The GPU's approximate exp2/rcp and wgmma accumulation order are not
// reproduced, so this matches the kernel closely but not bit for bit.
//
// Q·K runs through mm on the codes as float32: |products| ≤ 2^14 and
// |sums| ≤ 2^21 over d = 128, so the float GEMM gives the exact int32 dot.
func sageSparse(q, k, v []float32, g Geometry, bmap []int8, mm MatMul) []float32 {
	L, d, qb, kb := g.L, g.D, g.QBlocks(), g.KBlocks()
	type operands struct {
		sageQuantized
		qf, kf, v8t []float32 // codes as float32; v8 as [d, L]
	}
	heads := make([]operands, g.Heads)
	parallel.For(g.Heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			b := h * L * d
			z := sageQuantize(q[b:b+L*d], k[b:b+L*d], v[b:b+L*d], g)
			op := operands{sageQuantized: z, qf: make([]float32, L*d), kf: make([]float32, L*d)}
			for i := range op.qf {
				op.qf[i], op.kf[i] = float32(z.qi[i]), float32(z.ki[i])
			}
			op.v8t = transpose(z.v8, L, d)
			heads[h] = op
		}
	})
	sm := float32(1/math.Sqrt(float64(d))) * float32(1.44269504088896340736)
	out := make([]float32, len(q))
	parallel.For(g.Heads*qb, func(lo, hi int) {
		bq, bk := g.BlockQ, g.BlockK
		s := make([]float32, bq*bk)
		o := make([]float32, bq*d)
		tmp := make([]float32, bq*d)
		m := make([]float32, bq)
		den := make([]float32, bq)
		for t := lo; t < hi; t++ {
			h, i := t/qb, t%qb
			z := &heads[h]
			sel := selectedBlocks(bmap[t*kb : t*kb+kb])
			r0, r1 := i*bq, min(i*bq+bq, L)
			nr := r1 - r0
			for r := range nr {
				m[r], den[r] = -5e6, 1 // the kernel's initial state; the first rescale wipes d
			}
			clear(o)
			for it, j := range sel {
				c0, c1 := j*bk, min(j*bk+bk, L)
				nk := c1 - c0 // keys past L only occur in the last block, where P = 0
				last := it == len(sel)-1
				dq := z.sq[i] * z.sk[j]
				c := sm * dq
				if last {
					c = sm
				}
				mm(nr, nk, d, z.qf[r0*d:], d, z.kf[c0*d:], d, s, nk)
				for r := range nr {
					sr := s[r*nk : r*nk+nk]
					smax := float32(-5e6)
					for x := range sr {
						if last {
							sr[x] *= dq
						}
						smax = max(smax, sr[x])
					}
					mNew := max(m[r], smax*c)
					alpha := exp2f(m[r] - mNew)
					den[r] *= alpha
					or := o[r*d : r*d+d]
					for x := range or {
						or[x] *= alpha
					}
					negM := -mNew + fp8Offset
					for x, sv := range sr {
						p := exp2f(quant.FMA32(sv, c, negM))
						den[r] += p
						sr[x] = tensor.F32FromE4M3(tensor.E4M3FromF32(p))
					}
					m[r] = mNew
				}
				mm(nr, d, nk, s, nk, z.v8t[c0:], L, tmp, d)
				for x := range o[:nr*d] {
					o[x] += tmp[x]
				}
			}
			for r := range nr {
				rcp := 1 / den[r]
				dst := out[(h*L+r0+r)*d : (h*L+r0+r)*d+d]
				for y := range dst {
					dst[y] = tensor.RoundBF16(o[r*d+y] * rcp * z.vscale[y])
				}
			}
		}
	})
	return out
}
