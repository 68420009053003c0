package quant

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestCodeSaturatesAsymmetrically checks the divisor-128 rule: +amax maps to
// 128 and saturates to 127, -amax to -128, halves round to even.
func TestCodeSaturatesAsymmetrically(t *testing.T) {
	x := []float32{2, -2, 1, 0.0078125 * 2 * 0.5, 0.0078125 * 2 * 1.5, 0.0078125 * 2 * 2.5, 0}
	q, s, err := Quantize(x, 1, len(x))
	if err != nil {
		t.Fatal(err)
	}
	want := []int8{127, -128, 64, 0, 2, 2, 0}
	for i := range want {
		if q[i] != want[i] {
			t.Errorf("code of %g = %d, want %d", x[i], q[i], want[i])
		}
	}
	if s[0] != 2.0/128 {
		t.Errorf("scale %g, want %g", s[0], 2.0/128)
	}
	// An all-zero tile keeps the 1e-8 floor.
	_, s, _ = Quantize(make([]float32, 4), 2, 2)
	if s[0] != float32(1e-8)/128 {
		t.Errorf("zero tile scale %g, want %g", s[0], float32(1e-8)/128)
	}
}

func TestQuantizeShapeError(t *testing.T) {
	if _, _, err := Quantize(make([]float32, 5), 2, 3); err == nil {
		t.Fatal("want an error for 5 values as [2,3]")
	}
	// Codes of the right length for k=100 (and no scales: 100/128 = 0
	// blocks), so only the multiple-of-128 check can refuse it.
	if _, err := GEMM(make([]int8, 100), nil, make([]int8, 100), nil, 1, 1, 100); err == nil || !strings.Contains(err.Error(), "multiple of 128") {
		t.Fatalf("k=100: %v, want an error saying k must be a multiple of 128", err)
	}
}

// TestFMA32 compares FMA32 against exact big.Float arithmetic rounded once,
// including values built to sit on float32 midpoints.
func TestFMA32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(200).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(200).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	for i := 0; i < 200000; i++ {
		a := float32(r.IntN(1<<22) - 1<<21) // the GEMM's integer dots
		b := float32(math.Ldexp(1+r.Float64(), -r.IntN(30)))
		c := float32(r.NormFloat64() * math.Ldexp(1, r.IntN(20)-10))
		if i%3 == 0 {
			// c just beside a·b so that cancellation and midpoints occur
			c = -a*b + float32(math.Ldexp(r.Float64()-0.5, -r.IntN(40)))
		}
		if got, want := FMA32(a, b, c), exact(a, b, c); got != want {
			t.Fatalf("FMA32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
	// A float64 sum that lands exactly on a float32 midpoint with a tiny
	// remainder: naive float32(float64 fma) rounds twice.
	a, b := float32(1+math.Ldexp(1, -23)), float32(1+math.Ldexp(1, -23))
	c := float32(math.Ldexp(1, -24)) // a·b = 1 + 2^-22 + 2^-46
	if got, want := FMA32(a, b, c), exact(a, b, c); got != want {
		t.Fatalf("midpoint case: got %g want %g", got, want)
	}
}

type int8Golden struct {
	x, w, bias, xScale, wScale, yGEMM, yModule []float32
	xq, wq                                     []int8
	m, k, n                                    int
}

func loadInt8Golden(t *testing.T) int8Golden {
	f := golden.Open(t, "int8_linear.safetensors")
	var g int8Golden
	var xs, ws []int
	g.x, xs = golden.Tensor(t, f, "x")
	g.w, ws = golden.Tensor(t, f, "weight")
	g.bias, _ = golden.Tensor(t, f, "bias")
	g.xScale, _ = golden.Tensor(t, f, "x_scale")
	g.wScale, _ = golden.Tensor(t, f, "weight_scale")
	g.yGEMM, _ = golden.Tensor(t, f, "y_int8_linear")
	g.yModule, _ = golden.Tensor(t, f, "y_module")
	var err error
	if g.xq, err = f.Int8("x_int8"); err != nil {
		t.Fatal(err)
	}
	if g.wq, err = f.Int8("weight_int8"); err != nil {
		t.Fatal(err)
	}
	if len(xs) < 2 || len(ws) != 2 || xs[len(xs)-1] != ws[1] {
		t.Fatalf("%s: x %v and weight %v are not [.., K] and [N, K]", f.Path(), xs, ws)
	}
	g.k, g.n = ws[1], ws[0]
	g.m = len(g.x) / g.k // x [.., K] flattened to (M, K), as Int8Linear does
	return g
}

// compareCodes checks scales bit-exactly and codes exactly except entries
// whose x·128/amax lies within 1e-6 of a .5 boundary (the reference's
// fast-math division); it returns the number of such entries.
func compareCodes(t *testing.T, what string, x []float32, m, n int, got []int8, gotS []float32, want []int8, wantS []float32) int {
	t.Helper()
	for i := range wantS {
		if math.Float32bits(gotS[i]) != math.Float32bits(wantS[i]) {
			t.Errorf("%s: scale %d = %g, reference %g", what, i, gotS[i], wantS[i])
		}
	}
	_, sc := ScaleShape(m, n)
	boundary, ties := 0, 0
	for i := range want {
		r, c := i/n, i%n
		amax := float64(wantS[(r/Block)*sc+c/Block]) * 128
		v := float64(x[i]) * 128 / amax
		dist := math.Abs(v - (math.Floor(v) + 0.5))
		if dist == 0 {
			ties++
		}
		if got[i] == want[i] {
			continue
		}
		t.Logf("%s[%d,%d]: x %g, x·128/amax %.9f (%.2e from a .5 boundary), code %d, reference %d", what, r, c, x[i], v, dist, got[i], want[i])
		if dist > 1e-6 || absDiff(got[i], want[i]) != 1 {
			t.Errorf("%s[%d,%d]: code %d differs from reference %d away from a .5 boundary", what, r, c, got[i], want[i])
		}
		boundary++
	}
	t.Logf("%s: %d of %d codes differ from the reference, all at .5 boundaries (%d codes are exact .5 ties); %d scales bit-exact", what, boundary, len(want), ties, len(wantS))
	return boundary
}

func absDiff(a, b int8) int {
	d := int(a) - int(b)
	if d < 0 {
		return -d
	}
	return d
}

func TestInt8QuantizeConformance(t *testing.T) {
	g := loadInt8Golden(t)
	wq, ws, err := Quantize(g.w, g.n, g.k)
	if err != nil {
		t.Fatal(err)
	}
	compareCodes(t, "weight", g.w, g.n, g.k, wq, ws, g.wq, g.wScale)
	xq, xs, err := Quantize(g.x, g.m, g.k)
	if err != nil {
		t.Fatal(err)
	}
	compareCodes(t, "x", g.x, g.m, g.k, xq, xs, g.xq, g.xScale)
}

func bitExactBF16(t *testing.T, what string, got, want []float32) {
	t.Helper()
	diff, maxUlp := 0, 0
	for i := range want {
		if got[i] != want[i] {
			diff++
			u := int(tensor.BF16FromF32(got[i])) - int(tensor.BF16FromF32(want[i]))
			maxUlp = max(maxUlp, u, -u)
		}
	}
	golden.Compare(t, what, got, want, 0)
	t.Logf("%s: %d of %d values differ from the reference (max %d bf16 ulp)", what, diff, len(want), maxUlp)
	if diff != 0 {
		t.Errorf("%s: not bit-exact", what)
	}
}

func TestInt8GEMMConformance(t *testing.T) {
	g := loadInt8Golden(t)
	y, err := GEMM(g.xq, g.xScale, g.wq, g.wScale, g.m, g.n, g.k)
	if err != nil {
		t.Fatal(err)
	}
	tensor.RoundBF16Slice(y)
	bitExactBF16(t, "y_int8_linear (from saved codes)", y, g.yGEMM)
}

func TestInt8LinearConformance(t *testing.T) {
	g := loadInt8Golden(t)
	y, err := Linear(g.x, g.m, g.k, g.wq, g.wScale, g.n, g.bias, true)
	if err != nil {
		t.Fatal(err)
	}
	bitExactBF16(t, "y_module", y, g.yModule)
}
