// Package rgb24 converts decoded float video to the interleaved RGB bytes
// the encoders take, for both decoders: the tiny VAE (TAEHV, values in
// [0, 1]) and the Wan VAE (values in [−1, 1]).
package rgb24

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Range is the range of a decoder's output values.
type Range int

const (
	// Unit is [0, 1] (TAEHV): byte = round(clamp(x, 0, 1)·255).
	Unit Range = iota
	// Signed is [−1, 1] (the Wan VAE), with the reference's float32
	// arithmetic (docs/NUMERICS.md §10.4): p = clamp((1 + clamp(x,−1,1))/2,
	// 0, 1), byte = trunc(p·255 + 0.5).
	Signed
)

// FromUnit maps one value in [0, 1] to a byte (clamped; NaN maps to 0).
func FromUnit(x float32) uint8 {
	if !(x >= 0) { // also NaN
		return 0
	}
	if x >= 1 {
		return 255
	}
	return uint8(float32(x*255) + 0.5)
}

// FromSigned maps one value in [−1, 1] to a byte (clamped; NaN maps to 0).
// Every step is rounded to float32 explicitly so no fused multiply-add can
// move a value across a .5 boundary.
func FromSigned(x float32) uint8 {
	if !(x >= -1) { // also NaN
		x = -1
	} else if x > 1 {
		x = 1
	}
	p := float32(float32(1+x) / 2)
	p = min(max(p, 0), 1)
	return uint8(float32(float32(p*255) + 0.5))
}

// Frames converts a decoded video [3,F,H,W] whose values lie in rng to F
// frames of interleaved RGB bytes (H·W·3 each). It works on pixel rows of
// all frames in parallel: the pipeline converts each decoded chunk on the
// host while the GPU waits for the next one. Errors name no package; the
// callers prefix theirs.
func Frames(video []float32, shape []int, rng Range) ([][]uint8, error) {
	if rng != Unit && rng != Signed {
		return nil, fmt.Errorf("unknown value range %d", rng)
	}
	if len(shape) != 4 || shape[0] != 3 {
		return nil, fmt.Errorf("want a video [3,F,H,W], got shape %v", shape)
	}
	if n := tensor.NumElements(shape); n != len(video) {
		return nil, fmt.Errorf("video shape %v holds %d values, got %d", shape, n, len(video))
	}
	F, H, W := shape[1], shape[2], shape[3]
	plane := H * W
	frames := make([][]uint8, F)
	for f := range frames {
		frames[f] = make([]uint8, 3*plane)
	}
	parallel.For(F*H, func(lo, hi int) {
		for fr := lo; fr < hi; fr++ {
			f, y := fr/H, fr%H
			r := video[(0*F+f)*plane+y*W : (0*F+f)*plane+(y+1)*W]
			g := video[(1*F+f)*plane+y*W : (1*F+f)*plane+(y+1)*W]
			b := video[(2*F+f)*plane+y*W : (2*F+f)*plane+(y+1)*W]
			px := frames[f][3*y*W : 3*(y+1)*W]
			// One loop per range, so each conversion inlines.
			if rng == Signed {
				for i := range r {
					px[3*i], px[3*i+1], px[3*i+2] = FromSigned(r[i]), FromSigned(g[i]), FromSigned(b[i])
				}
			} else {
				for i := range r {
					px[3*i], px[3*i+1], px[3*i+2] = FromUnit(r[i]), FromUnit(g[i]), FromUnit(b[i])
				}
			}
		}
	})
	return frames, nil
}
