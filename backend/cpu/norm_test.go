package cpu

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// refLayerNorm is LayerNorm in float64.
func refLayerNorm(x, w, b []float64, d int, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < len(x)/d; r++ {
		row := x[r*d : (r+1)*d]
		var mu, v float64
		for _, a := range row {
			mu += a
		}
		mu /= float64(d)
		for _, a := range row {
			v += (a - mu) * (a - mu)
		}
		rs := 1 / math.Sqrt(v/float64(d)+eps)
		for i, a := range row {
			o := (a - mu) * rs
			if w != nil {
				o *= w[i]
			}
			if b != nil {
				o += b[i]
			}
			y[r*d+i] = o
		}
	}
	return y
}

func TestLayerNorm(t *testing.T) {
	be := New()
	r := newRand(10)
	for _, d := range []int{7, 256, 1536} {
		rows := 37
		xv := randVals(r, rows*d, 2)
		for i := range xv { // a non-zero mean makes the two-pass variance matter
			xv[i] = tensor.RoundBF16(xv[i] + 3)
		}
		wv, bv := randVals(r, d, 1), randVals(r, d, 1)
		for _, in := range []tensor.DType{tensor.F32, tensor.BF16} {
			for _, out := range []tensor.DType{tensor.F32, tensor.BF16} {
				x := be.Upload(in, []int{rows, d}, xv)
				plain := be.Download(be.LayerNorm(x, nil, nil, 1e-6, out))
				aff := be.LayerNorm(x, be.Upload(tensor.F32, []int{d}, wv), be.Upload(tensor.BF16, []int{d}, bv), 1e-6, out)
				if aff.DType() != out {
					t.Fatalf("LayerNorm dtype %v, want %v", aff.DType(), out)
				}
				tol := 2e-6
				if out == tensor.BF16 {
					tol = 4e-3
					checkBF16(t, "LayerNorm", plain)
				}
				name := func(s string) string { return s + " d=" + itoa(d) + " " + in.String() + "->" + out.String() }
				checkClose(t, name("LayerNorm"), plain, refLayerNorm(f64(xv), nil, nil, d, 1e-6), tol)
				checkClose(t, name("LayerNorm affine"), be.Download(aff), refLayerNorm(f64(xv), f64(wv), f64(bv), d, 1e-6), tol)
			}
		}
	}
	be2 := New()
	x := be2.Upload(tensor.F32, []int{2, 4}, make([]float32, 8))
	expectFail(t, "LayerNorm weight", func() { be2.LayerNorm(x, be2.Upload(tensor.F32, []int{3}, make([]float32, 3)), nil, 1e-6, tensor.F32) }, "weight", "[3]", "[4]")
	expectFail(t, "LayerNorm out dtype", func() { be2.LayerNorm(x, nil, nil, 1e-6, tensor.I8) }, "int8")
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func TestRMSNorm(t *testing.T) {
	be := New()
	r := newRand(11)
	const eps = 1e-6
	for _, d := range []int{5, 256, 1536} {
		rows := 29
		xv, wv := randVals(r, rows*d, 1.5), randVals(r, d, 1)
		ref := func(mode backend.NormMode, dt tensor.DType) []float64 {
			y := make([]float64, rows*d)
			for i := 0; i < rows; i++ {
				var ss float64
				for _, a := range xv[i*d : (i+1)*d] {
					ss += float64(a) * float64(a)
				}
				rs := 1 / math.Sqrt(ss/float64(d)+eps)
				for j := 0; j < d; j++ {
					xh := float64(xv[i*d+j]) * rs
					if mode == backend.NormDefault {
						xh = roundRef(dt, []float64{xh})[0]
					}
					y[i*d+j] = xh * float64(wv[j])
				}
			}
			return y
		}
		t.Run("d"+itoa(d), func(t *testing.T) {
			both(t, func(t *testing.T, dt tensor.DType) {
				x := be.Upload(dt, []int{rows, d}, xv)
				w := be.Upload(tensor.F32, []int{d}, wv)
				for _, mode := range []backend.NormMode{backend.NormFast, backend.NormDefault} {
					got := be.Download(be.RMSNorm(x, w, eps, mode))
					want := ref(mode, dt)
					if dt == tensor.F32 {
						checkClose(t, "RMSNorm f32 d="+itoa(d), got, want, 1e-6)
						continue
					}
					// bf16: one rounding of a float32 value that is within a few
					// float32 ulps of want -> at most 1 bf16 ulp away, and mostly exact.
					checkBF16(t, "RMSNorm", got)
					if u := maxULPbf16(got, want); u > 1 {
						t.Errorf("RMSNorm mode %d d=%d: %.2f bf16 ulps from reference", mode, d, u)
					}
					exact := 0
					rw := roundRef(dt, want)
					for i := range got {
						if float64(got[i]) == rw[i] {
							exact++
						}
					}
					if float64(exact) < 0.99*float64(len(got)) {
						t.Errorf("RMSNorm mode %d d=%d: only %d/%d equal to the rounded reference", mode, d, exact, len(got))
					}
				}
				// the two modes must differ for bf16 (double rounding)
				if dt == tensor.BF16 && relErr(be.Download(be.RMSNorm(x, w, eps, backend.NormFast)), f64(be.Download(be.RMSNorm(x, w, eps, backend.NormDefault)))) == 0 {
					t.Errorf("NormFast and NormDefault agree exactly for bf16 d=%d; expected double-rounding differences", d)
				}
			})
		})
	}
	x := be.Upload(tensor.BF16, []int{2, 4}, make([]float32, 8))
	expectFail(t, "RMSNorm weight", func() { be.RMSNorm(x, be.Upload(tensor.F32, []int{5}, make([]float32, 5)), eps, backend.NormFast) }, "[5]", "[4]")
}
