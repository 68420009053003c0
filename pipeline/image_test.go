package pipeline

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// PNG colour types convert as PIL's convert("RGB") does: alpha dropped
// (not composited), grey replicated, palette looked up, 16 bits → high byte.
func TestLoadImagePNGConversions(t *testing.T) {
	dir := t.TempDir()
	nrgba := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	nrgba.SetNRGBA(0, 0, color.NRGBA{200, 100, 50, 0}) // fully transparent keeps its colour
	nrgba.SetNRGBA(1, 0, color.NRGBA{1, 2, 3, 128})
	gray := image.NewGray(image.Rect(0, 0, 2, 1))
	gray.SetGray(0, 0, color.Gray{17})
	gray.SetGray(1, 0, color.Gray{250})
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.NRGBA{9, 8, 7, 0}, color.NRGBA{90, 80, 70, 255}})
	pal.SetColorIndex(1, 0, 1)
	rgb16 := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	rgb16.SetNRGBA64(0, 0, color.NRGBA64{0x12ff, 0x3400, 0xfffe, 0xffff})
	rgb16.SetNRGBA64(1, 0, color.NRGBA64{0x0080, 0x8000, 0x7fff, 0x1234})
	for _, c := range []struct {
		name string
		img  image.Image
		want []uint8
	}{
		{"rgba", nrgba, []uint8{200, 100, 50, 1, 2, 3}},
		{"gray", gray, []uint8{17, 17, 17, 250, 250, 250}},
		{"palette", pal, []uint8{9, 8, 7, 90, 80, 70}},
		{"rgba16", rgb16, []uint8{0x12, 0x34, 0xff, 0x00, 0x80, 0x7f}},
	} {
		p := filepath.Join(dir, c.name+".png")
		writePNG(t, p, c.img)
		got, err := LoadImage(p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got.W != 2 || got.H != 1 || !bytes.Equal(got.Pix, c.want) {
			t.Errorf("%s: %dx%d %v, want 2x1 %v", c.name, got.W, got.H, got.Pix, c.want)
		}
	}
}

func TestLoadImageJPEG(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 180, 60, 30, 255
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeImage(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.W != 16 || got.H != 16 {
		t.Fatalf("size %dx%d, want 16x16", got.W, got.H)
	}
	for i, want := range []int{180, 60, 30} {
		if d := int(got.Pix[i]) - want; d < -4 || d > 4 {
			t.Errorf("channel %d: %d, want %d ± 4 (lossy JPEG of a flat colour)", i, got.Pix[i], want)
		}
	}
}

func TestLoadImageErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.png")
	_, err := LoadImage(missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v, want an error naming %s", err, missing)
	}
	text := filepath.Join(dir, "notes.png")
	os.WriteFile(text, []byte("this is not an image"), 0o644)
	_, err = LoadImage(text)
	if err == nil || !strings.Contains(err.Error(), text) || !strings.Contains(err.Error(), "not a PNG or JPEG") {
		t.Errorf("text file: %v, want an error naming the file and saying it is not a PNG or JPEG", err)
	}
	// A PNG cut short is a decode error, not a panic.
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 64, 64)))
	cut := filepath.Join(dir, "cut.png")
	os.WriteFile(cut, buf.Bytes()[:buf.Len()/2], 0o644)
	if _, err := LoadImage(cut); err == nil || !strings.Contains(err.Error(), cut) {
		t.Errorf("truncated PNG: %v, want an error naming it", err)
	}
}

func TestAdaptiveSize(t *testing.T) {
	for _, c := range []struct {
		base       Size
		imgW, imgH int
		want       Size
	}{
		{Size{1280, 720}, 1000, 1000, Size{960, 960}},
		{Size{1280, 720}, 720, 1280, Size{720, 1280}},
		{Size{1280, 720}, 1920, 1080, Size{1280, 720}},
		// √(A/r)/16 = 32.5 exactly: NumPy rounds half to even → 32 (not 33).
		{Size{832, 480}, 65, 96, Size{512, 768}},
		// √(A/r)/16 = 19.5 exactly → 20.
		{Size{832, 480}, 39, 160, Size{320, 1280}},
	} {
		got, err := AdaptiveSize(c.base, c.imgW, c.imgH)
		if err != nil || got != c.want {
			t.Errorf("area of %v, image %dx%d: %v %v, want %v", c.base, c.imgW, c.imgH, got, err, c.want)
		}
	}
	if _, err := AdaptiveSize(Size{832, 480}, 10000, 1); err == nil {
		t.Error("a 10000x1 image: want an error (height rounds to 0)")
	}
}

func TestImageTensor(t *testing.T) {
	img := &RGB{W: 2, H: 1, Pix: []uint8{0, 128, 255, 1, 2, 3}}
	x := ImageTensor(img)
	// Channel-major [3, 1, 2].
	v128 := (float32(128)*float32(1.0/255) - 0.5) / 0.5
	want := []float32{-1, (float32(1)*float32(1.0/255) - 0.5) / 0.5, v128, (float32(2)*float32(1.0/255) - 0.5) / 0.5, 1, (float32(3)*float32(1.0/255) - 0.5) / 0.5}
	for i := range want {
		if x[i] != want[i] {
			t.Errorf("value %d: %v, want %v", i, x[i], want[i])
		}
	}
}
