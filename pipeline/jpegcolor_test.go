package pipeline

import (
	"image"
	"math"
	"testing"
)

func TestLibjpegYCbCrToRGB(t *testing.T) {
	// Hand-computed with jdcolor.c's tables: R = 128 + ((91881·−28 + 2^15) >> 16) = 89,
	// G = 128 + ((−22554·12 + 2^15 + 46802·28) >> 16) = 144, B = 128 + ((116130·12 + 2^15) >> 16) = 149.
	if r, g, b := libjpegYCbCrToRGB(128, 140, 100); r != 89 || g != 144 || b != 149 {
		t.Errorf("(128,140,100) → (%d,%d,%d), want (89,144,149)", r, g, b)
	}
	if r, g, b := libjpegYCbCrToRGB(100, 200, 50); r != 0 || b != 228 || g != 131 {
		t.Errorf("(100,200,50) → (%d,%d,%d), want (0,131,228) with R clamped", r, g, b)
	}
	// Everywhere within one level of the exact JFIF formula.
	for y := 0; y < 256; y += 5 {
		for cb := 0; cb < 256; cb += 3 {
			for cr := 0; cr < 256; cr += 7 {
				r, g, b := libjpegYCbCrToRGB(uint8(y), uint8(cb), uint8(cr))
				fy, fcb, fcr := float64(y), float64(cb-128), float64(cr-128)
				want := []float64{fy + 1.402*fcr, fy - 0.34414*fcb - 0.71414*fcr, fy + 1.772*fcb}
				for i, v := range []uint8{r, g, b} {
					w := math.Min(math.Max(math.Round(want[i]), 0), 255)
					if math.Abs(float64(v)-w) > 1 {
						t.Fatalf("(%d,%d,%d) channel %d: %d, exact %g", y, cb, cr, i, v, want[i])
					}
				}
			}
		}
	}
}

func TestFancyUpsample(t *testing.T) {
	p := []uint8{0, 40, 80, 160, 200, 240} // 3×2 plane
	// h2v2 (4:2:0), hand-computed from jdsample.c's h2v2_fancy_upsample.
	want := [][]uint8{
		{0, 10, 30, 50, 70, 80},
		{40, 50, 70, 90, 110, 120},
		{120, 130, 150, 170, 190, 200},
		{160, 170, 190, 210, 230, 240},
	}
	got := fancyUpsample(p, 3, 2, 2, 2, 6, 4)
	for y := range want {
		for x := range want[y] {
			if got[y*6+x] != want[y][x] {
				t.Fatalf("h2v2 row %d: %v, want %v", y, got[y*6:(y+1)*6], want[y])
			}
		}
	}
	// An odd width drops the last column.
	odd := fancyUpsample(p, 3, 2, 2, 2, 5, 4)
	for y := range want {
		for x := 0; x < 5; x++ {
			if odd[y*5+x] != want[y][x] {
				t.Fatalf("h2v2 width 5, row %d: %v, want %v", y, odd[y*5:(y+1)*5], want[y][:5])
			}
		}
	}
	// h2v1 (4:2:2): first and last outputs copy, inner (3·near + far + 1|2) >> 2.
	h2v1 := fancyUpsample(p[:3], 3, 1, 2, 1, 6, 1)
	for i, w := range []uint8{0, 10, 30, 50, 70, 80} {
		if h2v1[i] != w {
			t.Fatalf("h2v1: %v, want [0 10 30 50 70 80]", h2v1)
		}
	}
	// h1v2 (4:4:0): (3·near + far + 1 above | 2 below) >> 2.
	h1v2 := fancyUpsample([]uint8{0, 40}, 1, 2, 1, 2, 1, 4)
	for i, w := range []uint8{0, 10, 30, 40} {
		if h1v2[i] != w {
			t.Fatalf("h1v2: %v, want [0 10 30 40]", h1v2)
		}
	}
}

// A 4:2:0 image whose decoder planes carry MCU padding: only the real
// chroma columns are read, and every pixel is the libjpeg conversion of Y
// and the fancy-upsampled chroma.
func TestYCbCrToRGBPlanes(t *testing.T) {
	full := image.NewYCbCr(image.Rect(0, 0, 16, 16), image.YCbCrSubsampleRatio420)
	for i := range full.Y {
		full.Y[i] = uint8(60 + i%97)
	}
	for i := range full.Cb {
		full.Cb[i], full.Cr[i] = 255, 0 // padding unless overwritten below
	}
	cb := []uint8{0, 40, 80, 160, 200, 240}
	cr := []uint8{128, 100, 90, 140, 150, 120}
	for r := 0; r < 2; r++ {
		for c := 0; c < 3; c++ {
			full.Cb[r*full.CStride+c], full.Cr[r*full.CStride+c] = cb[r*3+c], cr[r*3+c]
		}
	}
	m := full.SubImage(image.Rect(0, 0, 5, 4)).(*image.YCbCr)
	got := ycbcrToRGB(m)
	ucb, ucr := fancyUpsample(cb, 3, 2, 2, 2, 5, 4), fancyUpsample(cr, 3, 2, 2, 2, 5, 4)
	for y := 0; y < 4; y++ {
		for x := 0; x < 5; x++ {
			r, g, b := libjpegYCbCrToRGB(m.Y[m.YOffset(x, y)], ucb[y*5+x], ucr[y*5+x])
			i := 3 * (y*5 + x)
			if got.Pix[i] != r || got.Pix[i+1] != g || got.Pix[i+2] != b {
				t.Fatalf("pixel (%d,%d): %v, want %v", x, y, got.Pix[i:i+3], []uint8{r, g, b})
			}
		}
	}
	// 4:1:1 has no fancy path: chroma is replicated.
	m411 := image.NewYCbCr(image.Rect(0, 0, 8, 1), image.YCbCrSubsampleRatio411)
	m411.Cb[0], m411.Cb[1] = 0, 255
	rgb := ycbcrToRGB(m411)
	if rgb.Pix[3*3+2] != rgb.Pix[2] || rgb.Pix[3*4+2] == rgb.Pix[2] {
		t.Errorf("4:1:1 blue channel %v: want pixels 0-3 equal and pixel 4 different", []uint8{rgb.Pix[2], rgb.Pix[11], rgb.Pix[14]})
	}
}
