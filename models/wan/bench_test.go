package wan

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// BenchmarkTinyDiTForward is the CPU baseline: one forward of the golden
// tiny DiT (dim 256, 2 layers, 1280 tokens), text embedded once outside the
// loop as a sampler does. bf16_sla is TurboDiffusion's inference setting.
func BenchmarkTinyDiTForward(b *testing.B) {
	for _, bc := range []struct {
		name string
		opt  Options
	}{
		{"bf16_sla", Options{DType: tensor.BF16, Attention: backend.SLA, TopK: 0.25}},
		{"bf16_dense", Options{DType: tensor.BF16}},
		{"fp32_dense", Options{DType: tensor.F32}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			be := cpuDiT(b)
			m, err := Load(be, golden.Open(b, "dit_weights.safetensors"), bc.opt)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Free()
			in := loadInputs(b)
			txt, err := m.EmbedText(in.text, in.rows)
			if err != nil {
				b.Fatal(err)
			}
			defer txt.Free()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Forward(in.x, in.shape, in.t, txt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
