package taehv

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// pad1 is the zero padding of TAEHV's 3x3 convolutions.
var pad1 = backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}

// state is what runs of the network over consecutive chunks of frames
// carry: each MemBlock's last input frame (its memory of the past). With
// keep false (one chunk holding every frame) nothing is carried.
type state struct {
	b    backend.TinyVAE
	keep bool
	hist map[*memBlock]backend.Tensor
}

func newState(b backend.TinyVAE, keep bool) *state {
	return &state{b: b, keep: keep, hist: map[*memBlock]backend.Tensor{}}
}

// then returns f(x) and frees x: one link of a chain of layers whose
// input is dead once the next activation exists. f runs in a scope of its
// own, so whatever it allocates besides its result goes too; x, carried
// from link to link, belongs to no scope that ends in time, hence the
// explicit Free. The peak is thus one link's tensors, as a hand-freed
// chain has it.
func then(b backend.Core, x backend.Tensor, f func(x backend.Tensor) backend.Tensor) backend.Tensor {
	y := backend.Scoped(b, func() backend.Tensor { return f(x) })
	b.Free(x)
	return y
}

// free releases the carried frames.
func (s *state) free() {
	for _, t := range s.hist {
		s.b.Free(t)
	}
	clear(s.hist)
}

// mem runs a MemBlock over x [C,n,H,W] (frames following those of earlier
// chunks). Its first conv sees each frame with the one before it: the
// carried frame for the chunk's first, zeros for the very first frame of
// the sequence (TAEHV's empty memory). x is not freed. The block's inner
// results are ConvFusion Intermediates (they only feed its next conv); so
// is its output when inter is set (the caller only passes it to ConvFused).
// Run it in a scope (then): its inner results are the scope's.
func (s *state) mem(m *memBlock, x backend.Tensor, inter bool) backend.Tensor {
	b := s.b
	n := x.Shape()[1]
	hist := s.hist[m]
	p := pad1
	if hist == nil {
		p.PadT = [2]int{1, 0}
	}
	a := b.ConvFused(x, m.c1.w, m.c1.b, p, backend.ConvFusion{Hist: hist, ReLU: true, Intermediate: true})
	if s.keep {
		if hist != nil {
			b.Free(hist) // the carried frame it replaces, read just now
		}
		s.hist[m] = b.Slice(x, 1, n-1, n)
		b.Persist(s.hist[m]) // carried to the next chunk, freed by free
	}
	c := then(b, a, func(a backend.Tensor) backend.Tensor {
		return b.ConvFused(a, m.c2.w, m.c2.b, pad1, backend.ConvFusion{ReLU: true, Intermediate: true})
	})
	return b.ConvFused(c, m.c3.w, m.c3.b, pad1, backend.ConvFusion{Res: x, ReLU: true, Intermediate: inter})
}

// decodeRaw runs the decoder on latent frames x [Z,n,H,W] (not freed) and
// returns its last conv's output [3,4n,8H,8W]: not trimmed, not clamped.
// The reference's Upsample then TGrow becomes TGrow's 1x1 conv on the small
// frames (it commutes with nearest upsampling) and a conv that reads the
// grown frames through the upsampling (ConvFusion Grow, Up).
//
// Results that only feed further convolutions are ConvFusion
// Intermediates; with s.keep (streaming) the MemBlocks' inputs are not,
// since their last frame is kept as the next chunk's memory.
func (m *Model) decodeRaw(s *state, x backend.Tensor) backend.Tensor {
	b := m.b
	inter := !s.keep
	y := then(b, b.ScaledTanh(x, 3), func(h backend.Tensor) backend.Tensor {
		return b.ConvFused(h, m.decIn.w, m.decIn.b, pad1, backend.ConvFusion{ReLU: true, Intermediate: inter})
	})
	for st := 0; st < 3; st++ {
		for _, mb := range m.decMem[st] {
			y = then(b, y, func(y backend.Tensor) backend.Tensor { return s.mem(mb, y, inter) })
		}
		y = then(b, y, func(y backend.Tensor) backend.Tensor {
			return b.ConvFused(y, m.decGrow[st].w, nil, backend.Conv3dParams{}, backend.ConvFusion{})
		})
		// The last stage's conv feeds only the head conv.
		y = then(b, y, func(g backend.Tensor) backend.Tensor {
			return b.ConvFused(g, m.decUp[st].w, nil, pad1, backend.ConvFusion{Grow: decTimeGrow[st], Up: true, ReLU: st == 2, Intermediate: inter || st == 2})
		})
	}
	return then(b, y, func(y backend.Tensor) backend.Tensor {
		return b.ConvFused(y, m.decOut.w, m.decOut.b, pad1, backend.ConvFusion{})
	})
}

// checkLatent validates a host latent [Z,T,H,W].
func (m *Model) checkLatent(latent []float32, shape []int) error {
	if len(shape) != 4 || shape[0] != m.cfg.LatentChannels || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return fmt.Errorf("taehv: decode: want a latent [%d,T,H,W], got shape %v", m.cfg.LatentChannels, shape)
	}
	if n := tensor.NumElements(shape); n != len(latent) {
		return fmt.Errorf("taehv: decode: latent shape %v holds %d values, got %d", shape, n, len(latent))
	}
	return nil
}

// checkLatentTensor validates a latent tensor [Z,T,H,W].
func (m *Model) checkLatentTensor(x backend.Tensor) {
	s := x.Shape()
	if len(s) != 4 || s[0] != m.cfg.LatentChannels || s[1] < 1 || s[2] < 1 || s[3] < 1 {
		backend.Fail("taehv: decode: want a latent [%d,T,H,W], got shape %v", m.cfg.LatentChannels, s)
	}
}

// finish trims the first trim frames of raw [3,F,H,W] (freeing it) and
// clamps to [0, 1].
func (m *Model) finish(raw backend.Tensor, trim int) backend.Tensor {
	b := m.b
	if trim > 0 {
		raw = then(b, raw, func(r backend.Tensor) backend.Tensor { return b.Slice(r, 1, trim, r.Shape()[1]) })
	}
	return then(b, raw, func(r backend.Tensor) backend.Tensor { return b.Clamp(r, 0, 1) })
}

// DecodeTensor decodes a latent tensor [Z,T,H,W] on the model's backend
// (in the model's dtype; not freed) with every frame at once (TAEHV's
// parallel mode) and returns the video [3,4T−3,8H,8W] in [0, 1], in the
// model's dtype, on the backend.
func (m *Model) DecodeTensor(x backend.Tensor) (video backend.Tensor, err error) {
	defer backend.Recover(&err)
	m.checkLatentTensor(x)
	return backend.Scoped(m.b, func() backend.Tensor {
		return m.finish(m.decodeRaw(newState(m.b, false), x), FramesToTrim)
	}), nil
}

// Decode turns a latent [Z,T,H,W] (row-major float32, the DiT's output as
// it is) into a video [3,4T−3,8H,8W] with values in [0, 1], decoding every
// frame at once (TAEHV's parallel mode).
func (m *Model) Decode(latent []float32, shape []int) (video []float32, vshape []int, err error) {
	if err := m.checkLatent(latent, shape); err != nil {
		return nil, nil, err
	}
	defer backend.Recover(&err)
	sc := m.b.Begin() // the latent and the video
	defer sc.End()
	out, err := m.DecodeTensor(m.b.Upload(m.dt, shape, latent))
	if err != nil {
		return nil, nil, err
	}
	return m.b.Download(out), out.Shape(), nil
}

// DecodeChunks is Decode delivering the video in pieces: every frame is
// decoded at once on the backend, then emit gets the frames a chunk at a
// time as they are copied to the host — the Wan VAE's chunking (1 frame,
// then 4 per latent frame: first is the index of the chunk's first frame,
// chunk [3,n,8H,8W] in [0, 1]), so a caller can convert or encode the first
// frames while the rest are still on the device. An error from emit stops
// and is returned.
func (m *Model) DecodeChunks(latent []float32, shape []int, emit func(first int, chunk []float32, chunkShape []int) error) (err error) {
	if err := m.checkLatent(latent, shape); err != nil {
		return err
	}
	defer backend.Recover(&err)
	b := m.b
	sc := b.Begin() // the video; the latent goes once decoded
	defer sc.End()
	video := backend.Scoped(b, func() backend.Tensor {
		v, err := m.DecodeTensor(b.Upload(m.dt, shape, latent))
		if err != nil {
			backend.FailErr(err)
		}
		return v
	})
	F := video.Shape()[1]
	for first := 0; first < F; {
		n := min(TemporalFactor, F-first)
		if first == 0 {
			n = 1
		}
		data, cs := m.frames(video, first, n)
		if err := emit(first, data, cs); err != nil {
			return err
		}
		first += n
	}
	return nil
}

// frames copies frames [first, first+n) of video [3,F,H,W] to the host
// (the slice on the device goes at once).
func (m *Model) frames(video backend.Tensor, first, n int) ([]float32, []int) {
	sc := m.b.Begin()
	defer sc.End()
	c := m.b.Slice(video, 1, first, first+n)
	return m.b.Download(c), c.Shape()
}

// decodeRawAll is decodeRaw over the whole latent in one chunk, for tests
// (the reference's decoder_raw).
func (m *Model) decodeRawAll(latent []float32, shape []int) (raw []float32, rshape []int, err error) {
	if err := m.checkLatent(latent, shape); err != nil {
		return nil, nil, err
	}
	defer backend.Recover(&err)
	sc := m.b.Begin()
	defer sc.End()
	out := m.decodeRaw(newState(m.b, false), m.b.Upload(m.dt, shape, latent))
	return m.b.Download(out), out.Shape(), nil
}

// Stream decodes a latent a few frames at a time, carrying the MemBlocks'
// memory between pushes: TAEHV's sequential mode, in which memory does not
// grow with the video's length. Pushing the frames of a latent one by one
// gives the frames Decode gives (up to float32 rounding). A Stream holds
// device memory until Close.
type Stream struct {
	m      *Model
	s      *state
	pushed int // latent frames decoded so far
}

// NewStream starts a sequential decode.
func (m *Model) NewStream() *Stream { return &Stream{m: m, s: newState(m.b, true)} }

// Close releases the carried frames; the stream is unusable afterwards.
func (st *Stream) Close() { st.s.free() }

// PushTensor decodes the latent frames x [Z,n,H,W] (not freed) that follow
// those pushed before and returns their video frames [3,F,8H,8W] in [0, 1]
// on the backend: F = 4n, less FramesToTrim on the first push.
func (st *Stream) PushTensor(x backend.Tensor) (video backend.Tensor, err error) {
	defer backend.Recover(&err)
	m := st.m
	m.checkLatentTensor(x)
	trim := 0
	if st.pushed == 0 {
		trim = FramesToTrim
	}
	out := backend.Scoped(m.b, func() backend.Tensor { return m.finish(m.decodeRaw(st.s, x), trim) })
	st.pushed += x.Shape()[1]
	return out, nil
}

// Push is PushTensor for a host latent [Z,n,H,W], returning float32 frames
// [3,F,8H,8W].
func (st *Stream) Push(latent []float32, shape []int) (video []float32, vshape []int, err error) {
	m := st.m
	if err := m.checkLatent(latent, shape); err != nil {
		return nil, nil, err
	}
	defer backend.Recover(&err)
	sc := m.b.Begin() // the latent and the video frames
	defer sc.End()
	out, err := st.PushTensor(m.b.Upload(m.dt, shape, latent))
	if err != nil {
		return nil, nil, err
	}
	return m.b.Download(out), out.Shape(), nil
}

// DecodeSequential decodes a latent [Z,T,H,W] one latent frame at a time
// (a Stream) and returns the whole video [3,4T−3,8H,8W] in [0, 1]. emit,
// when not nil, gets each latent frame's video frames as they are decoded
// (first: index of their first frame; chunk [3,n,8H,8W]).
func (m *Model) DecodeSequential(latent []float32, shape []int, emit func(first int, chunk []float32, chunkShape []int) error) (video []float32, vshape []int, err error) {
	if err := m.checkLatent(latent, shape); err != nil {
		return nil, nil, err
	}
	z, T, H, W := shape[0], shape[1], shape[2], shape[3]
	F, plane := TemporalFactor*T-FramesToTrim, SpatialFactor*H*SpatialFactor*W
	video = make([]float32, ImageChannels*F*plane)
	st := m.NewStream()
	defer st.Close()
	frame := make([]float32, z*H*W)
	first := 0
	for t := 0; t < T; t++ {
		for c := 0; c < z; c++ {
			copy(frame[c*H*W:(c+1)*H*W], latent[(c*T+t)*H*W:(c*T+t+1)*H*W])
		}
		chunk, cs, err := st.Push(frame, []int{z, 1, H, W})
		if err != nil {
			return nil, nil, err
		}
		n := cs[1]
		for c := 0; c < ImageChannels; c++ {
			copy(video[(c*F+first)*plane:(c*F+first+n)*plane], chunk[c*n*plane:(c+1)*n*plane])
		}
		if emit != nil {
			if err := emit(first, chunk, cs); err != nil {
				return nil, nil, err
			}
		}
		first += n
	}
	return video, []int{ImageChannels, F, SpatialFactor * H, SpatialFactor * W}, nil
}
