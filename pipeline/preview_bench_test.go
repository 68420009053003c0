package pipeline

import (
	"math/rand/v2"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
)

// BenchmarkPreview480p is the host time one preview adds to a 480p × 81
// frame step ([16,21,60,104] latent): x0 on 4 latent frames and the linear
// colour map.
func BenchmarkPreview480p(b *testing.B) {
	shape := []int{16, 21, 60, 104}
	n := 16 * 21 * 60 * 104
	r := rand.New(rand.NewPCG(1, 2))
	x, v := make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], v[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	m := &wanvae.RGBMap{}
	for k := 0; k < 3; k++ {
		m.W[k] = make([]float32, 16)
		for c := range m.W[k] {
			m.W[k][c] = float32(r.NormFloat64() * 0.1)
		}
	}
	p := &previewer{dec: linearPreview{m}, send: func(Preview) {}, steps: 4, shape: shape}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.after(0, sampler.Step{Index: 1, Time: 0.5}, x, v); err != nil {
			b.Fatal(err)
		}
	}
}
