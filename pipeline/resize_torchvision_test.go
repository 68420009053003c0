package pipeline

import (
	"fmt"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
)

// TestResizeMatchesTorchvision: Resize against torchvision's own
// Resize((h, w), antialias=True) on uint8 images (testdata/
// torchvision_resize.py wrote the file with torchvision 0.26 on an AVX-512
// CPU): downscales, upscales, mixed and one-axis factors, bit for bit. The
// conformance set's I2V image only upscales; this covers the other
// directions.
func TestResizeMatchesTorchvision(t *testing.T) {
	f, err := checkpoint.Open("testdata/torchvision_resize.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u8 := func(name string) ([]uint8, []int) {
		info, ok := f.Info(name)
		if !ok || len(info.Shape) != 3 || info.Shape[2] != 3 {
			t.Fatalf("%s: missing or not [h, w, 3]", name)
		}
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]uint8, len(v))
		for i, x := range v {
			out[i] = uint8(x)
		}
		return out, info.Shape
	}
	n := 0
	for ; ; n++ {
		if _, ok := f.Info(fmt.Sprintf("case%d.input", n)); !ok {
			break
		}
		in, is := u8(fmt.Sprintf("case%d.input", n))
		want, ws := u8(fmt.Sprintf("case%d.resized", n))
		got, err := Resize(&RGB{W: is[1], H: is[0], Pix: in}, ws[1], ws[0])
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for i := range want {
			if got.Pix[i] != want[i] {
				bad++
			}
		}
		t.Logf("%dx%d → %dx%d: %d of %d values differ from torchvision", is[1], is[0], ws[1], ws[0], bad, len(want))
		if bad != 0 {
			t.Errorf("%dx%d → %dx%d: %d values differ from torchvision", is[1], is[0], ws[1], ws[0], bad)
		}
	}
	if n == 0 {
		t.Fatal("no cases in testdata/torchvision_resize.safetensors")
	}
}
