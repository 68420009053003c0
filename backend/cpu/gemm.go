package cpu

import "runtime"

// Gemm computes C = A·Bᵀ (+ bias) in float32 for row-major A [m,k] (row
// stride lda), B [n,k] (stride ldb) and C [m,n] (stride ldc), overwriting C.
// bias, when non-nil, has n entries added to every row. It uses every core.
// This is the layout of a Linear layer (B = weight [out, in]); convolutions
// call it as an implicit GEMM.
func Gemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	(&Backend{threads: runtime.GOMAXPROCS(0)}).gemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
}

func (be *Backend) gemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	if m == 0 || n == 0 {
		return
	}
	be.parallelFor(m, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ar := a[i*lda : i*lda+k]
			cr := c[i*ldc : i*ldc+n]
			for j := range cr {
				s := dotF32(ar, b[j*ldb:j*ldb+k])
				if bias != nil {
					s += bias[j]
				}
				cr[j] = s
			}
		}
	})
}

// dotF32 is a float32 dot product with four partial sums.
func dotF32(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}
