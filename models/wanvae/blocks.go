package wanvae

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// state is what one Decode or Encode call carries from chunk to chunk: the
// last (up to two) input frames of every causal k=3 convolution, and which
// temporal resamplers have seen their first chunk.
type state struct {
	b       backend.VAE
	hist    map[*conv]backend.Tensor
	started map[*resample]bool
}

func newState(b backend.VAE) *state {
	return &state{b: b, hist: map[*conv]backend.Tensor{}, started: map[*resample]bool{}}
}

// free releases every cached frame.
func (s *state) free() {
	for _, t := range s.hist {
		s.b.Free(t)
	}
	clear(s.hist)
}

// causal runs a causal convolution with temporal kernel 3 over x [C,T,H,W]:
// the input is preceded by the layer's history (the last two input frames
// of earlier chunks), the frames missing from a full history of two are
// zeros, and no frame is padded behind. Spatial padding is pad on each side
// (1 for 3x3 kernels, 0 for the (3,1,1) time convs). The history is updated
// to the last two frames seen, so chunked processing equals one causal
// convolution over the whole sequence.
func (s *state) causal(c *conv, x backend.Tensor, pad int) backend.Tensor {
	b := s.b
	return s.causalWith(c, x, pad, func(h, in backend.Tensor, p backend.Conv3dParams) (backend.Tensor, backend.Tensor) {
		if hc, ok := b.(backend.Conv3dHistory); ok {
			return hc.Conv3dWithHistory(h, in, c.w, c.b, p), nil // no copy of the chunk
		}
		if h == nil {
			return b.Conv3d(in, c.w, c.b, p), nil
		}
		cat := b.Concat(1, h, in)
		defer b.Free(cat)
		return b.Conv3d(cat, c.w, c.b, p), nil
	})
}

// causalNorm is causal(c, SiLU(RMS(x; g)), 1) + res (res nil: nothing
// added), the residual blocks' and heads' norm-then-conv. Where the backend
// fuses it (backend.Conv3dNormHistory) the norm and the residual add run
// inside the convolution and the history holds raw frames (the norm is per
// position, so they are normalised again when read); otherwise it is
// ChannelRMSNorm, causal and Add.
func (s *state) causalNorm(c *conv, g, x, res backend.Tensor) backend.Tensor {
	b := s.b
	nc, ok := b.(backend.Conv3dNormHistory)
	if !ok || !nc.NormConvFused(x, c.w) { // decided per layer: the history's form stays fixed
		y := b.ChannelRMSNorm(x, g, true)
		z := s.causal(c, y, 1)
		b.Free(y)
		if res == nil {
			return z
		}
		out := b.Add(z, res)
		b.Free(z)
		return out
	}
	return s.causalWith(c, x, 1, func(h, in backend.Tensor, p backend.Conv3dParams) (backend.Tensor, backend.Tensor) {
		return nc.Conv3dNormWithHistory(h, in, g, c.w, c.b, res, p, 2)
	})
}

// causalWith does causal's padding and history bookkeeping around conv,
// which gets the history (nil for none), the chunk and the parameters and
// returns the output and, if it made one, the next history (the last two
// frames of history + chunk); else it is sliced here.
func (s *state) causalWith(c *conv, x backend.Tensor, pad int, conv func(h, x backend.Tensor, p backend.Conv3dParams) (backend.Tensor, backend.Tensor)) backend.Tensor {
	b := s.b
	h := s.hist[c]
	nh := 0
	if h != nil {
		nh = h.Shape()[1]
	}
	p := backend.Conv3dParams{PadT: [2]int{2 - nh, 0}, PadH: [2]int{pad, pad}, PadW: [2]int{pad, pad}}
	out, tail := conv(h, x, p)
	if tail != nil {
		s.hist[c] = tail
	} else if t := x.Shape()[1]; t >= 2 || h == nil {
		s.hist[c] = b.Slice(x, 1, t-min(2, t), t)
	} else {
		cat := b.Concat(1, h, x)
		n := cat.Shape()[1]
		s.hist[c] = b.Slice(cat, 1, n-min(2, n), n)
		b.Free(cat)
	}
	if h != nil {
		b.Free(h)
	}
	return out
}

// pointwise runs a 1x1x1 convolution.
func pointwise(b backend.VAE, c *conv, x backend.Tensor) backend.Tensor {
	return b.Conv3d(x, c.w, c.b, backend.Conv3dParams{})
}

// forward runs one layer of a stage on a chunk.
func (s *state) forward(l layer, x backend.Tensor) backend.Tensor {
	switch l := l.(type) {
	case *resBlock:
		return s.res(l, x)
	case *attnBlock:
		return s.attn(l, x)
	case *resample:
		return s.resample(l, x)
	}
	backend.Fail("wanvae: unknown layer %T", l)
	return nil
}

// forwardAll runs the layers of a stage in turn, freeing each input.
func (s *state) forwardAll(ls []layer, x backend.Tensor) backend.Tensor {
	for _, l := range ls {
		y := s.forward(l, x)
		s.b.Free(x)
		x = y
	}
	return x
}

// head is the encoder's and decoder's output head, causal conv(SiLU(RMS(x)))
// with norm scale g; it frees x.
func (s *state) head(g backend.Tensor, c *conv, x backend.Tensor) backend.Tensor {
	y := s.causalNorm(c, g, x, nil)
	s.b.Free(x)
	return y
}

// res is ResidualBlock: x + convs(SiLU(RMS(...))), with a 1x1x1 shortcut
// when the width changes.
func (s *state) res(r *resBlock, x backend.Tensor) backend.Tensor {
	b := s.b
	h := x
	if r.shortcut != nil {
		h = pointwise(b, r.shortcut, x)
	}
	y := s.causalNorm(r.c1, r.g1, x, nil)
	out := s.causalNorm(r.c2, r.g2, y, h)
	b.Free(y)
	if r.shortcut != nil {
		b.Free(h)
	}
	return out
}

// attn is AttentionBlock: per-frame single-head attention, plus identity.
func (s *state) attn(a *attnBlock, x backend.Tensor) backend.Tensor {
	b := s.b
	y := b.ChannelRMSNorm(x, a.g, false)
	qkv := pointwise(b, a.qkv, y)
	b.Free(y)
	o := b.FrameAttention(qkv)
	b.Free(qkv)
	p := pointwise(b, a.proj, o)
	b.Free(o)
	out := b.Add(p, x)
	b.Free(p)
	return out
}

// resample is Resample in its four modes (docs/NUMERICS.md §8).
func (s *state) resample(r *resample, x backend.Tensor) backend.Tensor {
	b := s.b
	switch r.mode {
	case up3d:
		// The first chunk's frame passes without the temporal conv; from the
		// second chunk on the conv runs with zero history (the first frame
		// never feeds it) and doubles the frames: output channels [0,C) give
		// even frames, [C,2C) odd ones.
		if !s.started[r] {
			s.started[r] = true
			return s.upsample2d(r, x)
		}
		sh := x.Shape()
		c, t, h, w := sh[0], sh[1], sh[2], sh[3]
		y := s.causal(r.time, x, 0)
		y2 := b.Permute(b.Reshape(y, 2, c, t, h*w), 1, 2, 0, 3)
		b.Free(y)
		y3 := b.Reshape(y2, c, 2*t, h, w)
		out := s.upsample2d(r, y3)
		b.Free(y2)
		return out
	case up2d:
		return s.upsample2d(r, x)
	case down2d, down3d:
		y := b.Conv3d(x, r.conv.w, r.conv.b, backend.Conv3dParams{
			PadH: [2]int{0, 1}, PadW: [2]int{0, 1}, Stride: [3]int{1, 2, 2},
		})
		if r.mode == down2d {
			return y
		}
		// The first chunk skips the temporal conv; later chunks run it with
		// stride 2 over [previous chunk's last frame, this chunk].
		t := y.Shape()[1]
		last := b.Slice(y, 1, t-1, t)
		if !s.started[r] {
			s.started[r] = true
			s.hist[r.time] = last
			return y
		}
		prev := s.hist[r.time]
		in := b.Concat(1, prev, y)
		b.Free(prev)
		b.Free(y)
		out := b.Conv3d(in, r.time.w, r.time.b, backend.Conv3dParams{Stride: [3]int{2, 1, 1}})
		b.Free(in)
		s.hist[r.time] = last
		return out
	}
	backend.Fail("wanvae: unknown resample mode %d", r.mode)
	return nil
}

// upsample2d is nearest 2x followed by a 3x3 conv that halves the channels.
func (s *state) upsample2d(r *resample, x backend.Tensor) backend.Tensor {
	p := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	if uc, ok := s.b.(backend.Conv3dUpsample); ok {
		return uc.Conv3dUpsample2x(x, r.conv.w, r.conv.b, p) // the upsampled tensor is never written
	}
	u := s.b.UpsampleNearest2x(x)
	out := s.b.Conv3d(u, r.conv.w, r.conv.b, p)
	s.b.Free(u)
	return out
}
