package cpu

import (
	"math"
	"testing"
)

// The vector passes must give exactly the scalar values (same float32
// operations); only the row sum may differ by summation order.
func TestSoftmaxPassesMatchScalar(t *testing.T) {
	r := newRand(70)
	for _, n := range []int{1, 7, 8, 9, 64, 200, 1031} {
		for _, round := range []bool{false, true} {
			s := make([]float32, n)
			for i := range s {
				s[i] = float32(r.NormFloat64() * 30)
			}
			if n > 3 {
				s[2] = -1e30 // far below the max: exp underflows to 0
			}
			ref := append([]float32(nil), s...)
			mx := scaleMax(s, 0.37)
			rmx := scaleMaxScalar(ref, 0.37)
			if mx != rmx || !equalF(s, ref) {
				t.Fatalf("n=%d: scaleMax %v vs scalar %v (values equal: %v)", n, mx, rmx, equalF(s, ref))
			}
			sum := expSub(s, mx, round)
			rsum := expSubScalar(ref, mx, round)
			for i := range s {
				if s[i] != ref[i] {
					t.Fatalf("n=%d round=%v: expSub[%d] = %v, scalar %v", n, round, i, s[i], ref[i])
				}
			}
			if !(math.Abs(float64(sum-rsum)) <= 1e-6*math.Abs(float64(rsum))) { // NaN fails too
				t.Errorf("n=%d: sum %v vs scalar %v", n, sum, rsum)
			}
			if round {
				checkBF16(t, "expSub", s)
			}
		}
	}
}

// The AVX2 GELU must give exactly the scalar geluTanh, on every branch of
// tanhf (polynomial, exponential, saturated) and their boundaries.
func TestGELUVectorMatchesScalar(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := newRand(71)
		x := []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 0.7, -0.7, 3, -3, 11.3, -11.3, 1e20, -1e20, float32(math.Inf(1)), float32(math.Inf(-1))}
		for i := 0; i < 200000; i++ {
			x = append(x, float32(r.NormFloat64()*4))
		}
		// inputs whose inner argument lands next to the branch points
		for _, u := range []float64{0.625, 9.01} {
			for i := -50; i <= 50; i++ {
				v := math.Nextafter32(float32(u/0.7978845608028654), float32(math.Inf(i)))
				for k := 0; k < i*i%7; k++ {
					v = math.Nextafter32(v, float32(math.Inf(i)))
				}
				x = append(x, v, -v)
			}
		}
		got := make([]float32, len(x))
		geluTanhInto(got, x)
		for i, v := range x {
			want := geluTanh(v)
			if math.Float32bits(got[i]) != math.Float32bits(want) && !(math.IsNaN(float64(want)) && math.IsNaN(float64(got[i]))) {
				t.Fatalf("geluTanh(%v): vector %v, scalar %v", v, got[i], want)
			}
		}
	})
}
