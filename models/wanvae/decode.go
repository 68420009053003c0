package wanvae

import (
	"fmt"
	"os"
	"sync/atomic"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Decode turns a normalised latent [16,T,H,W] (row-major float32) into a
// video [3, 1+4(T−1), 8H, 8W] in about [-1,1], not clamped. Latent frames
// are decoded one per chunk, as the reference does, so device memory is
// bounded by four output frames whatever T is.
func (v *VAE) Decode(latent []float32, shape []int) (video []float32, vshape []int, err error) {
	var F, plane int
	err = v.DecodeChunks(latent, shape, func(first int, chunk []float32, cs []int) error {
		if video == nil {
			T := shape[1]
			F, plane = 1+TemporalFactor*(T-1), cs[2]*cs[3]
			vshape = []int{3, F, cs[2], cs[3]}
			video = make([]float32, 3*F*plane)
		}
		n := cs[1]
		for c := 0; c < 3; c++ {
			copy(video[(c*F+first)*plane:(c*F+first+n)*plane], chunk[c*n*plane:(c+1)*n*plane])
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return video, vshape, nil
}

// DecodeChunks is Decode delivering the video as it is produced: emit gets,
// for each latent frame in order, the index of its first video frame and
// its frames [3,n,8H,8W] (n = 1 for the first latent frame, 4 after), so a
// caller can report progress or encode the video without holding it all.
// An error from emit stops decoding and is returned. With SetTiling and a
// latent larger than a tile, the decode runs in spatial tiles (tile.go) and
// every chunk is handed over once the last tile is done. On a backend with
// AsyncDownloader (and SetOverlap on) the device already computes the next
// chunk while emit runs.
func (v *VAE) DecodeChunks(latent []float32, shape []int, emit func(first int, chunk []float32, chunkShape []int) error) (err error) {
	defer backend.Recover(&err)
	x, T, H, W, err := v.prepare(latent, shape)
	if err != nil {
		return err
	}
	ad := v.overlapped()
	if v.tile > 0 && (H > v.tile || W > v.tile) {
		return v.decodeTiled(x, v.cfg.ZDim, T, H, W, emit)
	}
	if ad != nil {
		return v.decodeQueued(x, T, H, W, ad.DownloadAsync, func(first int, p backend.Pending, cs []int) error {
			return emit(first, p.Floats(), cs)
		})
	}
	return v.decodeSync(x, T, H, W, emit)
}

// DecodeFrames is DecodeChunks delivering each chunk as frames of
// interleaved RGB bytes (rgb24, as Frames converts them; w×h each). On a
// backend with AsyncDownloader the conversion runs on the device and only
// the bytes are copied, while the next chunk computes; elsewhere the host
// converts each chunk.
func (v *VAE) DecodeFrames(latent []float32, shape []int, emit func(first int, frames [][]uint8, w, h int) error) (err error) {
	defer backend.Recover(&err)
	x, T, H, W, err := v.prepare(latent, shape)
	if err != nil {
		return err
	}
	host := func(first int, chunk []float32, cs []int) error {
		f, err := Frames(chunk, cs)
		if err != nil {
			return err
		}
		return emit(first, f, cs[3], cs[2])
	}
	ad := v.overlapped()
	if v.tile > 0 && (H > v.tile || W > v.tile) {
		return v.decodeTiled(x, v.cfg.ZDim, T, H, W, host)
	}
	if ad != nil {
		frames := func(out backend.Tensor) backend.Pending { return ad.DownloadFramesAsync(out, rgb24.Signed) }
		return v.decodeQueued(x, T, H, W, frames, func(first int, p backend.Pending, cs []int) error {
			return emit(first, p.Frames(), cs[3], cs[2])
		})
	}
	return v.decodeSync(x, T, H, W, host)
}

// prepare checks a latent's shape and returns it denormalised with its
// frames and size.
func (v *VAE) prepare(latent []float32, shape []int) (x []float32, T, H, W int, err error) {
	if len(shape) != 4 || shape[0] != v.cfg.ZDim || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return nil, 0, 0, 0, fmt.Errorf("wanvae: decode: want a latent [%d,T,H,W], got shape %v", v.cfg.ZDim, shape)
	}
	if n := tensor.NumElements(shape); n != len(latent) {
		return nil, 0, 0, 0, fmt.Errorf("wanvae: decode: latent shape %v holds %d values, got %d", shape, n, len(latent))
	}
	T, H, W = shape[1], shape[2], shape[3]
	return v.denormalize(latent, shape[0], T*H*W), T, H, W, nil
}

// OverlapEnv set to "0" selects the sequential decode (a host sync per
// chunk, weights repacked by every conv call, frames converted on the
// host), the reference the overlapped one is tested against bit for bit.
const OverlapEnv = "TURBODIFFUSION_VAE_OVERLAP"

var overlap atomic.Bool

func init() { overlap.Store(os.Getenv(OverlapEnv) != "0") }

// SetOverlap chooses the overlapped decode (true, the default unless
// OverlapEnv is "0") or the sequential one for every VAE, and returns the
// previous choice; for tests and benchmarks that compare the two.
func SetOverlap(on bool) (was bool) { return overlap.Swap(on) }

// overlapped returns the backend's AsyncDownloader when the overlapped
// decode runs, else nil. Unless SetOverlap(false), it also lets the backend
// cache the decoder's repacked weights (tiled decodes too).
func (v *VAE) overlapped() backend.AsyncDownloader {
	if !overlap.Load() {
		return nil
	}
	if c, ok := v.b.(backend.Constants); ok {
		c.MarkConstant(v.decoderWeights()...)
	}
	ad, _ := v.b.(backend.AsyncDownloader)
	return ad
}

// decoderWeights lists the decoder's convolution weights.
func (v *VAE) decoderWeights() []backend.Tensor {
	var ts []backend.Tensor
	add := func(cs ...*conv) {
		for _, c := range cs {
			if c != nil && c.w != nil {
				ts = append(ts, c.w)
			}
		}
	}
	add(v.postQuant, v.decConv1, v.decHead)
	for _, ls := range [][]layer{v.decMid, v.decUp} {
		for _, l := range ls {
			switch l := l.(type) {
			case *resBlock:
				add(l.c1, l.c2, l.shortcut)
			case *attnBlock:
				add(l.qkv, l.proj)
			case *resample:
				add(l.conv, l.time)
			}
		}
	}
	return ts
}

// latentFrame returns latent frame t of x [z,T,H,W] as [z,1,H,W] values.
func latentFrame(x []float32, z, t, T, plane int) []float32 {
	chunk := make([]float32, z*plane)
	for c := 0; c < z; c++ {
		copy(chunk[c*plane:(c+1)*plane], x[(c*T+t)*plane:(c*T+t+1)*plane])
	}
	return chunk
}

// chunkFrames is the number of video frames latent frame t decodes to.
func chunkFrames(t int) int {
	if t == 0 {
		return 1
	}
	return TemporalFactor
}

// decodeSync is the untiled decode one chunk after another: each chunk's
// video is downloaded (a host sync) and emitted before the next is queued.
func (v *VAE) decodeSync(x []float32, T, H, W int, emit func(first int, chunk []float32, chunkShape []int) error) error {
	b, z := v.b, v.cfg.ZDim
	OH, OW := SpatialFactor*H, SpatialFactor*W
	s := newState(b)
	defer s.free()
	frame := 0
	for t := 0; t < T; t++ {
		want := chunkFrames(t)
		data, sh := v.decodeChunk(s, latentFrame(x, z, t, T, H*W), []int{z, 1, H, W})
		if !backend.SameShape(sh, []int{3, want, OH, OW}) {
			backend.Fail("wanvae: decode: chunk %d gave shape %v, want [3,%d,%d,%d]", t, sh, want, OH, OW)
		}
		if err := emit(frame, data, sh); err != nil {
			return err
		}
		frame += want
	}
	return nil
}

// decodeQueued is the untiled decode with the host's work overlapped:
// chunk t's kernels and the download of its output (download takes the
// output over) are queued before chunk t−1's result is waited for and
// handed to deliver, so the device computes chunk t while the host copies,
// converts and emits chunk t−1, and never waits for it.
func (v *VAE) decodeQueued(x []float32, T, H, W int, download func(backend.Tensor) backend.Pending,
	deliver func(first int, p backend.Pending, chunkShape []int) error) error {
	b, z := v.b, v.cfg.ZDim
	OH, OW := SpatialFactor*H, SpatialFactor*W
	s := newState(b)
	defer s.free()
	type inflight struct {
		first int
		p     backend.Pending
		shape []int
	}
	var queue []inflight // queued, not yet delivered: at most two
	defer func() {
		for _, q := range queue {
			q.p.Discard() // an error stopped the decode
		}
	}()
	frame := 0
	for t := 0; t <= T; t++ {
		if t < T {
			want := chunkFrames(t)
			out := v.decodeChunkTensor(s, latentFrame(x, z, t, T, H*W), []int{z, 1, H, W})
			if sh := out.Shape(); !backend.SameShape(sh, []int{3, want, OH, OW}) {
				b.Free(out)
				backend.Fail("wanvae: decode: chunk %d gave shape %v, want [3,%d,%d,%d]", t, sh, want, OH, OW)
			}
			queue = append(queue, inflight{frame, download(out), []int{3, want, OH, OW}})
			frame += want
		}
		if len(queue) == 2 || (t == T && len(queue) == 1) {
			q := queue[0]
			queue = queue[1:]
			if err := deliver(q.first, q.p, q.shape); err != nil {
				return err
			}
		}
	}
	return nil
}

// denormalize computes z / (1/std) + mean per channel, as the reference
// writes it, in the compute dtype (the bf16 path rounds the input, mean,
// 1/std and each result to bf16). n is the number of values per channel.
func (v *VAE) denormalize(latent []float32, z, n int) []float32 {
	r := v.rounder()
	x := make([]float32, len(latent))
	for c := 0; c < z; c++ {
		mean := r(LatentMean[c])
		inv := r(1 / r(LatentStd[c]))
		for i, val := range latent[c*n : (c+1)*n] {
			x[c*n+i] = r(r(r(val)/inv) + mean)
		}
	}
	return x
}

// rounder returns rounding to the compute dtype.
func (v *VAE) rounder() func(float32) float32 {
	if v.dt == tensor.BF16 {
		return tensor.RoundBF16
	}
	return func(f float32) float32 { return f }
}

// decodeChunk uploads one latent frame [z,1,H,W] and runs conv2 and the
// decoder on it in a scope that frees everything but the history, and returns 1
// (first chunk) or 4 video frames [3,n,8H,8W] and their shape.
func (v *VAE) decodeChunk(s *state, chunk []float32, shape []int) ([]float32, []int) {
	b := v.b
	sc := b.Begin()
	defer sc.End()
	out := b.Cast(v.decodeChunkTensor(s, chunk, shape), tensor.F32)
	return b.Download(out), out.Shape()
}

// decodeChunkTensor is decodeChunk leaving the video [3,n,8H,8W] on the
// device, in the compute dtype, owned by the caller's scope (or, with none
// open, by the caller, who frees it).
func (v *VAE) decodeChunkTensor(s *state, chunk []float32, shape []int) backend.Tensor {
	b := v.b
	sc := b.Begin()
	defer sc.End()
	x := b.Upload(v.dt, shape, chunk)
	x = s.causal(v.decConv1, pointwise(b, v.postQuant, x), 1)
	x = s.forwardAll(v.decMid, x)
	x = s.forwardAll(v.decUp, x)
	out := s.head(v.decHeadG, v.decHead, x)
	sc.Keep(out)
	return out
}
