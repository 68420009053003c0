package cuda

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The conformance set on the GPU: every model against the reference's own
// outputs, with the set's recommended tolerances (float32 1e-4; bf16 DiT
// and umT5 2e-2; bf16 VAE 5e-2 — the distance between the reference's own
// bf16 and fp32 outputs is 4.6e-3 to 1.8e-2).

func TestGoldenDiTOnGPU(t *testing.T) {
	g := gpu(t)
	man := golden.LoadManifest(t)
	in := golden.Open(t, "dit_inputs.safetensors")
	x, xs := golden.Tensor(t, in, "x")
	ts, _ := golden.Tensor(t, in, "timestep")
	txt, txs := golden.Tensor(t, in, "text_valid")
	sla := func(o wan.Options) wan.Options {
		o.Attention = backend.SLA
		o.TopK = man.Number(t, "configs", "dit", "sla_topk")
		o.BlockQ = int(man.Number(t, "configs", "dit", "sla_BLKQ"))
		o.BlockK = int(man.Number(t, "configs", "dit", "sla_BLKK"))
		return o
	}
	runs := []struct {
		variant, file, weights string
		opt                    wan.Options
		tol                    float64
	}{
		{"fp32_original", "dit_fp32.safetensors", "dit_weights.pth", wan.Options{DType: tensor.F32, Norm: backend.NormDefault}, 1e-4},
		{"bf16_original", "dit_bf16.safetensors", "dit_weights.pth", wan.Options{DType: tensor.BF16, Norm: backend.NormDefault}, 2e-2},
		// Every reference rounding kept (no GELU epilogue fusion): the error
		// here against the fused run above shows what the fusion costs.
		{"bf16_original", "dit_bf16.safetensors", "dit_weights.pth", wan.Options{DType: tensor.BF16, Norm: backend.NormDefault, ExactRounding: true}, 2e-2},
		{"bf16_original_fastnorm", "dit_bf16.safetensors", "dit_weights.pth", wan.Options{DType: tensor.BF16, Norm: backend.NormFast}, 2e-2},
		{"bf16_sla_fastnorm", "dit_bf16.safetensors", "dit_weights.pth", sla(wan.Options{DType: tensor.BF16, Norm: backend.NormFast}), 2e-2},
		{"bf16_sla_fastnorm_int8", "dit_int8.safetensors", "dit_int8.pth", sla(wan.Options{DType: tensor.BF16, Norm: backend.NormFast, Linear: wan.LinearInt8}), 2e-2},
	}
	for _, run := range runs {
		name := run.variant
		if run.opt.ExactRounding {
			name += "_exact_rounding"
		}
		t.Run(name, func(t *testing.T) {
			m, err := wan.Load(g, golden.Open(t, run.weights), run.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			text, err := m.EmbedText(txt, txs[1])
			if err != nil {
				t.Fatal(err)
			}
			defer text.Free()
			out, err := m.Forward(x, xs[1:], ts[0], text)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := golden.Tensor(t, golden.Open(t, run.file), run.variant+".output")
			golden.Compare(t, run.variant+".output (GPU)", out, want, run.tol)
		})
	}
}

func TestGoldenVAEOnGPU(t *testing.T) {
	g := gpu(t)
	ref := golden.Open(t, "vae.safetensors")
	for _, c := range []struct {
		dt  tensor.DType
		sfx string
		tol float64
	}{{tensor.F32, "fp32", 1e-4}, {tensor.BF16, "bf16", 5e-2}} {
		t.Run(c.sfx, func(t *testing.T) {
			v, err := wanvae.Load(g, ref, wanvae.Options{DType: c.dt})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Free()
			lat, ls := golden.Tensor(t, ref, "decode.latent")
			out, _, err := v.Decode(lat, ls[1:])
			if err != nil {
				t.Fatal(err)
			}
			want, _ := golden.Tensor(t, ref, "decode.video_"+c.sfx)
			golden.Compare(t, "VAE decode "+c.sfx+" (GPU)", out, want, c.tol)
			vid, vs := golden.Tensor(t, ref, "encode.video")
			z, _, err := v.Encode(vid, vs[1:])
			if err != nil {
				t.Fatal(err)
			}
			want, _ = golden.Tensor(t, ref, "encode.latent_"+c.sfx)
			golden.Compare(t, "VAE encode "+c.sfx+" (GPU)", z, want, c.tol)
		})
	}
}

func TestGoldenUMT5OnGPU(t *testing.T) {
	g := gpu(t)
	ref := golden.Open(t, "umt5.safetensors")
	ids, _ := golden.Tensor(t, ref, "ids")
	mask, _ := golden.Tensor(t, ref, "mask")
	id32 := make([]int32, len(ids))
	length := 0
	for i := range ids {
		id32[i] = int32(ids[i])
		if mask[i] != 0 {
			length++
		}
	}
	for _, c := range []struct {
		dt  tensor.DType
		sfx string
		tol float64
	}{{tensor.F32, "fp32", 1e-4}, {tensor.BF16, "bf16", 2e-2}} {
		t.Run(c.sfx, func(t *testing.T) {
			enc, err := umt5.Load(g, ref, umt5.Options{DType: c.dt})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			out, err := enc.Encode(id32, length)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := golden.Tensor(t, ref, "embedding_"+c.sfx)
			golden.Compare(t, "umT5 embedding "+c.sfx+" (GPU)", out, want, c.tol)
		})
	}
}
