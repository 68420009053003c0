package cpu

import "github.com/turbodiffusion-go/turbodiffusion/tensor"

//go:noescape
func roundBF16AVX2(x *float32, n int)

// roundBF16 rounds x to bfloat16 in place (tensor.RoundBF16 on every
// element, eight at a time with AVX2).
func roundBF16(x []float32) {
	n8 := len(x) &^ 7
	if useKernel && n8 > 0 {
		roundBF16AVX2(&x[0], n8)
		x = x[n8:]
	}
	tensor.RoundBF16Slice(x)
}
