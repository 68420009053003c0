package quant

import (
	"math"
	"testing"
)

func TestRoundE4M3(t *testing.T) {
	for _, c := range []struct{ x, want float32 }{
		{0, 0}, {1, 1}, {448, 448}, {449, 448}, {1e6, 448}, {-500, -448},
		{1.0625, 1},            // halfway 1 | 1.125: the even mantissa
		{1.1875, 1.25},         // halfway 1.125 | 1.25
		{240, 240}, {248, 256}, // 1.875·2^7 exact; halfway 240 | 256 goes to the even 256
		{0.001953125, 0.001953125}, // 2^-9, the smallest subnormal
		{0.0009765625, 0},          // 2^-10: halfway 0 | 2^-9, even is 0
		{0.0029296875, 0.00390625}, // 1.5·2^-9: halfway 2^-9 | 2^-8, even is 2·2^-9
		{0.015625, 0.015625},       // 2^-6, the smallest normal
		{-3.3, -3.25},
	} {
		if got := RoundE4M3(c.x); got != c.want {
			t.Errorf("RoundE4M3(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if v := RoundE4M3(float32(math.NaN())); v == v {
		t.Errorf("RoundE4M3(NaN) = %g", v)
	}
}

// Every finite code decodes to an e4m3 value that encodes back to it, and
// the 126 positive finite values are strictly increasing.
func TestE4M3Codes(t *testing.T) {
	prev := float32(-1)
	for b := 0; b < 256; b++ {
		v := DecodeE4M3(uint8(b))
		if b&0x7f == 0x7f {
			if v == v {
				t.Errorf("code %#x decodes to %g, want NaN", b, v)
			}
			continue
		}
		if RoundE4M3(v) != v {
			t.Errorf("code %#x decodes to %g, which RoundE4M3 moves", b, v)
		}
		if e := EncodeE4M3(v); e != uint8(b) && !(v == 0 && b == 0x80) {
			t.Errorf("code %#x -> %g -> %#x", b, v, e)
		}
		if b < 0x7f {
			if v <= prev {
				t.Errorf("code %#x = %g not above the previous %g", b, v, prev)
			}
			prev = v
		}
	}
	if DecodeE4M3(0x7e) != 448 {
		t.Errorf("largest finite code %g, want 448", DecodeE4M3(0x7e))
	}
}

// QuantizeFP8: each tile's largest |x| codes to ±448 and every value
// dequantises to within half an e4m3 step of x; GEMMFP8 equals the float64
// product of the dequantised matrices up to its float32 roundings.
func TestFP8GEMM(t *testing.T) {
	const m, n, k = 130, 129, 256
	x, w := make([]float32, m*k), make([]float32, n*k)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.37) * math.Exp(math.Cos(float64(i))))
	}
	for i := range w {
		w[i] = float32(math.Cos(float64(i) * 0.11))
	}
	xq, sx, err := QuantizeFP8(x, m, k)
	if err != nil {
		t.Fatal(err)
	}
	wq, sw, _ := QuantizeFP8(w, n, k)
	dq := func(q []uint8, s []float32, v []float32, rows, cols int) []float64 {
		out := make([]float64, len(q))
		top := 0
		for r := range rows {
			for c := range cols {
				sc := float64(s[(r/Block)*(cols/Block)+c/Block])
				out[r*cols+c] = float64(DecodeE4M3(q[r*cols+c])) * sc
				// half a step: 2^-4 of the value, or 2^-10 of 448·scale's unit below 2^-6
				if d, lim := math.Abs(out[r*cols+c]-float64(v[r*cols+c])), math.Max(math.Abs(float64(v[r*cols+c]))/16, sc/1024)*1.0001; d > lim {
					t.Fatalf("[%d, %d] = %g dequantises to %g", r, c, v[r*cols+c], out[r*cols+c])
				}
				if q[r*cols+c]&0x7f == 0x7e {
					top++
				}
			}
		}
		if want := ((rows + Block - 1) / Block) * (cols / Block); top < want {
			t.Errorf("%d codes at ±448, want at least one in each of the %d tiles", top, want)
		}
		return out
	}
	xd, wd := dq(xq, sx, x, m, k), dq(wq, sw, w, n, k)
	y, err := GEMMFP8(xq, sx, Block, wq, sw, m, n, k)
	if err != nil {
		t.Fatal(err)
	}
	var num, den float64
	for r := range m {
		for j := range n {
			var e float64
			for i := range k {
				e += xd[r*k+i] * wd[j*k+i]
			}
			num += (float64(y[r*n+j]) - e) * (float64(y[r*n+j]) - e)
			den += e * e
		}
	}
	if rel := math.Sqrt(num / den); !(rel <= 1e-6) { // NaN fails too
		t.Errorf("GEMMFP8 vs the product of the dequantised matrices: rel-L2 %.3g, want float32 rounding only", rel)
	}
}
