package pipeline

import (
	"fmt"
	"math"
)

// Resize scales an image to w×h exactly as the reference's
// `torchvision.transforms.v2.Resize((h, w), antialias=True)` does on a uint8
// CPU tensor, which PyTorch runs as PIL-style separable resampling in
// integer arithmetic (ATen `upsample_bilinear2d_aa` on uint8):
//
//   - per axis, the triangle filter is stretched by the downscale factor
//     (support = max(1, in/out)), its taps are normalised to sum 1, then
//     converted to int16 with a precision chosen from the largest tap;
//   - the horizontal pass runs first and stores uint8, then the vertical
//     pass; an axis whose size does not change is skipped;
//   - each output is (Σ tap·pixel + 2^(p−1)) >> p, clamped to [0, 255].
//
// torchvision takes this native uint8 path on CPUs with AVX2 (the machines
// the reference runs on); elsewhere it resizes in float32 and rounds once,
// which can differ by one level. Written from the ATen/torchvision sources
// and bit-exact against torchvision 0.26 (the conformance set's I2V image,
// testdata/torchvision_resize.safetensors: down, up, mixed and one-axis
// factors).
func Resize(src *RGB, w, h int) (*RGB, error) {
	if src == nil || src.W <= 0 || src.H <= 0 || len(src.Pix) != 3*src.W*src.H {
		return nil, fmt.Errorf("resize: invalid source image")
	}
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("resize: target size %dx%d must be positive", w, h)
	}
	cur := src
	if w != src.W {
		f := newAAFilter(src.W, w)
		out := &RGB{W: w, H: cur.H, Pix: make([]uint8, 3*w*cur.H)}
		for y := 0; y < cur.H; y++ {
			for c := 0; c < 3; c++ {
				f.apply(out.Pix[3*w*y+c:], 3, cur.Pix[3*cur.W*y+c:], 3)
			}
		}
		cur = out
	}
	if h != src.H {
		f := newAAFilter(src.H, h)
		out := &RGB{W: cur.W, H: h, Pix: make([]uint8, 3*cur.W*h)}
		rowLen := 3 * cur.W
		for x := 0; x < rowLen; x++ { // every column of every channel
			f.apply(out.Pix[x:], rowLen, cur.Pix[x:], rowLen)
		}
		cur = out
	}
	if cur == src {
		cur = &RGB{W: w, H: h, Pix: append([]uint8(nil), src.Pix...)}
	}
	return cur, nil
}

// aaFilter is one axis's integer resampling plan.
type aaFilter struct {
	out       int
	start     []int   // first input index of each output
	taps      [][]int // int16-range weights of each output
	precision uint
}

// newAAFilter computes the taps of ATen's antialiased bilinear filter for
// one axis (`_compute_indices_min_size_weights_aa` with the bilinear
// aa_filter, then `_compute_index_ranges_int16_weights`), align_corners
// false and no explicit scale: scale = in/out.
func newAAFilter(in, out int) *aaFilter {
	ws, start, wmax := aaWeights(in, out)
	var p uint
	for p = 0; p < 22; p++ {
		if int(0.5+wmax*float64(int(1)<<(p+1))) >= 1<<15 {
			break
		}
	}
	f := &aaFilter{out: out, start: start, taps: make([][]int, out), precision: p}
	for i, wi := range ws {
		t := make([]int, len(wi))
		for j, v := range wi {
			v *= float64(int(1) << p)
			if v < 0 {
				t[j] = int(-0.5 + v) // C truncation toward zero
			} else {
				t[j] = int(0.5 + v)
			}
		}
		f.taps[i] = t
	}
	return f
}

// aaWeights returns the normalised float64 taps, their first input index
// and the largest tap, as ATen computes them.
func aaWeights(in, out int) (ws [][]float64, start []int, wmax float64) {
	scale := float64(in) / float64(out)
	support, invscale := 1.0, 1.0
	if scale >= 1 {
		support, invscale = scale, 1/scale
	}
	kmax := int(math.Ceil(support))*2 + 1
	ws = make([][]float64, out)
	start = make([]int, out)
	for i := 0; i < out; i++ {
		center := scale * (float64(i) + 0.5)
		xmin := max(int(center-support+0.5), 0) // int() truncates toward zero, as C casts
		xsize := min(int(center+support+0.5), in) - xmin
		xsize = min(max(xsize, 0), kmax)
		w := make([]float64, xsize)
		total := 0.0
		for j := range w {
			w[j] = triangle((float64(j+xmin) - center + 0.5) * invscale)
			total += w[j]
		}
		if total != 0 {
			for j := range w {
				w[j] /= total
				wmax = max(wmax, w[j])
			}
		}
		ws[i], start[i] = w, xmin
	}
	return ws, start, wmax
}

// triangle is the bilinear filter 1 − |x| on (−1, 1).
func triangle(x float64) float64 {
	x = math.Abs(x)
	if x < 1 {
		return 1 - x
	}
	return 0
}

// apply filters one line: dst[i·dstStride], for every output i, from
// src[k·srcStride] (the line's pixels along the axis).
func (f *aaFilter) apply(dst []uint8, dstStride int, src []uint8, srcStride int) {
	round := 1 << (f.precision - 1)
	for i := 0; i < f.out; i++ {
		acc := round
		s := f.start[i] * srcStride
		for _, t := range f.taps[i] {
			acc += t * int(src[s])
			s += srcStride
		}
		acc >>= f.precision
		dst[i*dstStride] = uint8(min(max(acc, 0), 255))
	}
}
