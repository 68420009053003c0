// Package quant is TurboDiffusion's W8A8 int8 scheme (docs/NUMERICS.md §5): the
// per-128x128-tile quantiser used for both weights and activations, and the
// int8 GEMM whose float32 accumulation order the reference kernel fixes, so
// that a pure-Go Int8Linear reproduces the CUDA layer bit for bit.
package quant

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
)

// Block is the tile edge of the quantiser and the k-block of the GEMM.
const Block = 128

// amaxFloor is the kernel's initial amax: an all-zero tile gets a tiny, not
// a zero, scale (so 128/amax stays finite).
const amaxFloor = float32(1e-8)

// ScaleShape is the shape of the scale matrix of an [m, n] matrix.
func ScaleShape(m, n int) (rows, cols int) { return ceilDiv(m, Block), ceilDiv(n, Block) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// Quantize quantises the row-major [m, n] matrix x per 128x128 tile:
// amax = max(1e-8, max|x|), code = round-half-even(x·(128/amax)) saturated
// to [-128, 127], scale = amax/128. It returns the codes [m, n] and the
// scales [ceil(m/128), ceil(n/128)].
//
// The reference computes 128/amax with CUDA's fast-math approximate
// division; this uses the IEEE quotient, which agrees except that a code
// whose x·128/amax lies within about one float32 ulp of a .5 boundary may
// come out one step lower or higher (the golden set documents one such
// entry). Scales are unaffected.
func Quantize(x []float32, m, n int) ([]int8, []float32, error) {
	if m < 0 || n < 0 || len(x) != m*n {
		return nil, nil, fmt.Errorf("quant: Quantize: %d values do not form a [%d, %d] matrix", len(x), m, n)
	}
	sr, sc := ScaleShape(m, n)
	q := make([]int8, m*n)
	s := make([]float32, sr*sc)
	QuantizeInto(q, s, x, m, n)
	return q, s, nil
}

// QuantizeInto is Quantize into caller-provided q [m*n] and s [ceil(m/128)*ceil(n/128)].
// Tile rows are processed in parallel.
func QuantizeInto(q []int8, s []float32, x []float32, m, n int) {
	sr, sc := ScaleShape(m, n)
	parallel.For(sr, func(lo, hi int) {
		for bi := lo; bi < hi; bi++ {
			r0, r1 := bi*Block, min(bi*Block+Block, m)
			for bj := 0; bj < sc; bj++ {
				c0, c1 := bj*Block, min(bj*Block+Block, n)
				amax := amaxFloor
				for r := r0; r < r1; r++ {
					for _, v := range x[r*n+c0 : r*n+c1] {
						amax = max(amax, float32(math.Abs(float64(v))))
					}
				}
				f := float32(128) / amax
				for r := r0; r < r1; r++ {
					row := x[r*n+c0 : r*n+c1]
					out := q[r*n+c0 : r*n+c1]
					for i, v := range row {
						out[i] = Code(v, f)
					}
				}
				s[bi*sc+bj] = amax * (1.0 / 128)
			}
		}
	})
}

// Code is the kernel's cvt.rni.sat.s8 of x·f: the float32 product rounded
// half to even and saturated to [-128, 127].
func Code(x, f float32) int8 {
	p := float64(float32(x * f)) // float32 product; the conversion forbids fusion
	r := math.RoundToEven(p)
	switch {
	case r >= 127:
		return 127
	case r <= -128:
		return -128
	case r != r: // NaN converts to 0 in cvt.rni.sat
		return 0
	}
	return int8(r)
}
