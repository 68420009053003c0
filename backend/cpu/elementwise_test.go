package cpu

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestAddMulBroadcast(t *testing.T) {
	be := New()
	r := newRand(1)
	both(t, func(t *testing.T, dt tensor.DType) {
		for _, bshape := range [][]int{{3, 5, 70000}, {5, 70000}, {70000}} {
			av := randVals(r, 3*5*70000, 1)
			bv := randVals(r, tensor.NumElements(bshape), 1)
			a := be.Upload(dt, []int{3, 5, 70000}, av)
			bt := be.Upload(tensor.F32, bshape, bv)
			add, mul := be.Download(be.Add(a, bt)), be.Download(be.Mul(a, bt))
			wa, wm := make([]float64, len(av)), make([]float64, len(av))
			for i := range av {
				y := float64(bv[i%len(bv)])
				wa[i] = float64(av[i]) + y
				wm[i] = float64(av[i]) * y
			}
			// one rounding: exact equality with the rounded float64 result
			// (a float32 sum/product of bf16 values is exact or correctly rounded).
			for i := range av {
				if float64(add[i]) != roundRef(dt, wa[i:i+1])[0] {
					t.Fatalf("Add %v: [%d] %v + %v = %v", bshape, i, av[i], bv[i%len(bv)], add[i])
				}
				if float64(mul[i]) != roundRef(dt, wm[i:i+1])[0] {
					t.Fatalf("Mul %v: [%d] %v * %v = %v", bshape, i, av[i], bv[i%len(bv)], mul[i])
				}
			}
			if dt == tensor.BF16 {
				checkBF16(t, "Add", add)
			}
		}
	})
}

func TestElementwiseErrors(t *testing.T) {
	be := New()
	a := be.Upload(tensor.F32, []int{2, 3}, make([]float32, 6))
	expectFail(t, "Add not a suffix", func() { be.Add(a, be.Upload(tensor.F32, []int{2}, make([]float32, 2))) }, "[2]", "[2 3]")
	expectFail(t, "Mul longer", func() { be.Mul(a, be.Upload(tensor.F32, []int{1, 2, 3}, make([]float32, 6))) }, "suffix")
	expectFail(t, "int8 operand", func() { be.SiLU(be.UploadInt8([]int{2}, []int8{1, 2})) }, "int8")
	expectFail(t, "Upload size", func() { be.Upload(tensor.F32, []int{2, 2}, make([]float32, 3)) }, "[2 2]", "3")
	be.Free(a)
	expectFail(t, "use after free", func() { be.Scale(a, 2) }, "after Free")
}

func TestUnary(t *testing.T) {
	be := New()
	r := newRand(2)
	xs := randVals(r, 50001, 3)
	xs = append(xs, 0, -0.5, 20, -20, 88, -88)
	both(t, func(t *testing.T, dt tensor.DType) {
		x := be.Upload(dt, []int{len(xs)}, xs)
		silu, gelu, sc := be.Download(be.SiLU(x)), be.Download(be.GELUTanh(x)), be.Download(be.Scale(x, 0.37))
		ws, wg, wsc := make([]float64, len(xs)), make([]float64, len(xs)), make([]float64, len(xs))
		for i, v := range f64(xs) {
			ws[i] = v / (1 + math.Exp(-v))
			wg[i] = 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
			wsc[i] = v * float64(float32(0.37))
		}
		// float32 evaluation then one rounding: within 1 bf16 ulp (bf16) or
		// a few float32 ulps (f32) of the exact value.
		tol := 1e-6
		if dt == tensor.BF16 {
			tol = 4e-3
			checkBF16(t, "SiLU", silu)
			// x ≤ -3 excluded: there 1+tanh cancels in float32, in the
			// reference kernel as here.
			var gg []float32
			var gw []float64
			for i, v := range xs {
				if v > -3 {
					gg, gw = append(gg, gelu[i]), append(gw, wg[i])
				}
			}
			if u := maxULPbf16(gg, gw); u > 1 {
				t.Errorf("GELUTanh: %.2f bf16 ulps from exact", u)
			}
			if u := maxULPbf16(silu, ws); u > 1 {
				t.Errorf("SiLU: %.2f bf16 ulps from exact", u)
			}
		}
		checkClose(t, "SiLU", silu, ws, tol)
		checkClose(t, "GELUTanh", gelu, wg, tol)
		checkClose(t, "Scale", sc, wsc, tol)
	})
}
