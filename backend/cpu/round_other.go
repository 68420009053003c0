//go:build !amd64

package cpu

import "github.com/turbodiffusion-go/turbodiffusion/tensor"

// roundBF16 rounds x to bfloat16 in place.
func roundBF16(x []float32) { tensor.RoundBF16Slice(x) }
