package quant

import (
	"math/rand/v2"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// BenchmarkInt8Linear is one 1.3B attention projection on 1024 tokens.
func BenchmarkInt8Linear(b *testing.B) {
	const m, k, n = 1024, 1536, 1536
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, m*k)
	for i := range x {
		x[i] = tensor.RoundBF16(float32(r.NormFloat64()))
	}
	w := make([]float32, n*k)
	for i := range w {
		w[i] = tensor.RoundBF16(float32(r.NormFloat64() * 0.02))
	}
	wq, ws, _ := Quantize(w, n, k)
	b.SetBytes(int64(2 * m * n * k)) // "bytes" = int8 ops, so MB/s reads as MOPS
	b.ResetTimer()
	for range b.N {
		if _, err := Linear(x, m, k, wq, ws, n, nil, true); err != nil {
			b.Fatal(err)
		}
	}
}
