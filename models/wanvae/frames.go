package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Frames converts a decoded video [3,F,H,W] to F frames of interleaved RGB
// bytes (H·W·3 each, rgb24 as the encoder takes it), with the reference's
// float32 arithmetic (docs/NUMERICS.md §10.4): p = clamp((1 + clamp(x,−1,1))/2, 0,
// 1), byte = trunc(p·255 + 0.5). Every step is rounded to float32 explicitly
// so no fused multiply-add can move a value across a .5 boundary.
func Frames(video []float32, shape []int) ([][]uint8, error) {
	if len(shape) != 4 || shape[0] != 3 {
		return nil, fmt.Errorf("wanvae: frames: want a video [3,F,H,W], got shape %v", shape)
	}
	if n := tensor.NumElements(shape); n != len(video) {
		return nil, fmt.Errorf("wanvae: frames: video shape %v holds %d values, got %d", shape, n, len(video))
	}
	F, H, W := shape[1], shape[2], shape[3]
	plane := H * W
	frames := make([][]uint8, F)
	for f := range frames {
		frames[f] = make([]uint8, 3*plane)
	}
	// Parallel over pixel rows of all frames, one pixel's three channels at a
	// time: the pipeline converts each decoded chunk on the host while the
	// GPU waits for the next one.
	parallel.For(F*H, func(lo, hi int) {
		for fr := lo; fr < hi; fr++ {
			f, y := fr/H, fr%H
			r := video[(0*F+f)*plane+y*W : (0*F+f)*plane+(y+1)*W]
			g := video[(1*F+f)*plane+y*W : (1*F+f)*plane+(y+1)*W]
			b := video[(2*F+f)*plane+y*W : (2*F+f)*plane+(y+1)*W]
			px := frames[f][3*y*W : 3*(y+1)*W]
			for i := range r {
				px[3*i], px[3*i+1], px[3*i+2] = ToUint8(r[i]), ToUint8(g[i]), ToUint8(b[i])
			}
		}
	})
	return frames, nil
}

// ToUint8 maps one decoded value to a byte as Frames does. NaN maps to 0.
func ToUint8(x float32) uint8 {
	if !(x >= -1) { // also NaN
		x = -1
	} else if x > 1 {
		x = 1
	}
	p := float32(float32(1+x) / 2)
	p = min(max(p, 0), 1)
	return uint8(float32(float32(p*255) + 0.5))
}
