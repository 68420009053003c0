package sla

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExp2f checks the polynomial exp2f/expf against math.Exp2/math.Exp
// rounded to float32: at most 1 float32 ulp apart, exact at integers.
func TestExp2f(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	ulps := func(a, b float32) int64 {
		d := int64(math.Float32bits(a)) - int64(math.Float32bits(b))
		if d < 0 {
			return -d
		}
		return d
	}
	worst := int64(0)
	for i := 0; i < 200000; i++ {
		x := float32(r.Float64()*250 - 160)
		if i%2 == 0 {
			x = float32(r.Float64()*40 - 30) // the softmax range
		}
		worst = max(worst, ulps(exp2f(x), float32(math.Exp2(float64(x)))))
		y := float32(r.Float64()*60 - 40)
		worst = max(worst, ulps(expf(y), float32(math.Exp(float64(y)))))
	}
	if worst > 1 {
		t.Errorf("exp2f/expf differ from math by %d ulp", worst)
	}
	for _, n := range []float32{-149, -126, -3, 0, 1, 10, 127} {
		if got := exp2f(n); got != float32(math.Exp2(float64(n))) {
			t.Errorf("exp2f(%g) = %g", n, got)
		}
	}
	if exp2f(float32(math.Inf(-1))) != 0 || !math.IsInf(float64(exp2f(200)), 1) {
		t.Error("exp2f limits")
	}
}
