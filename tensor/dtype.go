// Package tensor holds the element types the engine stores and the exact
// conversions between them (bf16 and fp16 with round-to-nearest-even, fp8
// e4m3 with saturation), shared by checkpoint readers and every backend.
package tensor

import (
	"fmt"
	"math"
)

// DType is the storage type of a tensor's elements.
type DType int

const (
	Invalid DType = iota
	F32
	BF16
	F16
	F64
	F8E4M3
	I8
	U8
	I16
	I32
	I64
	Bool
)

var dtypeNames = map[DType]string{
	F32: "float32", BF16: "bfloat16", F16: "float16", F64: "float64", F8E4M3: "float8_e4m3fn",
	I8: "int8", U8: "uint8", I16: "int16", I32: "int32", I64: "int64", Bool: "bool",
}

func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Size is the number of bytes one element occupies.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case BF16, F16, I16:
		return 2
	case F8E4M3, I8, U8, Bool:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	switch d {
	case F32, BF16, F16, F64, F8E4M3:
		return true
	}
	return false
}

// NumElements is the product of shape; 1 for a scalar (empty shape).
func NumElements(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// BF16FromF32 rounds f to the nearest bfloat16 (ties to even), as torch's
// .to(torch.bfloat16) does; NaN stays NaN.
func BF16FromF32(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and non-zero
		return uint16(u>>16) | 0x40
	}
	rounding := uint32(0x7fff) + (u>>16)&1
	return uint16((u + rounding) >> 16)
}

// F32FromBF16 widens a bfloat16 bit pattern exactly.
func F32FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// RoundBF16 returns f rounded to bfloat16 precision, as a float32.
func RoundBF16(f float32) float32 { return F32FromBF16(BF16FromF32(f)) }

// RoundBF16Slice rounds every element of x to bfloat16 precision in place.
func RoundBF16Slice(x []float32) {
	for i, v := range x {
		x[i] = RoundBF16(v)
	}
}

// F32FromF16 widens an IEEE half-precision bit pattern exactly.
func F32FromF16(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: value = mant * 2^-24
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// F16FromF32 rounds f to the nearest IEEE half (ties to even), saturating to ±Inf.
func F16FromF32(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000:
		return sign | 0x7e00
	case a >= 0x477ff000: // rounds to >= 65520 -> inf
		return sign | 0x7c00
	case a < 0x38800000: // subnormal or zero in half
		// value / 2^-24 rounded to nearest even integer
		v := float64(math.Float32frombits(a)) * (1 << 24)
		r := math.RoundToEven(v)
		return sign | uint16(r)
	}
	// normal: rebias exponent and round mantissa from 23 to 10 bits
	rounding := uint32(0xfff) + (a>>13)&1
	a += rounding
	return sign | uint16((a>>13)-(112<<10))
}

// F32FromE4M3 widens a float8 e4m3fn bit pattern (no infinities; 0x7f/0xff are NaN).
func F32FromE4M3(b uint8) float32 {
	sign := float32(1)
	if b&0x80 != 0 {
		sign = -1
	}
	exp := int(b>>3) & 0xf
	mant := int(b) & 7
	if exp == 0xf && mant == 7 {
		return float32(math.NaN())
	}
	if exp == 0 {
		return sign * float32(mant) * (1.0 / 512) // mant/8 * 2^-6
	}
	return sign * float32(math.Ldexp(1+float64(mant)/8, exp-7))
}

// E4M3FromF32 rounds f to the nearest float8 e4m3fn value (ties to even) and
// saturates to ±448, as CUDA's __nv_cvt_float_to_fp8(..., __NV_SATFINITE, __NV_E4M3).
func E4M3FromF32(f float32) uint8 {
	if f != f {
		return 0x7f
	}
	var sign uint8
	if math.Signbit(float64(f)) {
		sign = 0x80
		f = -f
	}
	if f >= 448 {
		return sign | 0x7e
	}
	// Find the spacing of representable values around f.
	v := float64(f)
	if v < math.Ldexp(1, -6) { // subnormal range: step 2^-9
		q := math.RoundToEven(v * 512)
		if q >= 8 { // rounds up into the first normal
			return sign | 0x08
		}
		return sign | uint8(q)
	}
	fr, e := math.Frexp(v) // v = fr * 2^e, fr in [0.5,1)
	exp := e - 1           // v = (2*fr) * 2^exp, 2*fr in [1,2)
	m := math.RoundToEven((2*fr - 1) * 8)
	if m == 8 {
		m = 0
		exp++
	}
	be := exp + 7
	if be > 15 || (be == 15 && m > 6) {
		return sign | 0x7e
	}
	return sign | uint8(be)<<3 | uint8(m)
}
