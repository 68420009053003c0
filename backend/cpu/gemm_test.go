package cpu

import (
	"fmt"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// refGemm is C = A·Bᵀ + bias in float64.
func refGemm(m, n, k int, a []float32, lda int, b []float32, ldb int, bias []float32) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(a[i*lda+p]) * float64(b[j*ldb+p])
			}
			if bias != nil {
				s += float64(bias[j])
			}
			c[i*n+j] = s
		}
	}
	return c
}

func TestGemmShapes(t *testing.T) {
	forEachKernel(t, testGemmShapes)
}

func testGemmShapes(t *testing.T) {
	r := newRand(40)
	for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 64, 64}, {129, 70, 300}, {5, 300, 1030}, {200, 9, 1}, {1, 257, 513}, {70, 1100, 40}, {150, 2, 600}} {
		m, n, k := s[0], s[1], s[2]
		for _, withBias := range []bool{false, true} {
			lda, ldb, ldc := k+3, k+1, n+2 // strided views
			a, b := randVals(r, m*lda, 1), randVals(r, n*ldb, 1)
			var bias []float32
			if withBias {
				bias = randVals(r, n, 1)
			}
			c := make([]float32, m*ldc)
			for i := range c {
				c[i] = 99 // must be overwritten inside, kept outside
			}
			Gemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
			got := make([]float32, 0, m*n)
			for i := 0; i < m; i++ {
				got = append(got, c[i*ldc:i*ldc+n]...)
				for j := n; j < ldc; j++ {
					if c[i*ldc+j] != 99 {
						t.Fatalf("Gemm %v wrote outside C at row %d col %d", s, i, j)
					}
				}
			}
			checkClose(t, fmt.Sprintf("Gemm %dx%dx%d bias=%v", m, n, k, withBias), got, refGemm(m, n, k, a, lda, b, ldb, bias), 1e-6)
		}
	}
}

func TestLinear(t *testing.T) {
	be := New()
	r := newRand(41)
	const k, n = 96, 50
	xv, wv, bv := randVals(r, 2*7*k, 1), randVals(r, n*k, 0.1), randVals(r, n, 1)
	want := refGemm(14, n, k, xv, k, wv, k, bv)
	both(t, func(t *testing.T, dt tensor.DType) {
		y := be.Linear(be.Upload(dt, []int{2, 7, k}, xv), be.Upload(tensor.BF16, []int{n, k}, wv), be.Upload(tensor.BF16, []int{n}, bv))
		if s := y.Shape(); len(s) != 3 || s[0] != 2 || s[1] != 7 || s[2] != n || y.DType() != dt {
			t.Fatalf("Linear gives %v %v", y.DType(), s)
		}
		got := be.Download(y)
		if dt == tensor.F32 {
			checkClose(t, "Linear f32", got, want, 1e-6)
			return
		}
		checkBF16(t, "Linear", got)
		if u := maxULPbf16(got, want); u > 1 {
			t.Errorf("Linear bf16: %.2f ulps from the exact sum (want one rounding)", u)
		}
	})
	noBias := be.Download(be.Linear(be.Upload(tensor.F32, []int{14, k}, xv), be.Upload(tensor.F32, []int{n, k}, wv), nil))
	checkClose(t, "Linear no bias", noBias, refGemm(14, n, k, xv, k, wv, k, nil), 1e-6)

	x := be.Upload(tensor.F32, []int{3, k}, xv[:3*k])
	expectFail(t, "Linear K", func() { be.Linear(x, be.Upload(tensor.F32, []int{n, k - 1}, wv[:n*(k-1)]), nil) }, "K=96", "K=95")
	expectFail(t, "Linear bias", func() {
		be.Linear(x, be.Upload(tensor.F32, []int{n, k}, wv), be.Upload(tensor.F32, []int{n + 1}, make([]float32, n+1)))
	}, "bias", "[51]")
}

func BenchmarkGemm(b *testing.B) {
	for _, s := range [][3]int{{1024, 1024, 1024}, {1000, 1000, 1000}, {1280, 256, 1024}, {1280, 1536, 1536}, {1280, 8960, 1536}} {
		m, n, k := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(b *testing.B) {
			r := newRand(1)
			a, w, c := randVals(r, m*k, 1), randVals(r, n*k, 1), make([]float32, m*n)
			b.ResetTimer()
			cpu0 := processCPUSeconds()
			for b.Loop() {
				Gemm(m, n, k, a, k, w, k, c, n, nil)
			}
			reportFlops(b, 2*float64(m)*float64(n)*float64(k), cpu0)
		})
	}
}

func TestGemmErrors(t *testing.T) {
	a := make([]float32, 12)
	expectFail(t, "Gemm A too short", func() { Gemm(4, 2, 4, a[:10], 4, a, 4, a, 2, nil) }, "A of 4x4", "10")
	expectFail(t, "Gemm C stride", func() { Gemm(2, 3, 2, a, 2, a, 2, a, 2, nil) }, "C of 2x3 with stride 2")
	expectFail(t, "Gemm bias", func() { Gemm(2, 3, 2, a, 2, a, 2, a, 3, a[:2]) }, "bias has 2")
}

// reportFlops reports GFLOP/s per wall second and per CPU-second (the
// latter counts all threads, so it is per core when the machine is busy).
func reportFlops(b *testing.B, flopsPerOp, cpu0 float64) {
	total := flopsPerOp * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := processCPUSeconds() - cpu0; cpu0 > 0 && cpu > 0 {
		b.ReportMetric(total/cpu/1e9, "GFLOP/cpu-s")
	}
}

// Random shapes and strides, every kernel against the float64 reference;
// several GEMMs run concurrently to exercise the shared packing pools.
func TestGemmRandomShapes(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := newRand(42)
		errs := make(chan string, 64)
		done := make(chan struct{})
		const jobs = 24
		for job := 0; job < jobs; job++ {
			m, n, k := 1+r.IntN(150), 1+r.IntN(300), 1+r.IntN(600)
			lda, ldb, ldc := k+r.IntN(3), k+r.IntN(3), n+r.IntN(3)
			a, b := randVals(r, m*lda, 1), randVals(r, n*ldb, 1)
			var bias []float32
			if r.IntN(2) == 0 {
				bias = randVals(r, n, 1)
			}
			go func() {
				defer func() { done <- struct{}{} }()
				c := make([]float32, (m-1)*ldc+n)
				Gemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
				got := make([]float32, 0, m*n)
				for i := 0; i < m; i++ {
					got = append(got, c[i*ldc:i*ldc+n]...)
				}
				if e := relErr(got, refGemm(m, n, k, a, lda, b, ldb, bias)); !(e <= 1e-6) { // NaN fails too
					errs <- fmt.Sprintf("%dx%dx%d (ld %d %d %d): rel_l2 %.2e", m, n, k, lda, ldb, ldc, e)
				}
			}()
		}
		for job := 0; job < jobs; job++ {
			<-done
		}
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}
