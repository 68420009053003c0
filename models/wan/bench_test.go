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

// BenchmarkPatchify480p is the host work Forward adds around the network on
// a 480p × 81-frame latent ([16, 21, 60, 104]): patchify before the upload
// and unpatchify after the download. ForwardDevice does both on the device.
func BenchmarkPatchify480p(b *testing.B) {
	C, T, H, W := 16, 21, 60, 104
	x := make([]float32, C*T*H*W)
	for i := range x {
		x[i] = float32(i%1000) * 1e-3
	}
	b.Run("patchify", func(b *testing.B) {
		for b.Loop() {
			_ = patchify(x, C, T, H, W)
		}
	})
	y := patchify(x, C, T, H, W)
	b.Run("unpatchify", func(b *testing.B) {
		for b.Loop() {
			_ = unpatchify(y, C, T, H, W)
		}
	})
}
