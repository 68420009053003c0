package sla

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestInt8BlockRounding checks SpargeAttn's quantiser: scale max/127 + 1e-7,
// halves rounded away from zero, ±max → ±127.
func TestInt8BlockRounding(t *testing.T) {
	x := []float32{127, -127, 0.5, -0.5, 1.5, -2.5, 0}
	q := make([]int8, len(x))
	s := int8Block(q, x)
	if want := float32(1) + float32(1e-7); s != want {
		t.Fatalf("scale %g, want %g", s, want)
	}
	// x/s is slightly below x here (s > 1), so 127 stays 127 and the
	// halves fall just short of .5: 0.5/s + 0.5 < 1 → 0.
	want := []int8{127, -127, 0, 0, 1, -2, 0}
	for i := range want {
		if q[i] != want[i] {
			t.Errorf("code of %g = %d, want %d", x[i], q[i], want[i])
		}
	}
	// Exact halves with a power-of-two scale: max 254 → s = 2 + 1e-7 rounds to 2.
	x = []float32{254, 1, -1, 3, -5}
	s = int8Block(q[:5], x)
	if s != 2 {
		t.Fatalf("scale %g, want 2", s)
	}
	want = []int8{127, 1, -1, 2, -3} // 0.5 → 1, -0.5 → -1, 1.5 → 2, -2.5 → -3
	for i := range want {
		if q[i] != want[i] {
			t.Errorf("code of %g = %d, want %d", x[i], q[i], want[i])
		}
	}
}

// TestSageQuantizeV checks V's per-channel fp8 scaling into [-2.25, 2.25].
func TestSageQuantizeV(t *testing.T) {
	g := Geometry{L: 3, Heads: 1, D: 2, BlockQ: 64, BlockK: 128, TopK: 1}
	v := []float32{1, 0, -4.5, 0, 2, 0}
	z := sageQuantize(make([]float32, 6), make([]float32, 6), v, g)
	if z.vscale[0] != 2 || z.vscale[1] != 0 {
		t.Fatalf("v scales %v, want [2 0]", z.vscale)
	}
	want := []float32{tensor.F32FromE4M3(tensor.E4M3FromF32(0.5)), 0, -2.25, 0, tensor.F32FromE4M3(tensor.E4M3FromF32(1)), 0}
	for i := range want {
		if z.v8[i] != want[i] {
			t.Errorf("v8[%d] = %g, want %g", i, z.v8[i], want[i])
		}
	}
}

// TestFloatGEMMIsExactOnCodes: int8 codes (|c| ≤ 127) over d = 128 give
// exact int32 dot products through a float32 GEMM, whatever its order.
func TestFloatGEMMIsExactOnCodes(t *testing.T) {
	const n, d = 16, 128
	a, b := make([]float32, n*d), make([]float32, n*d)
	ai, bi := make([]int32, n*d), make([]int32, n*d)
	for i := range a {
		x, y := int32((i*37)%255-127), int32(127-(i*11)%255)
		if i < d { // one all-extreme row pair
			x, y = -127, -127
		}
		a[i], b[i], ai[i], bi[i] = float32(x), float32(y), x, y
	}
	c := make([]float32, n*n)
	scalarMatMul(n, n, d, a, d, b, d, c, n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s int32
			for x := 0; x < d; x++ {
				s += ai[i*d+x] * bi[j*d+x]
			}
			if c[i*n+j] != float32(s) {
				t.Fatalf("(%d,%d): float GEMM %g, int32 dot %d", i, j, c[i*n+j], s)
			}
		}
	}
}
