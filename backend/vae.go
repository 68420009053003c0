package backend

// Conv3dParams gives a 3-D convolution's zero padding per side and its
// stride. Explicit per-side padding expresses every conv of the Wan VAE with
// one op: causal convs pad time only in front, downsampling pads only the
// right and bottom edges, and 2-D convs are kt=1 convs run on all frames.
type Conv3dParams struct {
	PadT   [2]int // frames before, after
	PadH   [2]int // rows above, below
	PadW   [2]int // columns left, right
	Stride [3]int // t, h, w; 0 means 1
}

// Strides returns the stride with zeros replaced by 1.
func (p Conv3dParams) Strides() (st, sh, sw int) {
	st, sh, sw = p.Stride[0], p.Stride[1], p.Stride[2]
	if st <= 0 {
		st = 1
	}
	if sh <= 0 {
		sh = 1
	}
	if sw <= 0 {
		sw = 1
	}
	return
}

// Conv3dOutShape is the output shape of Conv3d for an input [Cin,T,H,W] and
// a weight [Cout,Cin,kt,kh,kw]; it fails when the padded input is smaller
// than the kernel.
func Conv3dOutShape(x, w []int, p Conv3dParams) []int {
	if len(x) != 4 || len(w) != 5 {
		Fail("conv3d: want input [C,T,H,W] and weight [Cout,Cin,kt,kh,kw], got %v and %v", x, w)
	}
	if x[0] != w[1] {
		Fail("conv3d: input has %d channels, weight %v expects %d", x[0], w, w[1])
	}
	st, sh, sw := p.Strides()
	dim := func(n, pad0, pad1, k, s int, what string) int {
		if pad0 < 0 || pad1 < 0 {
			Fail("conv3d: negative %s padding %d,%d", what, pad0, pad1)
		}
		m := n + pad0 + pad1 - k
		if m < 0 {
			Fail("conv3d: %s extent %d (padded %d) is smaller than the kernel %d", what, n, n+pad0+pad1, k)
		}
		return m/s + 1
	}
	return []int{
		w[0],
		dim(x[1], p.PadT[0], p.PadT[1], w[2], st, "time"),
		dim(x[2], p.PadH[0], p.PadH[1], w[3], sh, "height"),
		dim(x[3], p.PadW[0], p.PadW[1], w[4], sw, "width"),
	}
}

// VAEOps are the ops the Wan video VAE needs beyond Core. Activations are
// channel-first [C,T,H,W] (one sample).
type VAEOps interface {
	// Conv3d convolves x [Cin,T,H,W] with w [Cout,Cin,kt,kh,kw] (zero
	// padding and stride from p) and adds bias [Cout] (nil for none). The
	// products are accumulated in float32 and rounded to x's dtype; the bias
	// is then added and the sum rounded again, as PyTorch adds a conv's bias
	// in a separate op. w is uploaded in x's dtype.
	Conv3d(x, w, bias Tensor, p Conv3dParams) Tensor
	// ChannelRMSNorm is the VAE's RMS_norm over dim 0 of x [C,...]:
	// x / max(‖x‖₂, 1e-12) · √C · γ with γ [C], then SiLU when silu is set.
	// For BF16 x each step rounds as PyTorch does: the norm, the quotient,
	// the product with √C, the product with γ, and the SiLU.
	ChannelRMSNorm(x, gamma Tensor, silu bool) Tensor
	// UpsampleNearest2x repeats every pixel of x [C,T,H,W] into a 2x2 block
	// ("nearest-exact" with scale 2: source index i/2).
	UpsampleNearest2x(x Tensor) Tensor
	// FrameAttention is the VAE's single-head self-attention, run per frame
	// over its H·W pixels: qkv [3C,T,H,W] holds q, k, v as channel thirds
	// (q first); the result [C,T,H,W] is softmax(q·kᵀ/√C)·v computed in
	// float32 and rounded to qkv's dtype. As in flash attention, the
	// unnormalised probabilities exp(s−max) are rounded to qkv's dtype
	// before they multiply v; the row sums use the unrounded values.
	FrameAttention(qkv Tensor) Tensor
}

// VAE is a backend able to run the Wan VAE.
type VAE interface {
	Core
	VAEOps
}

// Conv3dHistory is an optional VAEOps extension for causal convolutions
// over chunks: Conv3dWithHistory(hist, x, w, bias, p) equals
// Conv3d(Concat(1, hist, x), w, bias, p) (hist nil: Conv3d(x, ...)) with
// the same numerics, but a backend may read the two parts in place instead
// of copying every chunk into a concatenation. hist [Cin,Th,H,W] must match
// x [Cin,T,H,W] in dtype, channels and frame size.
type Conv3dHistory interface {
	Conv3dWithHistory(hist, x, w, bias Tensor, p Conv3dParams) Tensor
}

// Conv3dNormHistory is an optional VAEOps extension that fuses the VAE's
// RMS norm + SiLU into a causal convolution:
// Conv3dNormWithHistory(hist, x, gamma, w, bias, res, p, keep) returns
// out = Conv3d(ChannelRMSNorm(Concat(1, hist, x), gamma, true), w, bias, p)
// (hist nil: no concatenation), plus res when res is not nil (Add's
// rounding, after the bias), and tail = the last min(keep, Th+T) frames of
// Concat(1, hist, x), raw: the next chunk's history, which a backend can
// write while it reads the input (nil for keep 0). hist holds raw (not
// normalised) frames; the norm is per position, so normalising cached
// frames again gives the values the model used before. For bf16 a backend
// may take the quotient as a product with the reciprocal and evaluate the
// SiLU in float32 where ChannelRMSNorm's reference divides and uses
// float64: the results differ only where a value lies within an ulp of a
// bf16 rounding boundary.
//
// NormConvFused tells whether the fused form runs for input x and weight w
// (it depends only on their dtype and shapes' channels, so a model can
// decide once per layer whether its history holds raw frames); where it
// does not, ChannelRMSNorm + Conv3dWithHistory with a normalised history is
// cheaper than Conv3dNormWithHistory's fallback, which normalises the
// history again on every chunk.
type Conv3dNormHistory interface {
	NormConvFused(x, w Tensor) bool
	Conv3dNormWithHistory(hist, x, gamma, w, bias, res Tensor, p Conv3dParams, keep int) (out, tail Tensor)
}

// Conv3dUpsample is an optional VAEOps extension for the decoder's resample
// convolutions: Conv3dUpsample2x(x, w, bias, p) equals
// Conv3d(UpsampleNearest2x(x), w, bias, p) with the same numerics, but a
// backend may read x through the upsampling instead of writing the 4x larger
// tensor.
type Conv3dUpsample interface {
	Conv3dUpsample2x(x, w, bias Tensor, p Conv3dParams) Tensor
}
