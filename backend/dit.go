package backend

import "github.com/turbodiffusion-go/turbodiffusion/tensor"

// NormMode picks how an RMSNorm rounds, matching the reference's two
// implementations (docs/NUMERICS.md §3.7).
type NormMode int

const (
	// NormFast is TurboDiffusion's Triton norm: x̂·w in float32, one rounding.
	NormFast NormMode = iota
	// NormDefault is WanRMSNorm: x̂ rounded to x's dtype, then multiplied by
	// the weight (rounded again).
	NormDefault
)

// AttentionKind selects the self-attention implementation.
type AttentionKind int

const (
	// Dense is exact softmax attention (PyTorch SDPA in the reference).
	Dense AttentionKind = iota
	// SLA is sparse-linear attention as the Triton reference computes it.
	SLA
	// SageSLA is SLA with SageAttention's int8 QK and fp8 PV quantisation in
	// the sparse branch.
	SageSLA
)

func (k AttentionKind) String() string {
	switch k {
	case Dense:
		return "dense"
	case SLA:
		return "sla"
	case SageSLA:
		return "sagesla"
	}
	return "unknown"
}

// SLAConfig holds the block geometry and sparsity of SLA/SageSLA.
type SLAConfig struct {
	Kind   AttentionKind // SLA or SageSLA
	TopK   float64       // fraction of key blocks kept per query block
	BlockQ int           // query block size (128 for SLA; 64 for SageSLA on sm90)
	BlockK int           // key block size (64 for SLA; 128 for SageSLA on sm90)
	// BlockMap, when non-nil, overrides the computed selection (tests use the
	// oracle's map in rows the README marks as near-ties). Layout
	// [heads][qBlocks][kBlocks] flattened, 1 = selected.
	BlockMap []int8
}

// DiTOps are the ops the Wan DiT needs beyond Core.
type DiTOps interface {
	// Linear returns x·wᵀ + bias for x [..., K], w [N, K], bias [N] or nil.
	// Accumulates in float32; the result has x's dtype. w may be F32 or BF16
	// (upcast exactly when x is F32: the reference's fp32 autocast regions).
	Linear(x, w, bias Tensor) Tensor
	// Int8Linear is TurboDiffusion's W8A8 layer: x [..., K] BF16 quantised
	// per 128x128 tile, w int8 [N, K] with scale [ceil(N/128), K/128] F32,
	// block-ordered fp32 FMA accumulation, rounded to bf16, then bias added
	// in bf16 (docs/NUMERICS.md §5).
	Int8Linear(x, w, scale, bias Tensor) Tensor
	// LayerNorm normalises over the last dim (eps inside the sqrt), in
	// float32, optionally multiplies by w and adds b (nil for none), and
	// rounds once to out.
	LayerNorm(x, w, b Tensor, eps float32, out tensor.DType) Tensor
	// RMSNorm normalises over the last dim and multiplies by w, rounding as
	// mode says; result has x's dtype (also for NormDefault with an F32 w
	// and BF16 x, where PyTorch would promote the product to float32).
	RMSNorm(x, w Tensor, eps float32, mode NormMode) Tensor
	// Modulate returns x·(1+scale)+shift computed in float32 and rounded to
	// x's dtype; x [..., D], shift and scale F32 [D].
	Modulate(x, shift, scale Tensor) Tensor
	// GatedAdd returns x + bf16(y·bf16(gate)) for BF16 x (each product and
	// sum rounded, as TD's `x + y * e.type_as(x)`), or the float32 version
	// for F32 x; gate F32 [D].
	GatedAdd(x, y, gate Tensor) Tensor
	// RoPE rotates interleaved pairs of each head: x [L, heads·d], angles F32
	// [L, d/2]. Rotation in float32, result in x's dtype.
	RoPE(x, angles Tensor, heads int) Tensor
	// Attention is softmax(q·kᵀ·scale)·v per head for q [Lq, heads·d] and
	// k, v [Lk, heads·d]; result [Lq, heads·d] in q's dtype. Scores,
	// softmax and accumulation are float32; for BF16 q the unnormalised
	// probabilities are rounded to bf16 before P·V (row sums unrounded), as
	// the flash kernels behind PyTorch's bf16 SDPA do.
	Attention(q, k, v Tensor, heads int, scale float32) Tensor
	// SparseLinearAttention is SLA/SageSLA self-attention (docs/NUMERICS.md §6)
	// for q, k, v [L, heads·d]; projW [d, d], projB [d] is proj_l.
	SparseLinearAttention(q, k, v Tensor, heads int, cfg SLAConfig, projW, projB Tensor) Tensor
}

// DiT is a backend able to run the Wan DiT.
type DiT interface {
	Core
	DiTOps
}
