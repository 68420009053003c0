package wanvae

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// BenchmarkDecodeGolden decodes the conformance latent [16,3,8,8] into
// [3,9,64,64] with the tiny dim-12 model on the CPU backend.
func BenchmarkDecodeGolden(b *testing.B) {
	for _, c := range []struct {
		name string
		dt   tensor.DType
	}{{"fp32", tensor.F32}, {"bf16", tensor.BF16}} {
		b.Run(c.name, func(b *testing.B) {
			v, get := loadGolden(b, c.dt)
			latent, shape := get("decode.latent")
			b.ResetTimer()
			for range b.N {
				if _, _, err := v.Decode(latent, shape); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
