package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// randVals returns n normal values (times sd), rounded to bf16 so the same
// data can feed F32 and BF16 tensors.
func randVals(r *rand.Rand, n int, sd float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = tensor.RoundBF16(float32(r.NormFloat64() * sd))
	}
	return x
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

// f64 widens a float32 slice.
func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// relErr is ‖got−want‖/‖want‖.
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// checkClose fails if rel-L2(got, want) > tol and logs the measurement.
func checkClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	e := relErr(got, want)
	t.Logf("%s: rel_l2 %.3e", what, e)
	if e > tol || math.IsNaN(e) {
		t.Errorf("%s: rel_l2 %.3e > %.0e", what, e, tol)
	}
}

// checkBF16 fails unless every value is bf16-representable.
func checkBF16(t *testing.T, what string, x []float32) {
	t.Helper()
	for i, v := range x {
		if tensor.RoundBF16(v) != v {
			t.Fatalf("%s[%d] = %v is not a bf16 value", what, i, v)
		}
	}
}

// maxULPbf16 is the largest distance of got from want in bf16 ulps of want.
func maxULPbf16(got []float32, want []float64) float64 {
	m := 0.0
	for i, w := range want {
		if w == 0 {
			continue
		}
		ulp := math.Ldexp(1, math.Ilogb(w)-7)
		m = math.Max(m, math.Abs(float64(got[i])-w)/ulp)
	}
	return m
}

// expectFail runs f and checks that it panics with a *backend.Error (what
// backend.Recover turns into an error) whose message contains every
// fragment.
func expectFail(t *testing.T, what string, f func(), fragments ...string) {
	t.Helper()
	var got any
	func() {
		defer func() { got = recover() }()
		f()
	}()
	if got == nil {
		t.Fatalf("%s: no error", what)
	}
	be, ok := got.(*backend.Error)
	if !ok {
		t.Fatalf("%s: panicked with %T (%v), want *backend.Error", what, got, got)
	}
	for _, s := range fragments {
		if !strings.Contains(be.Error(), s) {
			t.Errorf("%s: error %q does not mention %q", what, be, s)
		}
	}
}

// both runs f for F32 and BF16.
func both(t *testing.T, f func(t *testing.T, dt tensor.DType)) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		t.Run(dt.String(), func(t *testing.T) { f(t, dt) })
	}
}

// roundRef rounds a float64 reference to dt (through float32).
func roundRef(dt tensor.DType, x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		f := float32(v)
		if dt == tensor.BF16 {
			f = tensor.RoundBF16(f)
		}
		y[i] = float64(f)
	}
	return y
}

// forEachKernel runs f once per GEMM/softmax implementation this CPU has:
// the AVX-512 and AVX2 micro-kernels and the portable Go path.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	type variant struct {
		name         string
		have, kernel bool
		avx512       bool
	}
	for _, v := range []variant{
		{"avx512", haveAVX512, true, true},
		{"avx2", haveKernel, true, false},
		{"portable", true, false, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			if !v.have {
				t.Skipf("CPU lacks %s", v.name)
			}
			useKernel, useAVX512 = v.kernel, v.avx512
			defer func() { useKernel, useAVX512 = haveKernel, haveAVX512 }()
			f(t)
		})
	}
}
