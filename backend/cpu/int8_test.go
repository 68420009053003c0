package cpu

import (
	"math"
	"math/rand/v2"

	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestInt8LinearConformance runs the backend op on the set's Int8Linear
// case (x [.., K] bf16, int8 weight [N, K] with its scales; shapes from the
// file) and expects bit-exact output.
func TestInt8LinearConformance(t *testing.T) {
	f := golden.Open(t, "int8_linear.safetensors")
	x, xs := golden.Tensor(t, f, "x")
	ws, wss := golden.Tensor(t, f, "weight_scale")
	bias, bs := golden.Tensor(t, f, "bias")
	want, _ := golden.Tensor(t, f, "y_module")
	wq, err := f.Int8("weight_int8")
	if err != nil {
		t.Fatal(err)
	}
	wi, _ := f.Info("weight_int8")
	if len(wi.Shape) != 2 || len(xs) < 2 || xs[len(xs)-1] != wi.Shape[1] {
		t.Fatalf("%s: x %v and weight_int8 %v are not [.., K] and [N, K]", f.Path(), xs, wi.Shape)
	}
	b := New()
	y := b.Int8Linear(NewTensor(tensor.BF16, xs, x), b.UploadInt8(wi.Shape, wq),
		NewTensor(tensor.F32, wss, ws), NewTensor(tensor.BF16, bs, bias))
	wantShape := append(append([]int(nil), xs[:len(xs)-1]...), wi.Shape[0])
	if got := y.Shape(); !backend.SameShape(got, wantShape) || y.DType() != tensor.BF16 {
		t.Fatalf("output %v %v, want bfloat16 %v", y.DType(), got, wantShape)
	}
	got := T(y).F
	diff := 0
	for i := range want {
		if got[i] != want[i] {
			diff++
		}
	}
	golden.Compare(t, "Int8Linear y_module", got, want, 0)
	if diff != 0 {
		t.Errorf("%d of %d outputs differ from the reference", diff, len(want))
	}
}

func TestInt8LinearBadShapes(t *testing.T) {
	b := New()
	run := func() (err error) {
		defer backend.Recover(&err)
		x := NewTensor(tensor.BF16, []int{2, 256}, make([]float32, 512))
		w := b.UploadInt8([]int{4, 256}, make([]int8, 1024))
		s := NewTensor(tensor.F32, []int{1, 3}, make([]float32, 3)) // want [1, 2]
		b.Int8Linear(x, w, s, nil)
		return nil
	}
	err := run()
	if err == nil || !strings.Contains(err.Error(), "[1 2]") {
		t.Fatalf("want a shape error naming [1 2], got %v", err)
	}
}

// TestInt8LinearMatchesQuant checks the SIMD-GEMM path against package
// quant's integer reference bit for bit on a shape with ragged 128-blocks
// in M and N and full-range codes.
func TestInt8LinearMatchesQuant(t *testing.T) {
	const m, k, n = 300, 512, 200
	r := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, m*k)
	for i := range x {
		x[i] = tensor.RoundBF16(float32(r.NormFloat64() * math.Exp(r.NormFloat64())))
	}
	w := make([]float32, n*k)
	for i := range w {
		w[i] = tensor.RoundBF16(float32(r.NormFloat64()))
	}
	bias := make([]float32, n)
	for i := range bias {
		bias[i] = tensor.RoundBF16(float32(r.NormFloat64()))
	}
	wq, ws, err := quant.Quantize(w, n, k)
	if err != nil {
		t.Fatal(err)
	}
	want, err := quant.Linear(x, m, k, wq, ws, n, bias, true)
	if err != nil {
		t.Fatal(err)
	}
	b := New()
	sr, sc := quant.ScaleShape(n, k)
	y := b.Int8Linear(NewTensor(tensor.BF16, []int{m, k}, append([]float32(nil), x...)), b.UploadInt8([]int{n, k}, wq),
		NewTensor(tensor.F32, []int{sr, sc}, ws), NewTensor(tensor.BF16, []int{n}, bias))
	got := T(y).F
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("output %d: %g, quant reference %g", i, got[i], want[i])
		}
	}
}

func BenchmarkInt8Linear(b *testing.B) {
	const m, k, n = 1024, 1536, 1536
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, m*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	w := make([]float32, n*k)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	wq, ws, _ := quant.Quantize(w, n, k)
	be := New()
	xt := NewTensor(tensor.BF16, []int{m, k}, x)
	wt := be.UploadInt8([]int{n, k}, wq)
	st := NewTensor(tensor.F32, []int{n / 128, k / 128}, ws)
	b.SetBytes(int64(2 * m * n * k))
	b.ResetTimer()
	for range b.N {
		be.Int8Linear(xt, wt, st, nil)
	}
}
