package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Decode turns a normalised latent [16,T,H,W] (row-major float32) into a
// video [3, 1+4(T−1), 8H, 8W] in about [-1,1], not clamped. Latent frames
// are decoded one per chunk, as the reference does, so peak memory is that
// of four output frames whatever T is.
func (v *VAE) Decode(latent []float32, shape []int) (video []float32, vshape []int, err error) {
	defer backend.Recover(&err)
	if len(shape) != 4 || shape[0] != v.cfg.ZDim || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return nil, nil, fmt.Errorf("wanvae: decode: want a latent [%d,T,H,W], got shape %v", v.cfg.ZDim, shape)
	}
	if n := tensor.NumElements(shape); n != len(latent) {
		return nil, nil, fmt.Errorf("wanvae: decode: latent shape %v holds %d values, got %d", shape, n, len(latent))
	}
	z, T, H, W := shape[0], shape[1], shape[2], shape[3]
	F := 1 + TemporalFactor*(T-1)
	OH, OW := SpatialFactor*H, SpatialFactor*W
	vshape = []int{3, F, OH, OW}
	video = make([]float32, 3*F*OH*OW)

	x := v.denormalize(latent, z, T*H*W)
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
		in := b.Upload(v.dt, []int{z, 1, H, W}, chunk)
		out := v.decodeChunk(s, in)
		sh := out.Shape()
		n := sh[1]
		if !backend.SameShape(sh, []int{3, n, OH, OW}) || frame+n > F {
			backend.Fail("wanvae: decode: chunk %d gave shape %v, want [3,%d,%d,%d] within %d frames", t, sh, n, OH, OW, F)
		}
		data := b.Download(out)
		b.Free(out)
		for c := 0; c < 3; c++ {
			copy(video[(c*F+frame)*OH*OW:(c*F+frame+n)*OH*OW], data[c*n*OH*OW:(c+1)*n*OH*OW])
		}
		frame += n
	}
	if frame != F {
		return nil, nil, fmt.Errorf("wanvae: decode: produced %d frames, want %d", frame, F)
	}
	return video, vshape, nil
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

// decodeChunk runs conv2 and the decoder on one latent frame [z,1,H,W]
// (freeing it) and returns 1 (first chunk) or 4 video frames.
func (v *VAE) decodeChunk(s *state, x backend.Tensor) backend.Tensor {
	b := v.b
	y := pointwise(b, v.postQuant, x)
	b.Free(x)
	x = s.causal(v.decConv1, y, 1)
	b.Free(y)
	for _, l := range v.decMid {
		y = s.forward(l, x)
		b.Free(x)
		x = y
	}
	for _, l := range v.decUp {
		y = s.forward(l, x)
		b.Free(x)
		x = y
	}
	y = b.ChannelRMSNorm(x, v.decHeadG, true)
	b.Free(x)
	x = s.causal(v.decHead, y, 1)
	b.Free(y)
	out := b.Cast(x, tensor.F32)
	b.Free(x)
	return out
}
