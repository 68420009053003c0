package taehv

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Frames converts a decoded video [3,F,H,W] (values in [0, 1]) to F frames
// of interleaved RGB bytes (H·W·3 each, rgb24): byte = round(clamp(x,0,1)·255).
func Frames(video []float32, shape []int) ([][]uint8, error) {
	if len(shape) != 4 || shape[0] != ImageChannels {
		return nil, fmt.Errorf("taehv: frames: want a video [3,F,H,W], got shape %v", shape)
	}
	if n := tensor.NumElements(shape); n != len(video) {
		return nil, fmt.Errorf("taehv: frames: video shape %v holds %d values, got %d", shape, n, len(video))
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
			for i := range r {
				px[3*i], px[3*i+1], px[3*i+2] = ToUint8(r[i]), ToUint8(g[i]), ToUint8(b[i])
			}
		}
	})
	return frames, nil
}

// ToUint8 maps one decoded value in [0, 1] to a byte (clamped; NaN maps to
// 0).
func ToUint8(x float32) uint8 {
	if !(x >= 0) { // also NaN
		return 0
	}
	if x >= 1 {
		return 255
	}
	return uint8(float32(x*255) + 0.5)
}
