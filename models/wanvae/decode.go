package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
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
// every chunk is handed over once the last tile is done.
func (v *VAE) DecodeChunks(latent []float32, shape []int, emit func(first int, chunk []float32, chunkShape []int) error) (err error) {
	defer backend.Recover(&err)
	if len(shape) != 4 || shape[0] != v.cfg.ZDim || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return fmt.Errorf("wanvae: decode: want a latent [%d,T,H,W], got shape %v", v.cfg.ZDim, shape)
	}
	if n := tensor.NumElements(shape); n != len(latent) {
		return fmt.Errorf("wanvae: decode: latent shape %v holds %d values, got %d", shape, n, len(latent))
	}
	z, T, H, W := shape[0], shape[1], shape[2], shape[3]
	OH, OW := SpatialFactor*H, SpatialFactor*W

	x := v.denormalize(latent, z, T*H*W)
	if v.tile > 0 && (H > v.tile || W > v.tile) {
		return v.decodeTiled(x, z, T, H, W, emit)
	}
	b := v.b
	s := newState(b)
	defer s.free()
	frame := 0
	for t := 0; t < T; t++ {
		// Chunk t: latent frame t, channels-first [z,1,H,W].
		chunk := make([]float32, z*H*W)
		for c := 0; c < z; c++ {
			copy(chunk[c*H*W:(c+1)*H*W], x[(c*T+t)*H*W:(c*T+t+1)*H*W])
		}
		want := TemporalFactor
		if t == 0 {
			want = 1
		}
		data, sh := v.decodeChunk(s, chunk, []int{z, 1, H, W})
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
	x := b.Upload(v.dt, shape, chunk)
	x = s.causal(v.decConv1, pointwise(b, v.postQuant, x), 1)
	x = s.forwardAll(v.decMid, x)
	x = s.forwardAll(v.decUp, x)
	out := b.Cast(s.head(v.decHeadG, v.decHead, x), tensor.F32)
	return b.Download(out), out.Shape()
}
