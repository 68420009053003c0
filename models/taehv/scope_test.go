package taehv

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestScopes: the entry points leave nothing in the caller's scope but
// the tensors they return (DecodeTensor's and PushTensor's video); a
// Stream's carried frames live outside scopes until Close, so pushes in
// scopes that end in between still see them; the model's whole life
// leaves no allocation outside a scope behind.
func TestScopes(t *testing.T) {
	be := cpu.New()
	start := be.Loose()
	m, err := Load(be, randomTAEHV(4), Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	x, xs := randLatent(7, 2, 3, 2)
	caller := be.Begin()
	live := func(what string, want int) {
		t.Helper()
		if n := be.ScopedLive(); n != want {
			t.Errorf("%s left %d tensors in the caller's scope, want %d", what, n, want)
		}
	}
	want, _, err := m.Decode(x, xs)
	if err != nil {
		t.Fatal(err)
	}
	live("Decode", 0)
	if err := m.DecodeChunks(x, xs, func(int, []float32, []int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	live("DecodeChunks", 0)
	if _, _, err := m.Encode(want, []int{3, 5, 24, 16}); err != nil {
		t.Fatal(err)
	}
	live("Encode", 0)
	xt := be.Upload(tensor.F32, xs, x)
	live("the upload", 1)
	v, err := m.DecodeTensor(xt)
	if err != nil {
		t.Fatal(err)
	}
	live("DecodeTensor", 2)
	if got := be.Download(v); !equal(got, want) {
		t.Error("DecodeTensor differs from Decode")
	}

	// Each latent frame pushed in a scope of its own, which ends before
	// the next push: the carried frames must outlive it.
	st := m.NewStream()
	var seq []float32
	z, T, H, W := xs[0], xs[1], xs[2], xs[3]
	for f := 0; f < T; f++ {
		frame := make([]float32, z*H*W)
		for c := 0; c < z; c++ {
			copy(frame[c*H*W:(c+1)*H*W], x[(c*T+f)*H*W:(c*T+f+1)*H*W])
		}
		func() {
			sc := be.Begin()
			defer sc.End()
			out, err := st.PushTensor(be.Upload(tensor.F32, []int{z, 1, H, W}, frame))
			if err != nil {
				t.Fatal(err)
			}
			if n := be.ScopedLive(); n != 2+2 {
				t.Errorf("push %d: %d tensors in the scopes, want the caller's 2, the frame and its video", f, n)
			}
			seq = append(seq, be.Download(out)...)
		}()
	}
	st.Close()
	for _, h := range st.s.hist {
		t.Errorf("Close left a carried frame %v", h.Shape())
	}
	ref, _, err := m.DecodeSequential(x, xs, nil)
	if err != nil {
		t.Fatal(err)
	}
	// seq is frame-major per push ([3,n,..] each); compare per channel.
	F, plane := 4*T-3, 8*H*8*W
	got := make([]float32, len(ref))
	first := 0
	for f := 0; f < T; f++ {
		n := 4
		if f == 0 {
			n = 1
		}
		chunk := seq[3*plane*first:]
		for c := 0; c < 3; c++ {
			copy(got[(c*F+first)*plane:(c*F+first+n)*plane], chunk[c*n*plane:(c+1)*n*plane])
		}
		first += n
	}
	if !equal(got, ref) {
		t.Error("pushes in scopes of their own differ from DecodeSequential")
	}
	caller.End()
	m.Free()
	if n := be.Loose(); n != start {
		t.Errorf("%d allocations outside scopes left after Free, want %d", n, start)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
