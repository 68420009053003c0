package rgb24_test

import (
	"bytes"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
)

// The conversions as taehv and wanvae wrote them before they shared this
// package, kept as the reference the shared code must match bit for bit.
func oldUnit(x float32) uint8 {
	if !(x >= 0) {
		return 0
	}
	if x >= 1 {
		return 255
	}
	return uint8(float32(x*255) + 0.5)
}

func oldSigned(x float32) uint8 {
	if !(x >= -1) {
		x = -1
	} else if x > 1 {
		x = 1
	}
	p := float32(float32(1+x) / 2)
	p = min(max(p, 0), 1)
	return uint8(float32(float32(p*255) + 0.5))
}

// oldFrames is the old layout, serially: frame f's pixel p is channels
// (video[c][f][p]) for c = 0, 1, 2.
func oldFrames(video []float32, F, H, W int, conv func(float32) uint8) [][]uint8 {
	plane := H * W
	out := make([][]uint8, F)
	for f := range out {
		out[f] = make([]uint8, 3*plane)
		for p := 0; p < plane; p++ {
			for c := 0; c < 3; c++ {
				out[f][3*p+c] = conv(video[(c*F+f)*plane+p])
			}
		}
	}
	return out
}

// edges are values at and next to every byte's .5 rounding boundary of
// both ranges, the ends of the ranges, out-of-range values, NaN and ±Inf.
func edges() []float32 {
	xs := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -2, -1, -0.5, 0, 0.5, 1, 1.5, 2, -1e-30, 1e-30}
	near := func(x float32) {
		xs = append(xs, x, math.Nextafter32(x, float32(math.Inf(1))), math.Nextafter32(x, float32(math.Inf(-1))))
	}
	for k := -1; k <= 256; k++ {
		h := (float32(k) + 0.5) / 255
		near(h)
		near(2*h - 1)
		near(float32(k) / 255)
		near(2*float32(k)/255 - 1)
	}
	return xs
}

// TestConversionsMatchOld: FromUnit and FromSigned (and the models'
// ToUint8) give the old bytes on every edge value and on random values
// from −3 to 3.
func TestConversionsMatchOld(t *testing.T) {
	xs := edges()
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200000; i++ {
		xs = append(xs, float32(r.Float64()*6-3))
	}
	for _, x := range xs {
		if a, b := rgb24.FromUnit(x), oldUnit(x); a != b || taehv.ToUint8(x) != b {
			t.Fatalf("unit %v (%#x): %d, want %d", x, math.Float32bits(x), a, b)
		}
		if a, b := rgb24.FromSigned(x), oldSigned(x); a != b || wanvae.ToUint8(x) != b {
			t.Fatalf("signed %v (%#x): %d, want %d", x, math.Float32bits(x), a, b)
		}
	}
}

// TestFramesMatchOld: taehv.Frames and wanvae.Frames give the old frames
// on a random video with out-of-range values and the rounding edges mixed
// in, at a size whose rows split unevenly over the workers.
func TestFramesMatchOld(t *testing.T) {
	const F, H, W = 5, 7, 13
	r := rand.New(rand.NewSource(2))
	video := make([]float32, 3*F*H*W)
	e := edges()
	for i := range video {
		if i%3 == 0 {
			video[i] = e[r.Intn(len(e))]
		} else {
			video[i] = float32(r.Float64()*3 - 1.5)
		}
	}
	shape := []int{3, F, H, W}
	for _, c := range []struct {
		name   string
		frames func([]float32, []int) ([][]uint8, error)
		old    func(float32) uint8
	}{{"taehv", taehv.Frames, oldUnit}, {"wanvae", wanvae.Frames, oldSigned}} {
		got, err := c.frames(video, shape)
		if err != nil {
			t.Fatal(err)
		}
		want := oldFrames(video, F, H, W, c.old)
		if len(got) != F {
			t.Fatalf("%s: %d frames, want %d", c.name, len(got), F)
		}
		for f := range want {
			if !bytes.Equal(got[f], want[f]) {
				t.Fatalf("%s: frame %d differs from the old conversion", c.name, f)
			}
		}
		// Errors keep the package's prefix.
		if _, err := c.frames(video[1:], shape); err == nil || !strings.HasPrefix(err.Error(), c.name+": frames: video shape [3 5 7 13] holds 1365 values, got 1364") {
			t.Errorf("%s: short video: %v", c.name, err)
		}
		if _, err := c.frames(video, []int{4, F, H, W}); err == nil || !strings.HasPrefix(err.Error(), c.name+": frames: want a video [3,F,H,W]") {
			t.Errorf("%s: 4 channels: %v", c.name, err)
		}
	}
	if _, err := rgb24.Frames(video, shape, rgb24.Range(7)); err == nil {
		t.Error("an unknown range is accepted")
	}
}
