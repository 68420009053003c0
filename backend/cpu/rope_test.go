package cpu

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestRoPE(t *testing.T) {
	be := New()
	r := newRand(30)
	const l, heads, d = 45, 3, 128
	xv := randVals(r, 2*l*heads*d, 1)
	ang := make([]float32, l*d/2)
	for i := range ang {
		ang[i] = float32(r.Float64() * 40)
	}
	want := make([]float64, len(xv))
	for row := 0; row < 2*l; row++ {
		p := row % l
		for h := 0; h < heads; h++ {
			for i := 0; i < d/2; i++ {
				o := row*heads*d + h*d + 2*i
				c, s := math.Cos(float64(ang[p*d/2+i])), math.Sin(float64(ang[p*d/2+i]))
				x0, x1 := float64(xv[o]), float64(xv[o+1])
				want[o] = x0*c - x1*s
				want[o+1] = x0*s + x1*c
			}
		}
	}
	angles := be.Upload(tensor.F32, []int{l, d / 2}, ang)
	both(t, func(t *testing.T, dt tensor.DType) {
		got := be.Download(be.RoPE(be.Upload(dt, []int{2, l, heads * d}, xv), angles, heads))
		if dt == tensor.F32 {
			checkClose(t, "RoPE f32", got, want, 1e-6)
			return
		}
		checkBF16(t, "RoPE", got)
		checkClose(t, "RoPE bf16", got, want, 4e-3)
	})
	x := be.Upload(tensor.F32, []int{l, heads * d}, xv[:l*heads*d])
	expectFail(t, "RoPE angles", func() { be.RoPE(x, be.Upload(tensor.F32, []int{l, d}, make([]float32, l*d)), heads) }, "angles", "[45 64]")
	expectFail(t, "RoPE heads", func() { be.RoPE(x, angles, 5) }, "5 heads")
}
