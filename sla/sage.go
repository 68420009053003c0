package sla

import (
	"math"

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

// sageSparse emulates SageSLA's sm90 sparse kernel (REFERENCE.md §4.3) on
// bf16 q, k, v [heads, L, d]: int8 Q·K per block with float32 dequant
// scales, online softmax in exp2 with the fp8 offset, P rounded to e4m3
// before P·V against e4m3 V, float32 accumulation, O/d·vscale → bf16.
// The GPU's approximate exp2/rcp and wgmma accumulation order are not
// reproduced, so this matches the kernel closely but not bit for bit.
func sageSparse(q, k, v []float32, g Geometry, bmap []int8) []float32 {
	L, d, qb, kb := g.L, g.D, g.QBlocks(), g.KBlocks()
	heads := make([]sageQuantized, g.Heads)
	parallelFor(g.Heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			b := h * L * d
			heads[h] = sageQuantize(q[b:b+L*d], k[b:b+L*d], v[b:b+L*d], g)
		}
	})
	sm := float32(1/math.Sqrt(float64(d))) * float32(1.44269504088896340736)
	out := make([]float32, len(q))
	parallelFor(g.Heads*qb, func(lo, hi int) {
		s := make([]float32, g.BlockK)
		o := make([]float32, d)
		tmp := make([]float32, d)
		for t := lo; t < hi; t++ {
			h, i := t/qb, t%qb
			z := &heads[h]
			sel := selectedBlocks(bmap[t*kb : t*kb+kb])
			r0, r1 := i*g.BlockQ, min(i*g.BlockQ+g.BlockQ, L)
			for r := r0; r < r1; r++ {
				qr := z.qi[r*d : r*d+d]
				m, den := float32(-5e6), float32(1)
				clear(o)
				for it, j := range sel {
					c0 := j * g.BlockK
					last := it == len(sel)-1
					dq := z.sq[i] * z.sk[j]
					c := sm * dq
					if last {
						c = sm
					}
					smax := float32(-5e6)
					for x := range g.BlockK {
						key := c0 + x
						var sv float32
						if key < L {
							sv = float32(intDot(qr, z.ki[key*d:key*d+d]))
							if last {
								sv *= dq
							}
						} else if last {
							sv = -5e6 // masked
						} // padded keys of a non-last block have zero codes
						s[x] = sv
						smax = max(smax, sv)
					}
					mNew := max(m, smax*c)
					alpha := exp2f(m - mNew)
					den *= alpha
					for x := range o {
						o[x] *= alpha
					}
					negM := -mNew + fp8Offset
					clear(tmp)
					for x := range g.BlockK {
						p := exp2f(quant.FMA32(s[x], c, negM))
						den += p
						p8 := tensor.F32FromE4M3(tensor.E4M3FromF32(p))
						key := c0 + x
						if p8 == 0 || key >= L {
							continue
						}
						vr := z.v8[key*d : key*d+d]
						for y, vv := range vr {
							tmp[y] += p8 * vv
						}
					}
					for y := range o {
						o[y] += tmp[y]
					}
					m = mNew
				}
				rcp := 1 / den
				dst := out[(h*L+r)*d : (h*L+r)*d+d]
				for y := range dst {
					dst[y] = tensor.RoundBF16(o[y] * rcp * z.vscale[y])
				}
			}
		}
	})
	return out
}

// intDot is the exact int32 dot product of two int8 vectors.
func intDot(a, b []int8) int32 {
	b = b[:len(a)]
	var s int32
	for i, x := range a {
		s += int32(x) * int32(b[i])
	}
	return s
}
