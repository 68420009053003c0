package cpu

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestModulate(t *testing.T) {
	be := New()
	r := newRand(20)
	const rows, d = 300, 129
	xv := randVals(r, rows*d, 1)
	sh, sc := randVals(r, d, 0.5), randVals(r, d, 0.5)
	both(t, func(t *testing.T, dt tensor.DType) {
		got := be.Download(be.Modulate(be.Upload(dt, []int{1, rows, d}, xv), be.Upload(tensor.F32, []int{d}, sh), be.Upload(tensor.F32, []int{d}, sc)))
		want := make([]float64, rows*d)
		for i := range want {
			j := i % d
			want[i] = float64(xv[i])*(1+float64(sc[j])) + float64(sh[j])
		}
		if dt == tensor.F32 {
			checkClose(t, "Modulate f32", got, want, 1e-6)
		} else {
			checkBF16(t, "Modulate", got)
			if u := maxULPbf16(got, want); u > 1 {
				t.Errorf("Modulate bf16: %.2f ulps", u)
			}
		}
	})
	// per-token modulation: shift/scale [rows, d]
	sh2, sc2 := randVals(r, rows*d, 0.5), randVals(r, rows*d, 0.5)
	got := be.Download(be.Modulate(be.Upload(tensor.F32, []int{rows, d}, xv), be.Upload(tensor.F32, []int{rows, d}, sh2), be.Upload(tensor.F32, []int{rows, d}, sc2)))
	want := make([]float64, rows*d)
	for i := range want {
		want[i] = float64(xv[i])*(1+float64(sc2[i])) + float64(sh2[i])
	}
	checkClose(t, "Modulate per-token", got, want, 1e-6)
	x := be.Upload(tensor.F32, []int{rows, d}, xv)
	expectFail(t, "Modulate shape", func() {
		be.Modulate(x, be.Upload(tensor.F32, []int{d - 1}, sh[:d-1]), be.Upload(tensor.F32, []int{d}, sc))
	}, "[128]")
}

func TestGatedAdd(t *testing.T) {
	be := New()
	r := newRand(21)
	const rows, d = 70, 1000
	xv, yv := randVals(r, rows*d, 1), randVals(r, rows*d, 1)
	g := make([]float32, d)
	for i := range g { // float32 gates that are not bf16 values
		g[i] = float32(r.NormFloat64())
	}
	// bf16: x + bf16(y * bf16(g)), each step exactly rounded.
	got := be.Download(be.GatedAdd(be.Upload(tensor.BF16, []int{rows, d}, xv), be.Upload(tensor.BF16, []int{rows, d}, yv), be.Upload(tensor.F32, []int{d}, g)))
	for i := range got {
		gb := tensor.RoundBF16(g[i%d])
		p := tensor.RoundBF16(float32(float64(yv[i]) * float64(gb)))
		want := tensor.RoundBF16(float32(float64(xv[i]) + float64(p)))
		if got[i] != want {
			t.Fatalf("GatedAdd bf16 [%d]: x=%v y=%v g=%v: got %v, want %v", i, xv[i], yv[i], g[i%d], got[i], want)
		}
	}
	// f32: the gate is not rounded.
	got = be.Download(be.GatedAdd(be.Upload(tensor.F32, []int{rows, d}, xv), be.Upload(tensor.F32, []int{rows, d}, yv), be.Upload(tensor.F32, []int{d}, g)))
	want := make([]float64, len(got))
	for i := range want {
		want[i] = float64(xv[i]) + float64(yv[i])*float64(g[i%d])
	}
	checkClose(t, "GatedAdd f32", got, want, 1e-7)
	x := be.Upload(tensor.F32, []int{rows, d}, xv)
	expectFail(t, "GatedAdd y shape", func() { be.GatedAdd(x, be.Upload(tensor.F32, []int{d}, g), be.Upload(tensor.F32, []int{d}, g)) }, "[1000]", "[70 1000]")
}
