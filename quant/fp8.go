package quant

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
)

// FP8 (e4m3, OCP "E4M3FN": 4 exponent bits, bias 7, 3 mantissa bits, no
// infinities, ±448 the largest finite values) with the int8 scheme's
// 128×128 tile scales: the candidate for a Hopper FP8 linear (issue 13),
// whose wgmma accumulates in float32 and so needs no int→float conversion
// in the per-k-block fold. TurboDiffusion has no FP8 rule; this one mirrors
// Quantize: amax = max(1e-8, max|x|), code = e4m3(x·(448/amax)) rounded to
// nearest even and saturated, scale = amax/448. GEMMFP8 is an idealised
// tensor core: each 128-wide k block's dot product exact, rounded once to
// float32, folded as in GEMM.

// E4M3Max is the largest finite e4m3 value.
const E4M3Max = 448

// RoundE4M3 returns the e4m3 value nearest to x (ties to even), saturated
// to ±448; NaN stays NaN.
func RoundE4M3(x float32) float32 {
	a := math.Abs(float64(x))
	switch {
	case a != a:
		return x
	case a >= E4M3Max:
		return float32(math.Copysign(E4M3Max, float64(x)))
	case a == 0:
		return x
	}
	_, exp := math.Frexp(a) // a = f·2^exp, f in [0.5, 1)
	e := max(exp-1, -6)     // below 2^-6 the spacing stays 2^-9 (subnormals)
	q := math.Ldexp(1, e-3)
	return float32(math.Copysign(math.RoundToEven(a/q)*q, float64(x)))
}

// EncodeE4M3 returns the bit pattern of v, which must be an e4m3 value
// (RoundE4M3's result); NaN encodes as 0x7f.
func EncodeE4M3(v float32) uint8 {
	var s uint8
	if math.Signbit(float64(v)) {
		s = 0x80
	}
	a := math.Abs(float64(v))
	switch {
	case a != a:
		return 0x7f
	case a == 0:
		return s
	case a < 1.0/64: // subnormal: m·2^-9
		return s | uint8(a*512)
	}
	_, exp := math.Frexp(a)
	e := exp - 1
	m := uint8((a/math.Ldexp(1, e) - 1) * 8)
	return s | uint8(e+7)<<3 | m
}

// DecodeE4M3 returns the value of an e4m3 bit pattern.
func DecodeE4M3(b uint8) float32 {
	e, m := int(b>>3)&15, float64(b&7)
	var v float64
	switch {
	case e == 15 && m == 7:
		return float32(math.NaN())
	case e == 0:
		v = m * math.Ldexp(1, -9)
	default:
		v = (1 + m/8) * math.Ldexp(1, e-7)
	}
	if b&0x80 != 0 {
		v = -v
	}
	return float32(v)
}

// QuantizeFP8 quantises the row-major [m, n] matrix x per 128×128 tile to
// e4m3 codes (bit patterns) and scales [ceil(m/128), ceil(n/128)].
func QuantizeFP8(x []float32, m, n int) ([]uint8, []float32, error) {
	return QuantizeFP8Tiles(x, m, n, Block)
}

// QuantizeFP8Tiles is QuantizeFP8 with tiles of rows×128 (rows = 1: one
// scale per row and 128 columns, DeepGEMM's activation layout); scales
// [ceil(m/rows), ceil(n/128)].
func QuantizeFP8Tiles(x []float32, m, n, rows int) ([]uint8, []float32, error) {
	if m < 0 || n < 0 || len(x) != m*n || rows <= 0 {
		return nil, nil, fmt.Errorf("quant: QuantizeFP8: %d values do not form a [%d, %d] matrix of %d-row tiles", len(x), m, n, rows)
	}
	sr, sc := ceilDiv(m, rows), ceilDiv(n, Block)
	q := make([]uint8, m*n)
	s := make([]float32, sr*sc)
	parallel.For(sr, func(lo, hi int) {
		for bi := lo; bi < hi; bi++ {
			r0, r1 := bi*rows, min(bi*rows+rows, m)
			for bj := 0; bj < sc; bj++ {
				c0, c1 := bj*Block, min(bj*Block+Block, n)
				amax := amaxFloor
				for r := r0; r < r1; r++ {
					for _, v := range x[r*n+c0 : r*n+c1] {
						amax = max(amax, float32(math.Abs(float64(v))))
					}
				}
				f := float32(E4M3Max) / amax
				for r := r0; r < r1; r++ {
					for c := c0; c < c1; c++ {
						q[r*n+c] = EncodeE4M3(RoundE4M3(x[r*n+c] * f))
					}
				}
				s[bi*sc+bj] = amax / E4M3Max
			}
		}
	})
	return q, s, nil
}

// GEMMFP8 is GEMM for e4m3 codes: Y[m, n] = X·Wᵀ with xq [m, k], wq [n, k]
// and their tile scales (xRows rows of X per scale: 128, or 1 for
// QuantizeFP8Tiles(.., 1)); per 128-wide k block the exact dot product of
// the decoded values is rounded to float32 and folded as
// acc = fma(dot, sx·sw, acc) in ascending k-block order.
func GEMMFP8(xq []uint8, sx []float32, xRows int, wq []uint8, sw []float32, m, n, k int) ([]float32, error) {
	if k <= 0 || k%Block != 0 || len(xq) != m*k || len(wq) != n*k || xRows <= 0 ||
		len(sx) != ceilDiv(m, xRows)*(k/Block) || len(sw) != ceilDiv(n, Block)*(k/Block) {
		return nil, fmt.Errorf("quant: GEMMFP8: shapes do not match [%d, %d]·[%d, %d]ᵀ with 128-blocks", m, k, n, k)
	}
	var lut [256]float64
	for i := range lut {
		lut[i] = float64(DecodeE4M3(uint8(i)))
	}
	kb := k / Block
	y := make([]float32, m*n)
	parallel.For(m, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := xq[r*k : r*k+k]
			for j := range n {
				wr := wq[j*k : j*k+k]
				var acc float32
				for b := range kb {
					var d float64 // exact: 128 products of 4-bit-mantissa values
					for i := b * Block; i < b*Block+Block; i++ {
						d += lut[xr[i]] * lut[wr[i]]
					}
					acc = FMA32(float32(d), sx[(r/xRows)*kb+b]*sw[(j/Block)*kb+b], acc)
				}
				y[r*n+j] = acc
			}
		}
	})
	return y, nil
}
