package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/sla"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// SparseLinearAttention is SLA/SageSLA self-attention (backend.DiTOps) for
// q, k, v [L, heads·d] or [B, L, heads·d], F32 or BF16. As in the
// reference, q/k/v are rounded to bf16 inside; the block map is computed in
// the inputs' dtype (bf16 roundings only for BF16 inputs). The result has
// q's dtype and bf16-exact values. Zero block sizes default to the
// reference's: SLA 128/64, SageSLA 64/128 (the sm90 kernel). cfg.BlockMap,
// if set, replaces the selection of every batch entry.
func (b *Backend) SparseLinearAttention(q, k, v backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) backend.Tensor {
	out, _ := b.sparseLinearAttention(q, k, v, heads, cfg, projW, projB)
	return out
}

// SLARecorder is a CPU backend that also keeps the block map of every
// SparseLinearAttention call, in call order (one entry per call and batch
// entry, layout [heads][qBlocks][kBlocks], 1 = selected). A DiT forward
// calls it once per block, so Maps[i] is block i's map; tests compare them
// with the oracle's `sla.block.<i>.sparse_map`.
type SLARecorder struct {
	*Backend
	Maps [][]int8
}

// SparseLinearAttention runs the CPU op and records its block maps.
func (r *SLARecorder) SparseLinearAttention(q, k, v backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) backend.Tensor {
	out, maps := r.Backend.sparseLinearAttention(q, k, v, heads, cfg, projW, projB)
	r.Maps = append(r.Maps, maps...)
	return out
}

func (b *Backend) sparseLinearAttention(q, k, v backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) (backend.Tensor, [][]int8) {
	qt, kt, vt := T(q), T(k), T(v)
	const op = "cpu: SparseLinearAttention"
	for _, x := range []struct {
		name string
		t    *Tensor
	}{{"q", qt}, {"k", kt}, {"v", vt}} {
		if x.t.dt != tensor.F32 && x.t.dt != tensor.BF16 {
			backend.Fail("%s: %s must be float32 or bfloat16, got %v", op, x.name, x.t.dt)
		}
	}
	batches, L, d := backend.SLAShape(op, q, k, v, heads)
	hd := heads * d
	var scfg sla.Config
	scfg.BlockQ, scfg.BlockK, scfg.Sage = cfg.Blocks(op)
	scfg.L, scfg.Heads, scfg.D, scfg.TopK = L, heads, d, cfg.TopK
	scfg.BF16Map = qt.dt == tensor.BF16 && kt.dt == tensor.BF16
	scfg.BlockMap = cfg.BlockMap
	scfg.MatMul = func(m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int) {
		b.gemm(m, n, k, a, lda, bm, ldb, c, ldc, nil)
	}
	pw := T(projW)
	backend.CheckShape("SparseLinearAttention proj_l weight", projW, d, d)
	var pb []float32
	if projB != nil {
		backend.CheckShape("SparseLinearAttention proj_l bias", projB, d)
		pb = T(projB).F
	}
	n := L * hd
	out := make([]float32, len(qt.F))
	maps := make([][]int8, 0, batches)
	for bi := 0; bi < batches; bi++ {
		o, m, err := sla.Forward(qt.F[bi*n:bi*n+n], kt.F[bi*n:bi*n+n], vt.F[bi*n:bi*n+n], scfg, pw.F, pb)
		if err != nil {
			backend.FailErr(err)
		}
		copy(out[bi*n:], o)
		maps = append(maps, m)
	}
	return b.track(&Tensor{shape: append([]int(nil), qt.shape...), dt: qt.dt, F: out}), maps
}
