package quant

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// GEMM computes the float32 accumulators of Y[m, n] = X·Wᵀ from int8 codes
// xq [m, k], wq [n, k] and their tile scales sx [ceil(m/128), k/128],
// sw [ceil(n/128), k/128], exactly as the reference kernel: for each
// 128-wide k block in ascending order, an exact int32 dot product, then
// accf = fma(float(dot), sx·sw, accf) in float32 (sx·sw rounded first).
// k must be a multiple of 128 (the CUDA kernel silently skips other
// shapes; here it is an error). Rows of Y are computed in parallel.
func GEMM(xq []int8, sx []float32, wq []int8, sw []float32, m, n, k int) ([]float32, error) {
	if err := checkGEMM(xq, sx, wq, sw, m, n, k); err != nil {
		return nil, err
	}
	y := make([]float32, m*n)
	gemmInto(y, xq, sx, wq, sw, m, n, k)
	return y, nil
}

func checkGEMM(xq []int8, sx []float32, wq []int8, sw []float32, m, n, k int) error {
	if k <= 0 || k%Block != 0 {
		return fmt.Errorf("quant: int8 GEMM needs an inner dimension that is a positive multiple of %d, got %d", Block, k)
	}
	kb := k / Block
	switch {
	case len(xq) != m*k:
		return fmt.Errorf("quant: int8 GEMM: activation codes hold %d values, want [%d, %d]", len(xq), m, k)
	case len(wq) != n*k:
		return fmt.Errorf("quant: int8 GEMM: weight codes hold %d values, want [%d, %d]", len(wq), n, k)
	case len(sx) != ceilDiv(m, Block)*kb:
		return fmt.Errorf("quant: int8 GEMM: activation scales hold %d values, want [%d, %d]", len(sx), ceilDiv(m, Block), kb)
	case len(sw) != ceilDiv(n, Block)*kb:
		return fmt.Errorf("quant: int8 GEMM: weight scales hold %d values, want [%d, %d]", len(sw), ceilDiv(n, Block), kb)
	}
	return nil
}

// nTile is how many weight rows one pass keeps hot in cache.
const nTile = 16

func gemmInto(y []float32, xq []int8, sx []float32, wq []int8, sw []float32, m, n, k int) {
	kb := k / Block
	mBlocks := ceilDiv(m, Block)
	// Work unit: one 128-row block of X against all of W, in nTile slabs.
	parallel.For(mBlocks, func(lo, hi int) {
		prod := make([]float32, kb) // sx·sw per k block for the current (row block, col block)
		for bi := lo; bi < hi; bi++ {
			r0, r1 := bi*Block, min(bi*Block+Block, m)
			for n0 := 0; n0 < n; n0 += nTile {
				n1 := min(n0+nTile, n)
				for j := n0; j < n1; j++ {
					if j == n0 || j%Block == 0 {
						bj := j / Block
						for b := range kb {
							prod[b] = sx[bi*kb+b] * sw[bj*kb+b]
						}
					}
					wrow := wq[j*k : j*k+k]
					for r := r0; r < r1; r++ {
						xrow := xq[r*k : r*k+k]
						var acc float32
						for b := range kb {
							d := dot128(xrow[b*Block:b*Block+Block], wrow[b*Block:b*Block+Block])
							acc = FMA32(float32(d), prod[b], acc)
						}
						y[r*n+j] = acc
					}
				}
			}
		}
	})
}

// dot128 is the exact int32 dot product of two 128-element int8 vectors.
func dot128(a, b []int8) int32 {
	a, b = a[:Block], b[:Block]
	var s0, s1, s2, s3 int32
	for i := 0; i < Block; i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	return s0 + s1 + s2 + s3
}

// FMA32 returns a·b+c rounded once to float32 (IEEE fma), as the CUDA
// kernel's contracted multiply-add. Go has no float32 FMA; the product of
// two float32 values is exact in float64, and the float64 sum is corrected
// where rounding it to float32 would round twice.
func FMA32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24+24 bits
	cc := float64(c)
	s := p + cc
	// TwoSum: s + e == p + cc exactly.
	bv := s - p
	e := (p - (s - bv)) + (cc - bv)
	r := float32(s)
	if e == 0 || math.IsInf(s, 0) || math.IsNaN(s) {
		return r
	}
	rf := float64(r)
	if rf == s {
		return r // s is a float32; the true value rounds to it (|e| < half an ulp of s's float64)
	}
	// Only an s exactly halfway between two float32 values can be rounded
	// the wrong way: then the sign of e decides.
	var other float32
	if s > rf {
		other = math.Nextafter32(r, float32(math.Inf(1)))
	} else {
		other = math.Nextafter32(r, float32(math.Inf(-1)))
	}
	if s-rf != float64(other)-s {
		return r
	}
	up := e > 0
	if (float64(other) > rf) == up {
		return other
	}
	return r
}

// Linear is TurboDiffusion's Int8Linear forward for x [m, k] (float32
// values; bf16-exact when bf16out): quantise x per tile, run the GEMM
// against the int8 weight wq [n, k] with scales sw, round to the output
// dtype (bf16 when bf16out), then add bias [n] (nil for none) in that dtype.
func Linear(x []float32, m, k int, wq []int8, sw []float32, n int, bias []float32, bf16out bool) ([]float32, error) {
	if len(x) != m*k {
		return nil, fmt.Errorf("quant: Int8Linear: input holds %d values, want [%d, %d]", len(x), m, k)
	}
	if bias != nil && len(bias) != n {
		return nil, fmt.Errorf("quant: Int8Linear: bias has %d values, want %d", len(bias), n)
	}
	sr, sc := ScaleShape(m, k)
	xq := make([]int8, m*k)
	sx := make([]float32, sr*sc)
	if err := checkGEMM(xq, sx, wq, sw, m, n, k); err != nil {
		return nil, err
	}
	QuantizeInto(xq, sx, x, m, k)
	y := make([]float32, m*n)
	gemmInto(y, xq, sx, wq, sw, m, n, k)
	finish(y, n, bias, bf16out)
	return y, nil
}

// finish rounds the accumulators to the output dtype and adds the bias as a
// separate op in that dtype (the reference's `out + self.bias`).
func finish(y []float32, n int, bias []float32, bf16out bool) {
	if bf16out {
		tensor.RoundBF16Slice(y)
	}
	if bias == nil {
		return
	}
	for i := range y {
		v := y[i] + bias[i%n]
		if bf16out {
			v = tensor.RoundBF16(v)
		}
		y[i] = v
	}
}
