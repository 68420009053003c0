package wanvae

import (
	"math"
	"testing"
)

func TestToUint8(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		x    float32
		want uint8
	}{
		{-3, 0}, {-1, 0}, {nan, 0}, {1, 255}, {7, 255}, {0, 128}, // 127.5+0.5 = 128
		// 255·(1+x)/2 just below and at k+0.5 decides between k and k+1.
		{2*(10.5/255) - 1 - 1e-4, 10}, {2*(10.5/255) - 1 + 1e-4, 11},
		{-0.5, 64}, // 63.75 + 0.5
	} {
		if got := ToUint8(c.x); got != c.want {
			t.Errorf("ToUint8(%v) = %d, want %d", c.x, got, c.want)
		}
	}
}

func TestFramesLayout(t *testing.T) {
	// [3,F,H,W]: frame f, pixel i, channel c holds a distinct value; several
	// rows and frames, so the parallel row split is exercised.
	F, H, W := 3, 37, 19
	P := H * W
	video := make([]float32, 3*F*P)
	want := make([][]uint8, F)
	for f := range want {
		want[f] = make([]uint8, 3*P)
	}
	for c := 0; c < 3; c++ {
		for f := 0; f < F; f++ {
			for i := 0; i < P; i++ {
				u := uint8((85*c + 31*f + 7*i) % 256)
				video[(c*F+f)*P+i] = 2*float32(u)/255 - 1
				want[f][3*i+c] = u
			}
		}
	}
	got, err := Frames(video, []int{3, F, H, W})
	if err != nil {
		t.Fatal(err)
	}
	for f := range want {
		for i := range want[f] {
			if got[f][i] != want[f][i] {
				t.Fatalf("frame %d byte %d = %d, want %d", f, i, got[f][i], want[f][i])
			}
		}
	}
	if _, err := Frames(video, []int{3, F, H, W + 1}); err == nil {
		t.Error("Frames accepted a shape that does not match the data")
	}
	if _, err := Frames(video, []int{6, F, H, W}); err == nil {
		t.Error("Frames accepted 6 channels")
	}
}
