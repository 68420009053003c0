package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
)

// Frames converts a decoded video [3,F,H,W] to F frames of interleaved RGB
// bytes (H·W·3 each, rgb24 as the encoder takes it), with the reference's
// float32 arithmetic (docs/NUMERICS.md §10.4; rgb24.Signed): p =
// clamp((1 + clamp(x,−1,1))/2, 0, 1), byte = trunc(p·255 + 0.5).
func Frames(video []float32, shape []int) ([][]uint8, error) {
	frames, err := rgb24.Frames(video, shape, rgb24.Signed)
	if err != nil {
		return nil, fmt.Errorf("wanvae: frames: %w", err)
	}
	return frames, nil
}

// ToUint8 maps one decoded value to a byte as Frames does. NaN maps to 0.
func ToUint8(x float32) uint8 { return rgb24.FromSigned(x) }
