package cpu

import (
	"math"
	"testing"
)

func TestExpf(t *testing.T) {
	r := newRand(60)
	worst := 0.0
	check := func(x float32) {
		got := float64(expf(x))
		want := math.Exp(float64(x))
		if want < 0x1p-126 { // flushed range
			if got > 0x1p-125 {
				t.Fatalf("expf(%v) = %v, want ~%v", x, got, want)
			}
			return
		}
		ulp := math.Ldexp(1, math.Ilogb(want)-23)
		e := math.Abs(got-want) / ulp
		worst = math.Max(worst, e)
		if !(e <= 2) { // NaN fails too
			t.Fatalf("expf(%v) = %v, want %v (%.2f ulp)", x, got, want, e)
		}
	}
	for i := 0; i < 1000000; i++ {
		check(float32(r.Float64()*176 - 88))
	}
	for i := 0; i < 100000; i++ {
		check(float32(r.Float64() * -2))
	}
	for _, x := range []float32{0, -0, 1, -1, 1e-8, -1e-8, 0.5, -87.3, 88.7, -87.4, -100} {
		check(x)
	}
	if expf(0) != 1 || expf(float32(math.Inf(-1))) != 0 || !math.IsInf(float64(expf(89)), 1) || !math.IsNaN(float64(expf(float32(math.NaN())))) {
		t.Errorf("expf special values wrong")
	}
	t.Logf("expf: worst error %.3f ulp", worst)
}

func BenchmarkExpf(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = -float32(i) / 256
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += expf(v)
		}
	}
	_ = s
}

func TestTanhf(t *testing.T) {
	r := newRand(61)
	worst, worstAbs := 0.0, 0.0
	for i := 0; i < 1000000; i++ {
		x := float32(r.NormFloat64() * 3)
		if i%4 == 0 {
			x = float32(r.NormFloat64() * 0.01)
		}
		got, want := float64(tanhf(x)), math.Tanh(float64(x))
		if want != 0 {
			ulp := math.Ldexp(1, math.Ilogb(want)-23)
			worst = math.Max(worst, math.Abs(got-want)/ulp)
		}
		worstAbs = math.Max(worstAbs, math.Abs(got-want))
	}
	t.Logf("tanhf: worst %.2f ulp, worst abs error %.2e", worst, worstAbs)
	if !(worst <= 4 && worstAbs <= 1.2e-7) { // NaN fails too
		t.Errorf("tanhf: %.2f ulp, abs %.2e", worst, worstAbs)
	}
	for _, x := range []float32{0, 9.02, -9.02, 100, -100} {
		if got, want := tanhf(x), float32(math.Tanh(float64(x))); got != want {
			t.Errorf("tanhf(%v) = %v, want %v", x, got, want)
		}
	}
}
