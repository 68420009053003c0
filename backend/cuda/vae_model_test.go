package cuda

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestRandomVAECheckpointLoads checks the benchmark's in-memory checkpoint
// is a complete Wan2.1 VAE state dict: the loader accepts it (CPU, narrow
// width) and detects its configuration.
func TestRandomVAECheckpointLoads(t *testing.T) {
	f, err := checkpoint.ParseSafetensors("random.safetensors", randomVAESafetensors(8, 16, 1))
	if err != nil {
		t.Fatal(err)
	}
	v, err := wanvae.Load(cpu.New(), f, wanvae.Options{DType: tensor.BF16})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := v.Config(); cfg.Dim != 8 || cfg.ZDim != 16 {
		t.Errorf("config %+v, want dim 8, z 16", cfg)
	}
}

// TestVAEModelMatchesCPU runs a whole (narrow, random) Wan2.1 VAE decode and
// encode on the GPU and on the CPU: every VAE op in the model's own
// sequence, with chunk caches, resampling and attention. Tolerances are
// looser than one op's: a rare bf16 rounding that lands the other way
// (float32 sums in another order) propagates through ~40 layers; the CPU's
// bf16 decode of the conformance model is 1.7e-2 from PyTorch's for the
// same reason.
func TestVAEModelMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	f, err := checkpoint.ParseSafetensors("random.safetensors", randomVAESafetensors(16, 16, 7))
	if err != nil {
		t.Fatal(err)
	}
	r := rng(t)
	lshape := []int{16, 3, 4, 6}
	latent := make([]float32, tensor.NumElements(lshape))
	for i := range latent {
		latent[i] = float32(r.NormFloat64())
	}
	vshape := []int{3, 5, 16, 24}
	video := randVals(r, tensor.NumElements(vshape), 1)
	for _, dt := range vaeDTypes {
		t.Run(dt.String(), func(t *testing.T) {
			tol := 5e-2
			if dt == tensor.F32 {
				tol = 1e-4
			}
			vg, err := wanvae.Load(g, f, wanvae.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			vc, err := wanvae.Load(c, f, wanvae.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			dg, _, err := vg.Decode(latent, lshape)
			if err != nil {
				t.Fatal(err)
			}
			dc, _, err := vc.Decode(latent, lshape)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, "decode", dg, dc, tol)
			eg, _, err := vg.Encode(video, vshape)
			if err != nil {
				t.Fatal(err)
			}
			ec, _, err := vc.Encode(video, vshape)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, "encode", eg, ec, tol)
		})
	}
}

// TestVAETiledDecodeGPU: the spatially tiled decode (wanvae.SetTiling) on
// the GPU — crops along H and W, per-tile caches, the blend on the host —
// matches the GPU's untiled decode (the CPU test of the same, on the
// conformance model, explains the bounds: summation order only).
func TestVAETiledDecodeGPU(t *testing.T) {
	g, _ := vaeBackends(t)
	f, err := checkpoint.ParseSafetensors("random.safetensors", randomVAESafetensors(16, 16, 7))
	if err != nil {
		t.Fatal(err)
	}
	r := rng(t)
	lshape := []int{16, 2, 34, 36}
	latent := make([]float32, tensor.NumElements(lshape))
	for i := range latent {
		latent[i] = float32(r.NormFloat64())
	}
	for _, dt := range vaeDTypes {
		t.Run(dt.String(), func(t *testing.T) {
			tol := 5e-2
			if dt == tensor.F32 {
				tol = 1e-4
			}
			v, err := wanvae.Load(g, f, wanvae.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Free()
			want, _, err := v.Decode(latent, lshape)
			if err != nil {
				t.Fatal(err)
			}
			v.SetTiling(8)
			got, _, err := v.Decode(latent, lshape)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, "tiled decode", got, want, tol)
		})
	}
}
