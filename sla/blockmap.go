package sla

import (
	"sort"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// BlockMap computes the block selection of SLA/SageSLA (docs/NUMERICS.md §6.1)
// for q, k [L, heads, d]: mean-pooled q blocks against mean-pooled blocks of
// the smoothed keys k − mean_L(k), top Selected() key blocks per query
// block. The result is [heads][QBlocks][KBlocks], 1 = selected. With bf16
// the intermediate tensors are rounded to bf16 where the reference (running
// in a bf16 model) stores them.
func BlockMap(q, k []float32, g Geometry, bf16 bool) ([]int8, error) {
	s, err := PooledScores(q, k, g, bf16)
	if err != nil {
		return nil, err
	}
	return SelectTopK(s, g), nil
}

// PooledScores returns the block scores [heads][QBlocks][KBlocks] that the
// selection ranks (the reference's pooled_score, without 1/√d).
func PooledScores(q, k []float32, g Geometry, bf16 bool) ([]float32, error) {
	if err := g.Check(len(q)); err != nil {
		return nil, err
	}
	if len(k) != len(q) {
		return nil, errSize(len(q), len(k))
	}
	qb, kb, d := g.QBlocks(), g.KBlocks(), g.D
	round := func(x float32) float32 {
		if bf16 {
			return tensor.RoundBF16(x)
		}
		return x
	}
	scores := make([]float32, g.Heads*qb*kb)
	parallel.For(g.Heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			at := func(x []float32, l int) []float32 { return x[(l*g.Heads+h)*d : (l*g.Heads+h)*d+d] }
			// smoothing mean of k over all tokens
			mean := make([]float32, d)
			acc := make([]float64, d)
			for l := 0; l < g.L; l++ {
				for c, v := range at(k, l) {
					acc[c] += float64(round(v))
				}
			}
			for c := range mean {
				mean[c] = round(float32(acc[c] / float64(g.L)))
			}
			pool := func(x []float32, blk, n int, smooth bool) []float32 {
				out := make([]float32, n*d)
				for b := 0; b < n; b++ {
					l0, l1 := b*blk, min(b*blk+blk, g.L)
					clear(acc)
					for l := l0; l < l1; l++ {
						for c, v := range at(x, l) {
							v = round(v)
							if smooth {
								v = round(v - mean[c])
							}
							acc[c] += float64(v)
						}
					}
					for c := range d {
						out[b*d+c] = round(float32(acc[c]) / float32(l1-l0))
					}
				}
				return out
			}
			pq := pool(q, g.BlockQ, qb, false)
			pk := pool(k, g.BlockK, kb, true)
			for i := 0; i < qb; i++ {
				for j := 0; j < kb; j++ {
					var s float64
					a, b := pq[i*d:i*d+d], pk[j*d:j*d+d]
					for c := range a {
						s += float64(a[c]) * float64(b[c])
					}
					scores[(h*qb+i)*kb+j] = round(float32(s))
				}
			}
		}
	})
	return scores, nil
}

// SelectTopK turns scores [heads][QBlocks][KBlocks] into a block map with
// torch.topk's choice: all values strictly greater than the k-th, then
// values equal to it in ascending key-block order.
func SelectTopK(scores []float32, g Geometry) []int8 {
	kb, kk := g.KBlocks(), g.Selected()
	m := make([]int8, len(scores))
	idx := make([]int, kb)
	for r := 0; r < len(scores)/kb; r++ {
		row := scores[r*kb : r*kb+kb]
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
		for _, j := range idx[:kk] {
			m[r*kb+j] = 1
		}
	}
	return m
}
