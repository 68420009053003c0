package vec

import (
	"math"
	"testing"
)

func TestDot(t *testing.T) {
	for n := 0; n <= 9; n++ {
		x := make([]float32, n)
		y := make([]float32, n+2) // longer y: only y[:len(x)] counts
		var want float64
		for i := range x {
			x[i], y[i] = float32(i+1), float32(2*i-3)
			want += float64(x[i]) * float64(y[i])
		}
		if got := Dot(x, y); !(math.Abs(float64(got)-want) <= 1e-4) { // NaN fails too
			t.Errorf("n=%d: Dot = %v, want %v", n, got, want)
		}
	}
}
