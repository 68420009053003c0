package video

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
)

// Patterns are the synthetic clips Pattern makes, for measuring encoders on
// content that compresses like video (not only noise).
var Patterns = []string{"gradient", "pan", "noise"}

// Pattern makes a synthetic clip of n frames at w×h, 16 fps:
//
//   - "gradient": a colour gradient drifting across the frame with a soft
//     disk moving over it (smooth content, what a flat scene gives);
//   - "pan": a sub-pixel camera pan over a textured landscape (fractal
//     value noise in earthy colours, a horizon, hard-edged shapes) with a
//     little grain: detail and motion, as a generated video has;
//   - "noise": uniform random bytes (the incompressible worst case).
//
// The same arguments always give the same clip.
func Pattern(kind string, w, h, n int) (*Clip, error) {
	if w <= 0 || h <= 0 || n <= 0 {
		return nil, fmt.Errorf("video: pattern %dx%d x %d frames: sizes must be positive", w, h, n)
	}
	c := &Clip{Width: w, Height: h, FPS: 16, Frames: make([][]byte, n)}
	for i := range c.Frames {
		c.Frames[i] = make([]byte, w*h*3)
	}
	switch kind {
	case "gradient":
		parallel.For(n, func(lo, hi int) {
			for f := lo; f < hi; f++ {
				gradientFrame(c.Frames[f], w, h, f)
			}
		})
	case "pan":
		// 2.5 px a frame right and 0.75 down (sub-pixel, as a real camera
		// moves), plus a little sensor grain that changes every frame.
		scene := landscape(h)
		parallel.For(n*h, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				f, y := r/h, r%h
				ox, oy := 2.5*float64(f), 0.75*float64(f)
				px := c.Frames[f][y*w*3 : (y+1)*w*3]
				for x := 0; x < w; x++ {
					cr, cg, cb := scene(float64(x)+ox, float64(y)+oy)
					g := (grain(uint64(f), uint64(y), uint64(x)) - 0.5) * 4 / 255
					px[3*x], px[3*x+1], px[3*x+2] = unit8(cr+g), unit8(cg+g), unit8(cb+g)
				}
			}
		})
	case "noise":
		r := rand.New(rand.NewPCG(1, 2))
		for _, fr := range c.Frames {
			for i := range fr {
				fr[i] = byte(r.Uint32())
			}
		}
	default:
		return nil, fmt.Errorf("video: unknown pattern %q (have %v)", kind, Patterns)
	}
	return c, nil
}

func gradientFrame(px []byte, w, h, f int) {
	t := float64(f)
	cx, cy := float64(w)*(0.2+0.6*float64(f%48)/47), float64(h)*(0.5+0.25*math.Sin(t/8))
	rad := float64(min(w, h)) / 6
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			u, v := float64(x)/float64(w), float64(y)/float64(h)
			r := 0.5 + 0.5*math.Sin(2*math.Pi*(u+t/80))
			g := 0.3 + 0.6*v
			b := 0.5 + 0.4*math.Cos(2*math.Pi*(u*0.5+v*0.5-t/120))
			d := math.Hypot(float64(x)-cx, float64(y)-cy) / rad
			if a := math.Max(0, 1-d*d); a > 0 { // a soft warm disk
				r, g, b = r*(1-a)+0.95*a, g*(1-a)+0.75*a, b*(1-a)+0.3*a
			}
			i := (y*w + x) * 3
			px[i], px[i+1], px[i+2] = unit8(r), unit8(g), unit8(b)
		}
	}
}

// landscape returns the colour at a point of a scene h pixels high: sky
// above a wavy horizon, fractal-noise ground, and a few hard-edged shapes.
func landscape(h int) func(fx, fy float64) (r, g, b float64) {
	noise := valueNoise(7)
	return func(fx, fy float64) (r, g, b float64) {
		n := 0.0 // 5 octaves of value noise, feature sizes 96 … 6 px
		amp, scale := 0.5, 1/96.0
		for o := 0; o < 5; o++ {
			n += amp * noise(fx*scale, fy*scale)
			amp, scale = amp/2, scale*2
		}
		horizon := float64(h)*0.35 + 25*math.Sin(fx/70) + 12*noise(fx/40, 3)
		if fy < horizon { // sky: blue gradient with soft clouds
			v := fy / horizon
			c := math.Max(0, n-0.45) * 1.8
			r, g, b = 0.35+0.3*v+c, 0.55+0.25*v+c, 0.9+c*0.5
		} else { // ground: green-brown texture, darker further down
			v := (fy - horizon) / (float64(h)*1.5 - horizon)
			r, g, b = 0.25+0.45*n-0.1*v, 0.35+0.4*n-0.15*v, 0.12+0.2*n
		}
		// Hard-edged shapes: dark posts and bright windows.
		if math.Mod(fx, 157) < 9 && fy > horizon-40 {
			r, g, b = 0.15, 0.1, 0.08
		}
		if math.Mod(fx, 211) > 180 && math.Mod(fy, 97) < 20 && fy > horizon {
			r, g, b = 0.95, 0.9, 0.6
		}
		return r, g, b
	}
}

// grain is a hash of its arguments in [0,1).
func grain(a, b, c uint64) float64 {
	z := a*0x9E3779B97F4A7C15 ^ b*0xC2B2AE3D27D4EB4F ^ c*0x165667B19E3779F9
	z ^= z >> 31
	z *= 0xBF58476D1CE4E5B9
	z ^= z >> 29
	return float64(z>>11) / (1 << 53)
}

// valueNoise returns smooth noise in [0,1) on the plane: bilinear (smoothstep)
// interpolation of hashed lattice values.
func valueNoise(seed uint64) func(x, y float64) float64 {
	hash := func(ix, iy int64) float64 {
		z := uint64(ix)*0x9E3779B97F4A7C15 ^ uint64(iy)*0xC2B2AE3D27D4EB4F ^ seed
		z ^= z >> 31
		z *= 0xBF58476D1CE4E5B9
		z ^= z >> 29
		return float64(z>>11) / (1 << 53)
	}
	return func(x, y float64) float64 {
		x0, y0 := math.Floor(x), math.Floor(y)
		tx, ty := x-x0, y-y0
		tx, ty = tx*tx*(3-2*tx), ty*ty*(3-2*ty)
		ix, iy := int64(x0), int64(y0)
		a := hash(ix, iy)*(1-tx) + hash(ix+1, iy)*tx
		b := hash(ix, iy+1)*(1-tx) + hash(ix+1, iy+1)*tx
		return a*(1-ty) + b*ty
	}
}

func unit8(v float64) byte {
	return byte(math.Round(255 * math.Min(1, math.Max(0, v))))
}

// PSNR is the peak signal-to-noise ratio in dB of got against want over all
// frames' bytes (one MSE over the whole clip); +Inf when they are equal.
func PSNR(want, got [][]byte) (float64, error) {
	if len(want) != len(got) {
		return 0, fmt.Errorf("video: psnr: %d frames against %d", len(got), len(want))
	}
	var sum float64
	var n int
	for i := range want {
		if len(want[i]) != len(got[i]) {
			return 0, fmt.Errorf("video: psnr: frame %d has %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
		for j, v := range want[i] {
			d := float64(v) - float64(got[i][j])
			sum += d * d
		}
		n += len(want[i])
	}
	if sum == 0 {
		return math.Inf(1), nil
	}
	return 10 * math.Log10(255*255/(sum/float64(n))), nil
}
