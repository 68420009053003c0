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
			if math.Abs(float64(sum-rsum)) > 1e-6*math.Abs(float64(rsum)) {
				t.Errorf("n=%d: sum %v vs scalar %v", n, sum, rsum)
			}
			if round {
				checkBF16(t, "expSub", s)
			}
		}
	}
}
