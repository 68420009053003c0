package wanvae

import (
	"errors"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The VAE is causal in time: decoding the first k latent frames must give
// exactly the first 1+4(k−1) video frames of the full decode, and encoding
// the first 1+4k frames the first 1+k latents of the full encode. This
// checks the chunk caches on lengths the conformance set does not cover,
// and on a non-square frame.
func TestCausalPrefixes(t *testing.T) {
	v, get := loadGolden(t, tensor.F32)
	latent, ls := get("decode.latent") // [z,T,H,W]
	// A crop two columns narrower, so H and W differ.
	z, T, H, W := ls[0], ls[1], ls[2], ls[3]
	if W > 2 {
		W -= 2
	}
	crop := make([]float32, z*T*H*W)
	for i := 0; i < z*T*H; i++ {
		copy(crop[i*W:(i+1)*W], latent[i*ls[3]:i*ls[3]+W])
	}
	full, fs, err := v.Decode(crop, []int{z, T, H, W})
	if err != nil {
		t.Fatal(err)
	}
	for k := 1; k < T; k++ {
		sub := make([]float32, z*k*H*W)
		for c := 0; c < z; c++ {
			copy(sub[c*k*H*W:(c+1)*k*H*W], crop[c*T*H*W:(c*T+k)*H*W])
		}
		part, ps, err := v.Decode(sub, []int{z, k, H, W})
		if err != nil {
			t.Fatal(err)
		}
		comparePrefix(t, "decode", part, ps, full, fs)
	}

	video, vs := get("encode.video") // [3,F,H,W], F = 1+4k
	enc, es, err := v.Encode(video, vs)
	if err != nil {
		t.Fatal(err)
	}
	F, plane := vs[1], vs[2]*vs[3]
	n := F - 4 // one 4-frame chunk fewer
	if n < 1 {
		t.Logf("encode.video has %d frame(s): no shorter 1+4k prefix to compare", F)
		return
	}
	sub := make([]float32, 3*n*plane)
	for c := 0; c < 3; c++ {
		copy(sub[c*n*plane:(c+1)*n*plane], video[c*F*plane:(c*F+n)*plane])
	}
	part, ps, err := v.Encode(sub, []int{3, n, vs[2], vs[3]})
	if err != nil {
		t.Fatal(err)
	}
	comparePrefix(t, "encode", part, ps, enc, es)
}

// comparePrefix checks that part [C,n,H,W] equals the first n frames of
// full [C,N,H,W] exactly.
func comparePrefix(t *testing.T, what string, part []float32, ps []int, full []float32, fs []int) {
	t.Helper()
	if ps[0] != fs[0] || ps[2] != fs[2] || ps[3] != fs[3] || ps[1] > fs[1] {
		t.Fatalf("%s: prefix shape %v does not fit %v", what, ps, fs)
	}
	plane := ps[2] * ps[3]
	for c := 0; c < ps[0]; c++ {
		a := part[c*ps[1]*plane : (c+1)*ps[1]*plane]
		b := full[c*fs[1]*plane : (c*fs[1]+ps[1])*plane]
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s: %d frames: channel %d value %d = %v, full run has %v", what, ps[1], c, i, a[i], b[i])
			}
		}
	}
	t.Logf("%s: first %d frames of %d identical", what, ps[1], fs[1])
}

// DecodeChunks delivers the frames of Decode in order, and stops on an
// error from its callback.
func TestDecodeChunks(t *testing.T) {
	v, get := loadGolden(t, tensor.F32)
	latent, ls := get("decode.latent")
	full, fs, err := v.Decode(latent, ls)
	if err != nil {
		t.Fatal(err)
	}
	plane := fs[2] * fs[3]
	next := 0
	err = v.DecodeChunks(latent, ls, func(first int, chunk []float32, cs []int) error {
		if first != next {
			t.Fatalf("chunk starts at frame %d, want %d", first, next)
		}
		for c := 0; c < 3; c++ {
			for i, x := range chunk[c*cs[1]*plane : (c+1)*cs[1]*plane] {
				if want := full[(c*fs[1]+first)*plane+i]; x != want {
					t.Fatalf("frame %d channel %d value %d = %v, Decode gave %v", first+i/plane, c, i%plane, x, want)
				}
			}
		}
		next += cs[1]
		return nil
	})
	if err != nil || next != fs[1] {
		t.Fatalf("err %v after %d frames, want nil after %d", err, next, fs[1])
	}
	stop := errors.New("stop")
	calls := 0
	err = v.DecodeChunks(latent, ls, func(int, []float32, []int) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("callback error: got %v after %d calls, want %v after 1", err, calls, stop)
	}
}
