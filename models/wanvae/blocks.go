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

// setHist stores c's history. It is state across chunks, so it leaves the
// scope it was computed in and lives until replaced or until free.
func (s *state) setHist(c *conv, t backend.Tensor) {
	s.b.Persist(t)
	s.hist[c] = t
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
		return b.Conv3d(b.Concat(1, h, in), c.w, c.b, p), nil
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
		z := s.causal(c, b.ChannelRMSNorm(x, g, true), 1)
		if res == nil {
			return z
		}
		return b.Add(z, res)
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
		s.setHist(c, tail)
	} else if t := x.Shape()[1]; t >= 2 || h == nil {
		s.setHist(c, b.Slice(x, 1, t-min(2, t), t))
	} else {
		cat := b.Concat(1, h, x)
		n := cat.Shape()[1]
		s.setHist(c, b.Slice(cat, 1, n-min(2, n), n))
	}
	if h != nil {
		b.Free(h) // the old history, replaced
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

// forwardAll runs the layers of a stage in turn, each in its own scope,
// freeing each input (the loop-carried activation) once its output exists.
func (s *state) forwardAll(ls []layer, x backend.Tensor) backend.Tensor {
	for _, l := range ls {
		y := backend.Scoped(s.b, func() backend.Tensor { return s.forward(l, x) })
		s.b.Free(x)
		x = y
	}
	return x
}

// head is the encoder's and decoder's output head, causal conv(SiLU(RMS(x)))
// with norm scale g; it frees x.
func (s *state) head(g backend.Tensor, c *conv, x backend.Tensor) backend.Tensor {
	y := backend.Scoped(s.b, func() backend.Tensor { return s.causalNorm(c, g, x, nil) })
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
	return s.causalNorm(r.c2, r.g2, s.causalNorm(r.c1, r.g1, x, nil), h)
}

// attn is AttentionBlock: per-frame single-head attention, plus identity.
func (s *state) attn(a *attnBlock, x backend.Tensor) backend.Tensor {
	b := s.b
	qkv := pointwise(b, a.qkv, b.ChannelRMSNorm(x, a.g, false))
	return b.Add(pointwise(b, a.proj, b.FrameAttention(qkv)), x)
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
		y := b.Permute(b.Reshape(s.causal(r.time, x, 0), 2, c, t, h*w), 1, 2, 0, 3)
		return s.upsample2d(r, b.Reshape(y, c, 2*t, h, w))
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
		prev := s.hist[r.time]
		s.setHist(r.time, last)
		if !s.started[r] {
			s.started[r] = true
			return y
		}
		in := b.Concat(1, prev, y)
		b.Free(prev) // the old history, replaced
		return b.Conv3d(in, r.time.w, r.time.b, backend.Conv3dParams{Stride: [3]int{2, 1, 1}})
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
	return s.b.Conv3d(s.b.UpsampleNearest2x(x), r.conv.w, r.conv.b, p)
}
