package sla

import "github.com/turbodiffusion-go/turbodiffusion/internal/vec"

// MatMul computes C = A·Bᵀ for row-major A [m, k] (row stride lda),
// B [n, k] (row stride ldb) and C [m, n] (row stride ldc), overwriting C,
// with float32 accumulation in any order. SLA's GEMM-shaped steps (Q·Kᵀ,
// P·V, Kfᵀ·V, Qf·KV, proj_l) run through it, so a backend can plug in its
// SIMD kernel (Config.MatMul); nil selects a portable scalar loop.
type MatMul func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int)

// scalarMatMul is the portable MatMul.
func scalarMatMul(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		for j := range cr {
			cr[j] = vec.Dot(ar, b[j*ldb:j*ldb+k])
		}
	}
}

// transpose returns x [rows, cols] as [cols, rows].
func transpose(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	const tile = 32
	for r0 := 0; r0 < rows; r0 += tile {
		for c0 := 0; c0 < cols; c0 += tile {
			for r := r0; r < min(r0+tile, rows); r++ {
				for c := c0; c < min(c0+tile, cols); c++ {
					out[c*rows+r] = x[r*cols+c]
				}
			}
		}
	}
	return out
}
