// Package sla is TurboDiffusion's sparse-linear attention (docs/NUMERICS.md §6)
// in pure Go: the block map shared by SLA and SageSLA, the sparse branch as
// the SLA Triton kernel computes it, SageSLA's int8-QK / fp8-PV sparse
// branch emulated on the CPU, and the linear branch with proj_l.
//
// Tensors are float32 slices in the DiT's layout, q, k, v and the output
// [L, heads, d] row-major. Following the reference, q/k/v are rounded to
// bf16 inside the attention even in a float32 model, and the output holds
// bf16-exact values.
package sla

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Geometry is the shape and sparsity of one SLA call.
type Geometry struct {
	L, Heads, D    int
	BlockQ, BlockK int     // query and key block sizes (SLA 128/64; SageSLA on sm90 64/128)
	TopK           float64 // fraction of key blocks kept per query block
}

// QBlocks is the number of query blocks, ceil(L/BlockQ).
func (g Geometry) QBlocks() int { return (g.L + g.BlockQ - 1) / g.BlockQ }

// KBlocks is the number of key blocks, ceil(L/BlockK).
func (g Geometry) KBlocks() int { return (g.L + g.BlockK - 1) / g.BlockK }

// Selected is how many key blocks each query block keeps:
// min(Kb, int(topk·Kb)) with the product in float64, as Python computes it.
func (g Geometry) Selected() int {
	kb := g.KBlocks()
	return min(kb, int(g.TopK*float64(kb)))
}

// MapLen is the length of a block map, heads·QBlocks·KBlocks.
func (g Geometry) MapLen() int { return g.Heads * g.QBlocks() * g.KBlocks() }

// Check validates the geometry against slices of n elements each.
func (g Geometry) Check(n int) error {
	switch {
	case g.L <= 0 || g.Heads <= 0 || g.D <= 0:
		return fmt.Errorf("sla: need L, heads and head dim > 0, got L=%d heads=%d d=%d", g.L, g.Heads, g.D)
	case g.BlockQ <= 0 || g.BlockK <= 0:
		return fmt.Errorf("sla: block sizes must be > 0, got BlockQ=%d BlockK=%d", g.BlockQ, g.BlockK)
	case !(g.TopK > 0) || math.IsInf(g.TopK, 1):
		return fmt.Errorf("sla: topk must be a positive fraction of the key blocks, got %g", g.TopK)
	case g.Selected() < 1:
		return fmt.Errorf("sla: topk %g keeps no key block of %d (int(topk·Kb) = 0)", g.TopK, g.KBlocks())
	case n != g.L*g.Heads*g.D:
		return fmt.Errorf("sla: q/k/v hold %d values, want [L=%d, heads=%d, d=%d]", n, g.L, g.Heads, g.D)
	}
	return nil
}

// Config is one SLA or SageSLA call.
type Config struct {
	Geometry
	// Sage selects SageSLA's quantised sparse branch (int8 Q/K, fp8 P and V).
	Sage bool
	// BF16Map says q and k arrive in bf16 (the model dtype): the block map
	// then rounds its means, pooled blocks and scores to bf16 like the
	// reference; a float32 model computes them in float32.
	BF16Map bool
	// BlockMap, when non-nil, replaces the computed selection
	// ([heads][QBlocks][KBlocks], 1 = selected).
	BlockMap []int8
	// MatMul, when non-nil, runs the GEMM-shaped steps (a backend's SIMD
	// kernel); it must be safe for concurrent calls.
	MatMul MatMul
}

// Forward computes SLA/SageSLA attention: o = bf16(sparse + proj_l(linear))
// for q, k, v [L, heads, d], with proj_l weight projW [d, d] and bias projB
// [d] (nil for none). It returns the output [L, heads, d] (bf16-exact) and
// the block map it used.
func Forward(q, k, v []float32, cfg Config, projW, projB []float32) ([]float32, []int8, error) {
	g := cfg.Geometry
	if err := g.Check(len(q)); err != nil {
		return nil, nil, err
	}
	if len(k) != len(q) || len(v) != len(q) {
		return nil, nil, fmt.Errorf("sla: q, k, v sizes differ: %d, %d, %d", len(q), len(k), len(v))
	}
	if len(projW) != g.D*g.D || (projB != nil && len(projB) != g.D) {
		return nil, nil, fmt.Errorf("sla: proj_l weight has %d values (want [%d, %d]), bias %d (want %d)", len(projW), g.D, g.D, len(projB), g.D)
	}
	if cfg.Sage && g.D != 64 && g.D != 128 {
		return nil, nil, fmt.Errorf("sla: SageSLA needs head dim 64 or 128, got %d", g.D)
	}
	return compute(q, k, v, cfg, projW, projB, true)
}

// Sparse is the sparse branch alone (SLA Triton kernel, or SageSLA when
// cfg.Sage) with cfg's block map (computed if nil), output [L, heads, d]
// bf16-exact; for conformance tests.
func Sparse(q, k, v []float32, cfg Config) ([]float32, error) {
	g := cfg.Geometry
	if err := g.Check(len(q)); err != nil {
		return nil, err
	}
	if len(k) != len(q) || len(v) != len(q) {
		return nil, fmt.Errorf("sla: q, k, v sizes differ: %d, %d, %d", len(q), len(k), len(v))
	}
	out, _, err := compute(q, k, v, cfg, nil, nil, false)
	return out, err
}

// compute runs the sparse branch (and the linear one if withLinear) head
// by head, so the working set is one head's [L, d] operands, and returns
// the output [L, heads, d] and the block map.
func compute(q, k, v []float32, cfg Config, projW, projB []float32, withLinear bool) ([]float32, []int8, error) {
	g := cfg.Geometry
	bmap, order, err := selection(q, k, cfg)
	if err != nil {
		return nil, nil, err
	}
	mm := cfg.MatMul
	if mm == nil {
		mm = scalarMatMul
	}
	gh := g
	gh.Heads = 1
	qb, kb, d, hd := g.QBlocks(), g.KBlocks(), g.D, g.Heads*g.D
	out := make([]float32, len(q))
	for h := range g.Heads {
		qh, kh, vh := headOf(q, g, h), headOf(k, g, h), headOf(v, g, h)
		var os, ol []float32
		if cfg.Sage {
			os = sageSparse(qh, kh, vh, gh, bmap[h*qb*kb:(h+1)*qb*kb], mm)
		} else {
			os = sparse(qh, kh, vh, gh, order[h*qb:(h+1)*qb], mm)
		}
		if withLinear {
			ol = linear(qh, kh, vh, gh, projW, projB, mm)
		}
		parallel.For(g.L, func(lo, hi int) {
			for l := lo; l < hi; l++ {
				dst := out[l*hd+h*d : l*hd+h*d+d]
				for c := range dst {
					x := os[l*d+c]
					if ol != nil {
						x = tensor.RoundBF16(x + ol[l*d+c])
					}
					dst[c] = x
				}
			}
		})
	}
	return out, bmap, nil
}

// selection returns the block map (cfg.BlockMap or computed) and, per
// (head, query block), the order the SLA kernel visits the selected key
// blocks: torch.topk(sorted=False) lists the blocks scoring strictly above
// the k-th score in ascending index order, then those equal to it. The
// order changes the online softmax's rounding only.
func selection(q, k []float32, cfg Config) ([]int8, [][]int, error) {
	g := cfg.Geometry
	scores, err := PooledScores(q, k, g, cfg.BF16Map)
	if err != nil {
		return nil, nil, err
	}
	bmap := cfg.BlockMap
	if bmap == nil {
		bmap = SelectTopK(scores, g)
	} else if err := checkMap(bmap, g); err != nil {
		return nil, nil, err
	}
	kb := g.KBlocks()
	order := make([][]int, len(bmap)/kb)
	for r := range order {
		sel := selectedBlocks(bmap[r*kb : r*kb+kb])
		if len(sel) == 0 {
			continue
		}
		row := scores[r*kb : r*kb+kb]
		kth := row[sel[0]]
		for _, j := range sel {
			kth = min(kth, row[j])
		}
		o := make([]int, 0, len(sel))
		for _, j := range sel {
			if row[j] > kth {
				o = append(o, j)
			}
		}
		for _, j := range sel {
			if !(row[j] > kth) {
				o = append(o, j)
			}
		}
		order[r] = o
	}
	return bmap, order, nil
}

func checkMap(m []int8, g Geometry) error {
	if len(m) != g.MapLen() {
		return fmt.Errorf("sla: block map has %d entries, want [heads=%d, qblocks=%d, kblocks=%d]", len(m), g.Heads, g.QBlocks(), g.KBlocks())
	}
	return nil
}

// headOf copies head h of x [L, heads, d] to [L, d], rounded to bf16
// (SLA casts q, k, v to bf16 whatever the model dtype).
func headOf(x []float32, g Geometry, h int) []float32 {
	out := make([]float32, g.L*g.D)
	hd := g.Heads * g.D
	parallel.For(g.L, func(lo, hi int) {
		for l := lo; l < hi; l++ {
			src := x[l*hd+h*g.D : l*hd+h*g.D+g.D]
			dst := out[l*g.D : l*g.D+g.D]
			for c, v := range src {
				dst[c] = tensor.RoundBF16(v)
			}
		}
	})
	return out
}

// selectedBlocks lists the selected key blocks of one map row, ascending.
func selectedBlocks(row []int8) []int {
	var sel []int
	for j, s := range row {
		if s != 0 {
			sel = append(sel, j)
		}
	}
	return sel
}

func errSize(a, b int) error { return fmt.Errorf("sla: q and k sizes differ: %d vs %d", a, b) }
