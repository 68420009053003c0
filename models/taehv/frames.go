package taehv

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
)

// Frames converts a decoded video [3,F,H,W] (values in [0, 1]) to F frames
// of interleaved RGB bytes (H·W·3 each, rgb24): byte = round(clamp(x,0,1)·255)
// (rgb24.Unit).
func Frames(video []float32, shape []int) ([][]uint8, error) {
	frames, err := rgb24.Frames(video, shape, rgb24.Unit)
	if err != nil {
		return nil, fmt.Errorf("taehv: frames: %w", err)
	}
	return frames, nil
}

// ToUint8 maps one decoded value in [0, 1] to a byte (clamped; NaN maps to
// 0).
func ToUint8(x float32) uint8 { return rgb24.FromUnit(x) }
