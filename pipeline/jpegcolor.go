package pipeline

import "image"

// JPEG colour as PIL sees it. PIL decodes with libjpeg(-turbo) defaults:
// "fancy" chroma upsampling (a triangle filter, 3/4 nearer + 1/4 farther
// sample, with libjpeg's alternating rounding biases) and the fixed-point
// YCbCr→RGB of jdcolor.c. Go's image.YCbCr.At instead replicates chroma and
// rounds differently, so the YCbCr planes from image/jpeg are converted here
// the libjpeg way. What remains different is the IDCT (Go's vs libjpeg's
// islow), a level or so on some pixels.

// ycbcrToRGB converts a decoded JPEG. 4:4:4, 4:2:2, 4:2:0 and 4:4:0 get
// libjpeg's fancy upsampling; 4:1:1 and 4:1:0 (rare) replicate chroma.
func ycbcrToRGB(m *image.YCbCr) *RGB {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	hs, vs := 0, 0 // chroma subsampling factors 1 or 2; 0: no fancy path
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio422:
		hs, vs = 2, 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 2, 2
	case image.YCbCrSubsampleRatio440:
		hs, vs = 1, 2
	}
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	var cw, ch int // libjpeg's downsampled_width/height
	if hs > 0 {
		cw, ch = (w+hs-1)/hs, (h+vs-1)/vs
	}
	if hs == 0 || (hs == 2 && cw <= 2) {
		// Replicated chroma: ratios without a fancy path, and planes of at
		// most 2 columns, for which libjpeg-turbo replicates too.
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				yi, ci := m.YOffset(x, y), m.COffset(x, y)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = libjpegYCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				i += 3
			}
		}
		return out
	}
	// The chroma planes restricted to their real size (the decoder's planes
	// also hold the MCU padding, which libjpeg never reads).
	plane := func(p []uint8) []uint8 {
		o := make([]uint8, cw*ch)
		base := m.COffset(b.Min.X, b.Min.Y)
		for r := 0; r < ch; r++ {
			copy(o[r*cw:(r+1)*cw], p[base+r*m.CStride:])
		}
		return o
	}
	cb := fancyUpsample(plane(m.Cb), cw, ch, hs, vs, w, h)
	cr := fancyUpsample(plane(m.Cr), cw, ch, hs, vs, w, h)
	i := 0
	for y := 0; y < h; y++ {
		yrow := m.Y[m.YOffset(b.Min.X, b.Min.Y+y):]
		for x := 0; x < w; x++ {
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = libjpegYCbCrToRGB(yrow[x], cb[y*w+x], cr[y*w+x])
			i += 3
		}
	}
	return out
}

// fancyUpsample scales a cw×ch chroma plane by (hs, vs) ∈ {1,2}² to w×h as
// libjpeg's h2v1/h1v2/h2v2_fancy_upsample do (jdsample.c); rows above the
// first and below the last repeat the edge row, as jdmainct.c supplies them.
func fancyUpsample(p []uint8, cw, ch, hs, vs, w, h int) []uint8 {
	if hs == 1 && vs == 1 {
		return p
	}
	out := make([]uint8, w*h)
	row := func(r int) []uint8 { return p[min(max(r, 0), ch-1)*cw:][:cw] }
	for oy := 0; oy < h; oy++ {
		dst := out[oy*w:]
		in0 := row(oy / vs)
		switch {
		case vs == 1: // h2v1: (3·near + far + 1 or 2) >> 2, edges copied
			put := func(ox, v int) {
				if ox < w {
					dst[ox] = uint8(v)
				}
			}
			put(0, int(in0[0]))
			put(1, (int(in0[0])*3+int(in0[1])+2)>>2)
			for c := 1; c < cw-1; c++ {
				v := int(in0[c]) * 3
				put(2*c, (v+int(in0[c-1])+1)>>2)
				put(2*c+1, (v+int(in0[c+1])+2)>>2)
			}
			put(2*cw-2, (int(in0[cw-1])*3+int(in0[cw-2])+1)>>2)
			put(2*cw-1, int(in0[cw-1]))
		case hs == 1: // h1v2: (3·near + far + bias) >> 2, bias 1 above, 2 below
			far, bias := row(oy/2-1), 1
			if oy%2 == 1 {
				far, bias = row(oy/2+1), 2
			}
			for x := 0; x < w; x++ {
				dst[x] = uint8((int(in0[x])*3 + int(far[x]) + bias) >> 2)
			}
		default: // h2v2: column sums 3·near + far, then the same horizontally
			far := row(oy/2 - 1)
			if oy%2 == 1 {
				far = row(oy/2 + 1)
			}
			sum := func(c int) int { return int(in0[c])*3 + int(far[c]) }
			put := func(ox, v int) {
				if ox < w {
					dst[ox] = uint8(v)
				}
			}
			this, next := sum(0), sum(1)
			put(0, (this*4+8)>>4)
			put(1, (this*3+next+7)>>4)
			last := this
			this = next
			for c := 1; c < cw-1; c++ {
				next = sum(c + 1)
				put(2*c, (this*3+last+8)>>4)
				put(2*c+1, (this*3+next+7)>>4)
				last, this = this, next
			}
			put(2*cw-2, (this*3+last+8)>>4)
			put(2*cw-1, (this*4+7)>>4)
		}
	}
	return out
}

// libjpegYCbCrToRGB is jdcolor.c's ycc_rgb_convert: 16-bit fixed point
// with ONE_HALF rounding folded into the tables, results clamped.
func libjpegYCbCrToRGB(y, cb, cr uint8) (r, g, b uint8) {
	const (
		scaleBits = 16
		oneHalf   = 1 << (scaleBits - 1)
		fixCrR    = 91881  // FIX(1.40200)
		fixCbB    = 116130 // FIX(1.77200)
		fixCrG    = 46802  // FIX(0.71414)
		fixCbG    = 22554  // FIX(0.34414)
	)
	yy, cbx, crx := int(y), int(cb)-128, int(cr)-128
	clamp := func(v int) uint8 { return uint8(min(max(v, 0), 255)) }
	r = clamp(yy + (fixCrR*crx+oneHalf)>>scaleBits)
	g = clamp(yy + (-fixCbG*cbx+oneHalf-fixCrG*crx)>>scaleBits)
	b = clamp(yy + (fixCbB*cbx+oneHalf)>>scaleBits)
	return r, g, b
}
