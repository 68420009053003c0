package tensor

import (
	"math"
	"math/rand"
	"testing"
)

func TestBF16RoundTripAndRounding(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F32FromBF16(uint16(h))
		if f != f {
			continue
		}
		if got := BF16FromF32(f); got != uint16(h) {
			t.Fatalf("bf16 %#04x -> %v -> %#04x", h, f, got)
		}
	}
	// Ties go to even: 1 + 2^-8 is halfway between 1 and 1+2^-7.
	if got := RoundBF16(1 + 1.0/256); got != 1 {
		t.Errorf("RoundBF16(1+2^-8) = %v, want 1 (tie to even)", got)
	}
	if got := RoundBF16(1 + 3.0/256); got != 1+4.0/256 {
		t.Errorf("RoundBF16(1+3*2^-8) = %v, want 1+2^-6", got)
	}
	if !math.IsNaN(float64(RoundBF16(float32(math.NaN())))) {
		t.Error("NaN must stay NaN")
	}
}

func TestF16RoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F32FromF16(uint16(h))
		if f != f {
			continue
		}
		if got := F16FromF32(f); got != uint16(h) && !(f == 0 && got&0x7fff == 0) {
			t.Fatalf("f16 %#04x -> %v -> %#04x", h, f, got)
		}
	}
	// Random values: the result must be the nearest half.
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		f := float32(r.NormFloat64() * math.Pow(10, float64(r.Intn(9)-5)))
		h := F16FromF32(f)
		got := F32FromF16(h)
		for _, n := range []uint16{h - 1, h + 1} {
			alt := F32FromF16(n)
			if alt == alt && math.Abs(float64(alt-f)) < math.Abs(float64(got-f)) {
				t.Fatalf("F16FromF32(%v) = %v, but %v is nearer", f, got, alt)
			}
		}
	}
}

func TestE4M3(t *testing.T) {
	for b := 0; b < 256; b++ {
		f := F32FromE4M3(uint8(b))
		if f != f {
			continue
		}
		if got := E4M3FromF32(f); got != uint8(b) && !(f == 0 && got&0x7f == 0) {
			t.Fatalf("e4m3 %#02x -> %v -> %#02x", b, f, got)
		}
	}
	cases := []struct {
		in   float32
		want float32
	}{
		{448, 448}, {1000, 448}, {-1000, -448}, {464, 448}, // saturate, never NaN
		{1.0625, 1}, // tie between 1 and 1.125 -> even mantissa (1)
		{1.1875, 1.25},
		{0.0009765625, 0},          // 2^-10: tie between 0 and 2^-9 -> 0
		{0.0029296875, 0.00390625}, // 1.5*2^-9 -> tie -> 2*2^-9
		{0.0146484375, 0.015625},   // just below 2^-6: rounds to the first normal
	}
	for _, c := range cases {
		if got := F32FromE4M3(E4M3FromF32(c.in)); got != c.want {
			t.Errorf("e4m3(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestSizes(t *testing.T) {
	if BF16.Size() != 2 || F32.Size() != 4 || I8.Size() != 1 || I64.Size() != 8 || F8E4M3.Size() != 1 {
		t.Fatal("wrong dtype sizes")
	}
	if NumElements([]int{2, 3, 4}) != 24 || NumElements(nil) != 1 {
		t.Fatal("NumElements")
	}
}
