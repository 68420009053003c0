package backend

// TextOps are the ops the umT5 text encoder needs beyond Core and DiTOps
// (docs/NUMERICS.md §9). Everything else in the encoder is Linear (no bias),
// RMSNorm in NormDefault mode (T5's norm rounds x̂ before the weight), Add
// and Mul.
type TextOps interface {
	// RelPosAttention is T5 attention for q [Lq, heads·d] and k, v
	// [Lk, heads·d], with no 1/√d scaling:
	//   logit(h,i,j) = round(round(q_i·k_j) + relBias[h, j−i+Lq−1])
	// for keys j < keyLen (keys ≥ keyLen are masked out entirely), where
	// round is to q's dtype; softmax over j in float32; probabilities
	// rounded to q's dtype; output Σ_j p_j·v_j accumulated in float32 and
	// rounded to q's dtype, shape [Lq, heads·d]. relBias [heads, Lq+Lk−1]
	// holds the per-head relative-position bias by offset j−i, already in
	// q's dtype: a Toeplitz bias is stored in O(L) instead of O(L²).
	// keyLen must be in [1, Lk].
	RelPosAttention(q, k, v, relBias Tensor, heads, keyLen int) Tensor
	// GELUTanhSteps is T5's GELU written out as separate tensor ops, each
	// rounded to x's dtype: p = x·x·x (two roundings), c = 0.044715·p,
	// s = x + c, t = √(2/π)·s, th = tanh t, o = 1 + th, y = (0.5·x)·o,
	// with the constants as float32.
	GELUTanhSteps(x Tensor) Tensor
}

// Text is a backend able to run the umT5 encoder.
type Text interface {
	Core
	DiTOps
	TextOps
}
