package sampler

import (
	"math"
	"testing"
)

func TestTrigRounded(t *testing.T) {
	// Values from glibc (correctly rounded here), one of them an ulp away
	// from Go's math.Sin.
	if a := atanRounded(80); a != 1.5582969777755349 {
		t.Errorf("atan(80) = %.17g", a)
	}
	s, c := sinCosRounded(1.5582969777755349)
	if s != 0.9999218841540815 || c != 0.012499023551926074 {
		t.Errorf("sin, cos(atan 80) = %.17g, %.17g", s, c)
	}
	for _, a := range []float64{0, 0.1, 0.5, 1, 1.4, 1.5, 1.57, -0.7} {
		s, c := sinCosRounded(a)
		if math.Abs(s-math.Sin(a)) > 2e-16 || math.Abs(c-math.Cos(a)) > 2e-16 {
			t.Errorf("a=%v: sin %v cos %v, math gives %v %v", a, s, c, math.Sin(a), math.Cos(a))
		}
	}
	for _, x := range []float64{0.5, 1, 80, 200, 1600, 1e6} {
		if a := atanRounded(x); math.Abs(a-math.Atan(x)) > 4e-16 {
			t.Errorf("atan(%v) = %v, math gives %v", x, a, math.Atan(x))
		}
	}
}
