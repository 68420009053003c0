package pipeline

import (
	"math"
	"math/rand"
	"testing"
)

// rowImage is a 1-pixel-high image whose R, G, B rows are given.
func rowImage(r, g, b []uint8) *RGB {
	img := &RGB{W: len(r), H: 1, Pix: make([]uint8, 3*len(r))}
	for i := range r {
		img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2] = r[i], g[i], b[i]
	}
	return img
}

func channel(img *RGB, c int) []uint8 {
	out := make([]uint8, img.W*img.H)
	for i := range out {
		out[i] = img.Pix[3*i+c]
	}
	return out
}

func TestResizeIdentityCopies(t *testing.T) {
	src := randomRGB(rand.New(rand.NewSource(1)), 7, 5)
	out, err := Resize(src, 7, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := range src.Pix {
		if out.Pix[i] != src.Pix[i] {
			t.Fatalf("byte %d: %d, want %d (same size must copy)", i, out.Pix[i], src.Pix[i])
		}
	}
	out.Pix[0]++
	if out.Pix[0] == src.Pix[0] {
		t.Fatal("the result shares the source's pixels")
	}
}

// Hand-computed cases of the antialiased triangle filter.
func TestResizeHandCases(t *testing.T) {
	// 2× down: support 2, output 0 centred at 1.0 takes inputs 0..2 with
	// triangle weights (0.75, 0.75, 0.25)/1.75 = (3, 3, 1)/7; output 1
	// centred at 3.0 takes 1..3 with (1, 3, 3)/7.
	src := rowImage([]uint8{0, 70, 140, 210}, []uint8{7, 7, 7, 7}, []uint8{255, 0, 255, 0})
	out, err := Resize(src, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]uint8{
		{50, 160}, // (0·3+70·3+140)/7, (70+140·3+210·3)/7
		{7, 7},
		{146, 109}, // 255·4/7 = 145.7, 255·3/7 = 109.3
	}
	for c := range want {
		if got := channel(out, c); got[0] != want[c][0] || got[1] != want[c][1] {
			t.Errorf("2x down, channel %d: %v, want %v", c, got, want[c])
		}
	}
	// 2× up: plain bilinear with half-pixel centres: a, .75a+.25b, .25a+.75b, b.
	src = rowImage([]uint8{0, 10}, []uint8{200, 21}, []uint8{1, 2})
	out, err = Resize(src, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	want = [][]uint8{{0, 3, 8, 10}, {200, 155, 66, 21}, {1, 1, 2, 2}}
	// 0.75·200+0.25·21 = 155.25; 0.25·200+0.75·21 = 65.75; 0.75+0.5 = 1.25, 0.25+1.5 = 1.75.
	for c := range want {
		got := channel(out, c)
		for i := range got {
			if got[i] != want[c][i] {
				t.Errorf("2x up, channel %d: %v, want %v", c, got, want[c])
				break
			}
		}
	}
	// The vertical axis uses the same filter: a 1×4 column halves to 1×2.
	col := &RGB{W: 1, H: 4, Pix: []uint8{0, 0, 0, 70, 70, 70, 140, 140, 140, 210, 210, 210}}
	out, err = Resize(col, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if out.Pix[0] != 50 || out.Pix[3] != 160 {
		t.Errorf("vertical 2x down: %v, want 50 and 160", out.Pix)
	}
}

// The int16 taps and precision of ATen's uint8 path for 4 → 2: the
// largest tap 3/7 gives precision 16, taps round(w·2^16).
func TestAAFilterTaps(t *testing.T) {
	f := newAAFilter(4, 2)
	if f.precision != 16 {
		t.Errorf("precision %d, want 16", f.precision)
	}
	want := [][]int{{28087, 28087, 9362}, {9362, 28087, 28087}}
	for i := range want {
		if f.start[i] != i {
			t.Errorf("output %d starts at %d, want %d", i, f.start[i], i)
		}
		for j := range want[i] {
			if f.taps[i][j] != want[i][j] {
				t.Errorf("taps %v, want %v", f.taps, want)
			}
		}
	}
	// Upscaling: the largest tap is 1, so 2^15 would overflow int16; precision 14.
	if p := newAAFilter(2, 4).precision; p != 14 {
		t.Errorf("2 → 4 precision %d, want 14", p)
	}
}

// referenceResize is an independent float64 form of the antialiased
// triangle filter: every input pixel j weighs tri((j+½−c)/max(1, scale))
// around the output centre c = (i+½)·scale, weights normalised per output,
// both axes applied without intermediate rounding.
func referenceResize(src *RGB, w, h int) []float64 {
	weights := func(in, out int) [][]float64 {
		scale := float64(in) / float64(out)
		support := math.Max(1, scale)
		ws := make([][]float64, out)
		for i := range ws {
			c := (float64(i) + 0.5) * scale
			ws[i] = make([]float64, in)
			sum := 0.0
			for j := range ws[i] {
				x := math.Abs((float64(j) + 0.5 - c) / support)
				if x < 1 {
					ws[i][j] = 1 - x
				}
				sum += ws[i][j]
			}
			for j := range ws[i] {
				ws[i][j] /= sum
			}
		}
		return ws
	}
	wx, wy := weights(src.W, w), weights(src.H, h)
	out := make([]float64, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				acc := 0.0
				for j := 0; j < src.H; j++ {
					if wy[y][j] == 0 {
						continue
					}
					for k := 0; k < src.W; k++ {
						acc += wy[y][j] * wx[x][k] * float64(src.Pix[3*(j*src.W+k)+c])
					}
				}
				out[3*(y*w+x)+c] = acc
			}
		}
	}
	return out
}

func randomRGB(r *rand.Rand, w, h int) *RGB {
	img := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for i := range img.Pix {
		img.Pix[i] = uint8(r.Intn(256))
	}
	return img
}

// Non-integer factors, down and up, against the float64 reference: the
// uint8 path rounds after the horizontal pass and uses int16 taps, so it may
// differ by one level, never more.
func TestResizeMatchesFloatReference(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, c := range []struct{ sw, sh, w, h int }{
		{37, 23, 16, 12}, // ×0.43, ×0.52
		{37, 23, 50, 40}, // up
		{64, 48, 48, 16}, // ×0.75, ÷3
		{13, 29, 7, 30},  // down in x, slightly up in y
		{100, 3, 33, 3},  // one axis unchanged (skipped pass)
	} {
		src := randomRGB(r, c.sw, c.sh)
		out, err := Resize(src, c.w, c.h)
		if err != nil {
			t.Fatal(err)
		}
		ref := referenceResize(src, c.w, c.h)
		maxd, off := 0.0, 0
		for i, v := range out.Pix {
			d := math.Abs(float64(v) - math.Round(ref[i]))
			maxd = math.Max(maxd, d)
			if d != 0 {
				off++
			}
		}
		t.Logf("%dx%d → %dx%d: max |uint8 − round(float64)| = %g, %d of %d values differ", c.sw, c.sh, c.w, c.h, maxd, off, len(out.Pix))
		if maxd > 1 {
			t.Errorf("%dx%d → %dx%d: differs from the float64 filter by %g levels", c.sw, c.sh, c.w, c.h, maxd)
		}
		if c.sh == c.h {
			// A skipped vertical pass leaves only the horizontal rounding,
			// which is exact for the float weights up to the int16 taps.
			if off*20 > len(out.Pix) {
				t.Errorf("%d of %d values differ with one pass", off, len(out.Pix))
			}
		}
	}
}

func TestResizeBadInput(t *testing.T) {
	src := randomRGB(rand.New(rand.NewSource(1)), 4, 4)
	for _, s := range [][2]int{{0, 4}, {4, -1}} {
		if _, err := Resize(src, s[0], s[1]); err == nil {
			t.Errorf("size %v: want an error", s)
		}
	}
	if _, err := Resize(&RGB{W: 2, H: 2, Pix: make([]uint8, 5)}, 1, 1); err == nil {
		t.Error("short pixel buffer: want an error")
	}
}

func BenchmarkResize720p(b *testing.B) {
	src := randomRGB(rand.New(rand.NewSource(1)), 1920, 1080)
	for b.Loop() {
		if _, err := Resize(src, 1280, 720); err != nil {
			b.Fatal(err)
		}
	}
}
