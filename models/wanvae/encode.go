package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Encode turns a video [3, 1+4k, H, W] (float32 in [-1,1], H and W multiples
// of 8) into the normalised latent mean (μ − mean)/std, [16, 1+k, H/8, W/8].
// Frames are encoded in chunks of 1, 4, 4, ... as the reference does; the
// reference fails on other frame counts, so they are an error here.
func (v *VAE) Encode(video []float32, shape []int) (latent []float32, lshape []int, err error) {
	defer backend.Recover(&err)
	if len(shape) != 4 || shape[0] != 3 || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return nil, nil, fmt.Errorf("wanvae: encode: want a video [3,F,H,W], got shape %v", shape)
	}
	if n := tensor.NumElements(shape); n != len(video) {
		return nil, nil, fmt.Errorf("wanvae: encode: video shape %v holds %d values, got %d", shape, n, len(video))
	}
	F, H, W := shape[1], shape[2], shape[3]
	if (F-1)%TemporalFactor != 0 {
		return nil, nil, fmt.Errorf("wanvae: encode: %d frames; the Wan2.1 VAE encodes 1+4k frames", F)
	}
	if H%SpatialFactor != 0 || W%SpatialFactor != 0 {
		return nil, nil, fmt.Errorf("wanvae: encode: frame size %dx%d (HxW) is not a multiple of %d", H, W, SpatialFactor)
	}
	z := v.cfg.ZDim
	T, LH, LW := 1+(F-1)/TemporalFactor, H/SpatialFactor, W/SpatialFactor
	lshape = []int{z, T, LH, LW}
	mu := make([]float32, z*T*LH*LW)

	b := v.b
	s := newState(b)
	defer s.free()
	plane := H * W
	t := 0
	for f0 := 0; f0 < F; {
		n := TemporalFactor
		if f0 == 0 {
			n = 1
		}
		chunk := make([]float32, 3*n*plane)
		for c := 0; c < 3; c++ {
			copy(chunk[c*n*plane:(c+1)*n*plane], video[(c*F+f0)*plane:(c*F+f0+n)*plane])
		}
		data, sh := v.encodeChunk(s, chunk, []int{3, n, H, W})
		if !backend.SameShape(sh, []int{2 * z, 1, LH, LW}) {
			backend.Fail("wanvae: encode: chunk at frame %d gave shape %v, want [%d,1,%d,%d]", f0, sh, 2*z, LH, LW)
		}
		for c := 0; c < z; c++ { // μ is the first z channels
			copy(mu[(c*T+t)*LH*LW:(c*T+t+1)*LH*LW], data[c*LH*LW:(c+1)*LH*LW])
		}
		f0 += n
		t++
	}
	v.normalize(mu, z, T*LH*LW)
	return mu, lshape, nil
}

// normalize computes (μ − mean) · (1/std) per channel in place, in the
// compute dtype.
func (v *VAE) normalize(mu []float32, z, n int) {
	r := v.rounder()
	for c := 0; c < z; c++ {
		mean := r(LatentMean[c])
		inv := r(1 / r(LatentStd[c]))
		x := mu[c*n : (c+1)*n]
		for i, val := range x {
			x[i] = r(r(val-mean) * inv)
		}
	}
}

// encodeChunk uploads one chunk [3,n,H,W] and runs the encoder and conv1
// on it in a scope that frees everything but the history, and returns
// [2z,1,H/8,W/8] and its shape.
func (v *VAE) encodeChunk(s *state, chunk []float32, shape []int) ([]float32, []int) {
	b := v.b
	sc := b.Begin()
	defer sc.End()
	x := b.Upload(v.dt, shape, chunk)
	x = s.forwardAll(v.encDown, s.causal(v.encConv1, x, 1))
	x = s.forwardAll(v.encMid, x)
	out := b.Cast(pointwise(b, v.quant, s.head(v.encHeadG, v.encHead, x)), tensor.F32)
	return b.Download(out), out.Shape()
}
