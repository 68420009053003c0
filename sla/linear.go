package sla

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// linear is SLA's linear branch plus proj_l (REFERENCE.md §4.4) on bf16
// q, k, v [heads, L, d], every step rounded to bf16 where the reference's
// bf16 tensor ops round:
//
//	Qf, Kf = softmax over channels of q, k
//	KV = Kfᵀ·v, ks = Σ_L Kf, o = (Qf·KV) / (1e-5 + Σ_c bf16(Qf⊙ks))
//	out = proj_l(o) in bf16 (weight and bias rounded to bf16 by autocast)
//
// Output [heads, L, d], bf16-exact.
func linear(q, k, v []float32, g Geometry, projW, projB []float32) []float32 {
	d, L := g.D, g.L
	w := make([]float32, d*d) // proj_l weight as autocast feeds it
	for i, x := range projW {
		w[i] = tensor.RoundBF16(x)
	}
	bias := make([]float32, d)
	for i := range bias {
		if projB != nil {
			bias[i] = tensor.RoundBF16(projB[i])
		}
	}
	qf := featureMap(q, g)
	kf := featureMap(k, g)
	// Per head: KV [d, d] and ks [d].
	kv := make([]float32, g.Heads*d*d)
	ks := make([]float32, g.Heads*d)
	parallelFor(g.Heads, func(lo, hi int) {
		acc := make([]float64, d*d)
		sum := make([]float64, d)
		for h := lo; h < hi; h++ {
			clear(acc)
			clear(sum)
			base := h * L * d
			for l := 0; l < L; l++ {
				kr := kf[base+l*d : base+l*d+d]
				vr := v[base+l*d : base+l*d+d]
				for c1, a := range kr {
					sum[c1] += float64(a)
					if a == 0 {
						continue
					}
					row := acc[c1*d : c1*d+d]
					for c2, b := range vr {
						row[c2] += float64(a) * float64(b)
					}
				}
			}
			for i, x := range acc {
				kv[h*d*d+i] = tensor.RoundBF16(float32(x))
			}
			for i, x := range sum {
				ks[h*d+i] = tensor.RoundBF16(float32(x))
			}
		}
	})
	out := make([]float32, len(q))
	eps := float32(1e-5)
	rows := g.Heads * L
	parallelFor(rows, func(lo, hi int) {
		num := make([]float64, d)
		ol := make([]float32, d)
		for t := lo; t < hi; t++ {
			h := t / L
			qr := qf[t*d : t*d+d]
			kvh := kv[h*d*d : h*d*d+d*d]
			ksh := ks[h*d : h*d+d]
			clear(num)
			var den float64
			for c1, a := range qr {
				den += float64(tensor.RoundBF16(a * ksh[c1]))
				if a == 0 {
					continue
				}
				row := kvh[c1*d : c1*d+d]
				for c2, b := range row {
					num[c2] += float64(a) * float64(b)
				}
			}
			dn := tensor.RoundBF16(eps + tensor.RoundBF16(float32(den)))
			for c := range ol {
				ol[c] = tensor.RoundBF16(tensor.RoundBF16(float32(num[c])) / dn)
			}
			dst := out[t*d : t*d+d]
			for c := range dst {
				var s float64
				wr := w[c*d : c*d+d]
				for x, a := range ol {
					s += float64(a) * float64(wr[x])
				}
				dst[c] = tensor.RoundBF16(float32(s + float64(bias[c])))
			}
		}
	})
	return out
}

// featureMap is softmax over the channels of each row of x [heads, L, d]
// (float32 inside, bf16 out), SLA's default feature map.
func featureMap(x []float32, g Geometry) []float32 {
	d := g.D
	out := make([]float32, len(x))
	parallelFor(len(x)/d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x[r*d : r*d+d]
			m := float32(math.Inf(-1))
			for _, v := range row {
				m = max(m, v)
			}
			var sum float32
			dst := out[r*d : r*d+d]
			for c, v := range row {
				e := float32(math.Exp(float64(v - m)))
				dst[c] = e
				sum += e
			}
			for c := range dst {
				dst[c] = tensor.RoundBF16(dst[c] / sum)
			}
		}
	})
	return out
}
