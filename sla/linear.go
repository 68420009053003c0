package sla

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// linearRows is how many query rows one task of the linear branch handles.
const linearRows = 256

// linear is SLA's linear branch plus proj_l (docs/NUMERICS.md §6.4) on bf16
// q, k, v [heads, L, d], every step rounded to bf16 where the reference's
// bf16 tensor ops round:
//
//	Qf, Kf = softmax over channels of q, k
//	KV = Kfᵀ·v, ks = Σ_L Kf, o = (Qf·KV) / (1e-5 + Σ_c bf16(Qf⊙ks))
//	out = proj_l(o) in bf16 (weight and bias rounded to bf16 by autocast,
//	      the bias added to the float32 accumulator as cuBLAS's epilogue)
//
// Output [heads, L, d], bf16-exact.
func linear(q, k, v []float32, g Geometry, projW, projB []float32, mm MatMul) []float32 {
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
	// Per head: KVᵀ [d, d] (the B operand of Qf·KV) and ks [d].
	kvt := make([]float32, g.Heads*d*d)
	ks := make([]float32, g.Heads*d)
	parallel.For(g.Heads, func(lo, hi int) {
		kv := make([]float32, d*d)
		sum := make([]float64, d)
		for h := lo; h < hi; h++ {
			base := h * L * d
			kft := transpose(kf[base:base+L*d], L, d)
			vt := transpose(v[base:base+L*d], L, d)
			mm(d, d, L, kft, L, vt, L, kv, d) // KV[c1][c2] = Σ_l Kf[l][c1]·v[l][c2]
			for c1 := range d {
				for c2 := range d {
					kvt[h*d*d+c2*d+c1] = tensor.RoundBF16(kv[c1*d+c2])
				}
			}
			clear(sum)
			for l := 0; l < L; l++ {
				for c, x := range kf[base+l*d : base+l*d+d] {
					sum[c] += float64(x)
				}
			}
			for c, x := range sum {
				ks[h*d+c] = tensor.RoundBF16(float32(x))
			}
		}
	})
	out := make([]float32, len(q))
	eps := float32(1e-5)
	chunks := (L + linearRows - 1) / linearRows
	parallel.For(g.Heads*chunks, func(lo, hi int) {
		num := make([]float32, linearRows*d)
		for t := lo; t < hi; t++ {
			h, ci := t/chunks, t%chunks
			l0, l1 := ci*linearRows, min(ci*linearRows+linearRows, L)
			n := l1 - l0
			rows := qf[(h*L+l0)*d : (h*L+l1)*d]
			mm(n, d, d, rows, d, kvt[h*d*d:], d, num, d)
			ksh := ks[h*d : h*d+d]
			for r := range n {
				qr := rows[r*d : r*d+d]
				var den float64
				for c, a := range qr {
					den += float64(tensor.RoundBF16(a * ksh[c]))
				}
				dn := tensor.RoundBF16(eps + tensor.RoundBF16(float32(den)))
				nr := num[r*d : r*d+d]
				for c, x := range nr {
					nr[c] = tensor.RoundBF16(tensor.RoundBF16(x) / dn)
				}
			}
			dst := out[(h*L+l0)*d : (h*L+l1)*d]
			mm(n, d, d, num, d, w, d, dst, d)
			for i := range dst {
				dst[i] = tensor.RoundBF16(dst[i] + bias[i%d])
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
	parallel.For(len(x)/d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x[r*d : r*d+d]
			m := float32(math.Inf(-1))
			for _, v := range row {
				m = max(m, v)
			}
			var sum float32
			dst := out[r*d : r*d+d]
			for c, v := range row {
				e := expf(v - m)
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
