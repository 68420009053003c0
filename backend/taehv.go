package backend

// ConvFusion names what ConvFused does around a convolution: the input it
// reads (history frames, time growth, nearest 2x upsampling) and the
// epilogue it applies (residual, ReLU). The zero value is a plain Conv3d.
type ConvFusion struct {
	// Hist holds frames that precede x along time [Cin,Th,H,W], as in
	// Conv3dWithHistory (nil: none). Not combined with Grow or Up.
	Hist Tensor
	// Grow > 1 reads x [Grow·Cin,T,H,W] as [Cin,Grow·T,H,W]: frame Grow·t+g,
	// channel c is x[g·Cin+c, t]. This is TAEHV's TGrow, whose 1×1 conv
	// yields Grow frames per input frame stacked along channels.
	Grow int
	// Up convolves the nearest 2x upsampling (UpsampleNearest2x) of the
	// (grown) input.
	Up bool
	// Res, of the output's shape and dtype, is added after the bias (nil:
	// none).
	Res Tensor
	// ReLU applies max(·, 0) last.
	ReLU bool
	// Intermediate says the result will only be read by other ConvFused
	// calls (as their x or Res) and freed: a backend may then keep it in a
	// private layout (the CUDA backend: the next convolution's padded
	// channels-last input, saving a packing pass). Other ops may refuse
	// such a tensor.
	Intermediate bool
}

// TinyVAEOps are the ops the tiny video autoencoder (TAEHV, models/taehv)
// needs beyond VAEOps. Activations are channel-first [C,T,H,W].
type TinyVAEOps interface {
	// ConvFused returns act(Conv3d(in, w, bias, p) + Res) with in and act as
	// f says. Numerics are those of the unfused ops: the conv (products
	// summed in float32, rounded to x's dtype, the bias added and rounded
	// again), Add's rounding for Res; grow, upsampling and ReLU are exact.
	ConvFused(x, w, bias Tensor, p Conv3dParams, f ConvFusion) Tensor
	// ReLU returns max(x, 0).
	ReLU(x Tensor) Tensor
	// ScaledTanh returns s·tanh(x/s), computed in float32 and rounded once
	// (TAEHV's input Clamp, s = 3).
	ScaledTanh(x Tensor, s float32) Tensor
	// Clamp returns min(max(x, lo), hi).
	Clamp(x Tensor, lo, hi float32) Tensor
}

// TinyVAE is a backend able to run the tiny video autoencoder.
type TinyVAE interface {
	VAE
	TinyVAEOps
}

// GrowFrames is ConvFusion.Grow as a copy: x [g·C,T,H,W] → [C,g·T,H,W]
// with frame g·t+k, channel c = x[k·C+c, t]. It is the Reshape + Permute
// that backends without a fused form use.
func GrowFrames(b Core, x Tensor, g int) Tensor {
	s := x.Shape()
	if g <= 1 {
		return x
	}
	if len(s) != 4 || s[0]%g != 0 {
		Fail("grow frames: want x [%d·C,T,H,W], got %v", g, s)
	}
	c, t, hw := s[0]/g, s[1], s[2]*s[3]
	v := b.Reshape(x, g, c, t, hw)
	p := b.Permute(v, 1, 2, 0, 3) // [C,T,g,HW]
	return b.Reshape(p, c, g*t, s[2], s[3])
}

// ConvFusedUnfused computes ConvFused from the unfused ops of b (the
// reference definition): grow, upsample, Conv3dWithHistory (or the
// concatenation), Add, ReLU. Intermediate tensors are freed.
func ConvFusedUnfused(b TinyVAE, x, w, bias Tensor, p Conv3dParams, f ConvFusion) Tensor {
	if f.Hist != nil && (f.Grow > 1 || f.Up) {
		Fail("conv fused: history frames cannot be combined with grow or upsampling")
	}
	in := x
	if f.Grow > 1 {
		in = GrowFrames(b, in, f.Grow)
	}
	if f.Up {
		u := b.UpsampleNearest2x(in)
		if in != x {
			b.Free(in)
		}
		in = u
	}
	var out Tensor
	switch {
	case f.Hist == nil:
		out = b.Conv3d(in, w, bias, p)
	default:
		if h, ok := b.(Conv3dHistory); ok {
			out = h.Conv3dWithHistory(f.Hist, in, w, bias, p)
		} else {
			cat := b.Concat(1, f.Hist, in)
			out = b.Conv3d(cat, w, bias, p)
			b.Free(cat)
		}
	}
	if in != x {
		b.Free(in)
	}
	if f.Res != nil {
		s := b.Add(out, f.Res)
		b.Free(out)
		out = s
	}
	if f.ReLU {
		r := b.ReLU(out)
		b.Free(out)
		out = r
	}
	return out
}
