package wanvae

import (
	"slices"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// fusedCPU is the CPU backend with the optional fused VAE ops written as
// their definitions (backend.Conv3dNormHistory, backend.Conv3dUpsample), so
// the model's fused path (raw-frame histories, tails from the backend, the
// residual passed into the conv) runs without a GPU.
type fusedCPU struct {
	*cpu.Backend
	calls *int // fused convolutions run
}

func (f fusedCPU) NormConvFused(x, w backend.Tensor) bool { return true }

func (f fusedCPU) Conv3dNormWithHistory(hist, x, gamma, w, bias, res backend.Tensor, p backend.Conv3dParams, keep int) (out, tail backend.Tensor) {
	*f.calls++
	in := x
	if hist != nil {
		in = f.Concat(1, hist, x)
	}
	y := f.ChannelRMSNorm(in, gamma, true)
	out = f.Conv3d(y, w, bias, p)
	if res != nil {
		out = f.Add(out, res)
	}
	if keep > 0 {
		n := in.Shape()[1]
		tail = f.Slice(in, 1, n-min(keep, n), n)
	}
	return out, tail
}

func (f fusedCPU) Conv3dUpsample2x(x, w, bias backend.Tensor, p backend.Conv3dParams) backend.Tensor {
	*f.calls++
	return f.Conv3d(f.UpsampleNearest2x(x), w, bias, p)
}

// TestFusedPathMatches decodes and encodes the conformance VAE through the
// fused ops and checks the result equals the unfused decode bit for bit:
// the norm is per position, so normalising raw cached frames again gives
// the cached normalised frames exactly.
func TestFusedPathMatches(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		plain, err := Load(cpu.New(), f, Options{DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		fused, err := Load(fusedCPU{cpu.New(), &calls}, f, Options{DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		lat, ls := golden.Tensor(t, f, "decode.latent")
		want, ws, err := plain.Decode(lat, ls[1:])
		if err != nil {
			t.Fatal(err)
		}
		got, gs, err := fused.Decode(lat, ls[1:])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gs, ws) || !slices.Equal(got, want) {
			golden.Compare(t, dt.String()+" fused decode", got, want, 0)
			t.Errorf("%v: fused decode %v differs from the unfused one %v", dt, gs, ws)
		}
		if calls == 0 {
			t.Fatalf("%v: the decode ran no fused op", dt)
		}
		vid, vs := golden.Tensor(t, f, "encode.video")
		calls = 0
		want, ws, err = plain.Encode(vid, vs[1:])
		if err != nil {
			t.Fatal(err)
		}
		got, gs, err = fused.Encode(vid, vs[1:])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gs, ws) || !slices.Equal(got, want) {
			golden.Compare(t, dt.String()+" fused encode", got, want, 0)
			t.Errorf("%v: fused encode %v differs from the unfused one %v", dt, gs, ws)
		}
		if calls == 0 {
			t.Errorf("%v: the encode ran no fused op", dt)
		}
	}
}
