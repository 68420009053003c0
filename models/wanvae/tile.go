package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Spatial tiling of the decode (SetTiling). The decoder's middle block holds
// a self-attention over each whole frame, so it runs untiled, on the latent
// grid where it is small (conv1 and the middle block: 4·Dim channels at 1/8
// of the video's size). Everything after it — the upsampling stages and the
// head, where the memory is — is local: 3×3 convolutions, per-position RMS
// norms, nearest upsampling. So each tile runs them on its part of the
// middle block's output plus a halo as wide as their receptive field, and
// every output pixel of the tile's own area is computed from exactly the
// inputs the untiled decode uses: the tiled decode equals the untiled one.
// Between the halo and the tile's own area there is a blend band of
// blendLatent latent pixels on each side, where neighbouring tiles (both
// exact there) are mixed linearly; see blendWeight for why the mix loses
// nothing.
//
// Tiles are decoded one after another, each over all frames with its own
// causal cache (the history of every causal convolution is per tile), so the
// device holds one tile's activations and caches at a time: memory is set by
// the tile size, not the video's. The price: the video is complete only
// after the last tile, so a tiled decode hands its chunks over at the end.

// blendLatent is the half-width of the blend band, in latent pixels: the
// ramp between two tiles is 2·8·blendLatent = 16 video pixels wide, whose
// weights (k+½)/16 are exact in binary.
const blendLatent = 1

// SetTiling makes Decode and DecodeChunks decode in spatial tiles of at most
// tile×tile latent pixels (0: untiled). A latent no larger than one tile is
// decoded untiled.
func (v *VAE) SetTiling(tile int) error {
	if tile < 0 {
		return fmt.Errorf("wanvae: tile size %d latent pixels: must be 0 (untiled) or positive", tile)
	}
	v.tile = tile
	return nil
}

// Tiling is the tile size SetTiling set.
func (v *VAE) Tiling() int { return v.tile }

// HaloLatent is how far, in latent pixels, the decoder's upsampling stages
// and head see around an output pixel (13 for the Wan2.1 VAE): the halo a
// tile needs.
func (v *VAE) HaloLatent() int { return radius(v.decUp, 0) }

// radius is the receptive-field radius, in pixels at the input of
// layers[from], of layers[from:] followed by the head (one 3×3 conv at the
// last scale). A residual block has two 3×3 convs; an upsampling is nearest
// 2x then a 3×3 conv, so it needs ⌈(r+1)/2⌉ input pixels for r output ones.
func radius(layers []layer, from int) int {
	r := 1 // the head's conv
	for i := len(layers) - 1; i >= from; i-- {
		switch l := layers[i].(type) {
		case *resBlock:
			r += 2
		case *resample:
			if l.mode != up2d && l.mode != up3d {
				backend.Fail("wanvae: tiling: resample mode %d in the decoder", l.mode)
			}
			r = (r + 1 + 1) / 2
		default:
			backend.Fail("wanvae: tiling: layer %T after the middle block is not local", l)
		}
	}
	return r
}

// span is one tile's extent along an axis in latent pixels: its own area
// [lo, hi) and the decoded area [dlo, dhi) (own area, blend band and halo,
// clipped to [0, n)).
type span struct{ lo, hi, dlo, dhi, n int }

// spans cuts [0, n) into ⌈n/tile⌉ near-equal tiles with a margin of m.
func spans(n, tile, m int) []span {
	k := (n + tile - 1) / tile
	out := make([]span, k)
	for i := range out {
		lo, hi := i*n/k, (i+1)*n/k
		out[i] = span{lo, hi, max(0, lo-m), min(n, hi+m), n}
	}
	return out
}

// crop returns the part of [a0, a1) (pixels at scale f, i.e. f per latent
// pixel) a tile still needs: its own area widened by keep pixels, within
// what is there.
func (s span) crop(f, keep, a0, a1 int) (int, int) {
	return max(a0, f*s.lo-keep), min(a1, f*s.hi+keep)
}

// blendWeight is the tile's weight for video pixel p (at scale 8) along
// this axis: 1 inside its own area, 0 outside it and its blend bands, and a
// linear ramp across each band that is shared with a neighbour, so the
// weights of all tiles sum to 1 at every pixel. The ramp values are
// multiples of 1/32 and a decoded value has 24 significant bits, so every
// product weight·value (up to 12 + 24 bits for a 2-D weight) and every sum
// of them is exact in float64: where the tiles agree, the blend returns
// their value bit for bit, and in general blended − untiled =
// Σ wᵢ·(tileᵢ − untiled) exactly, bounded by the largest tile error.
func (s span) blendWeight(p int) float64 {
	const L = SpatialFactor * blendLatent // half-width in video pixels
	lo, hi := SpatialFactor*s.lo, SpatialFactor*s.hi
	w := 1.0
	if s.lo > 0 { // ramp up across [lo−L, lo+L)
		if p < lo-L {
			return 0
		}
		if p < lo+L {
			w = (float64(p-(lo-L)) + 0.5) / (2 * L)
		}
	}
	if s.hi < s.n { // ramp down across [hi−L, hi+L)
		if p >= hi+L {
			return 0
		}
		if p >= hi-L {
			w *= 1 - (float64(p-(hi-L))+0.5)/(2*L)
		}
	}
	return w
}

// decodeTiled is DecodeChunks for a latent larger than one tile; x is the
// denormalised latent.
func (v *VAE) decodeTiled(x []float32, z, T, H, W int, emit func(first int, chunk []float32, chunkShape []int) error) error {
	b := v.b
	OH, OW := SpatialFactor*H, SpatialFactor*W
	F := 1 + TemporalFactor*(T-1)

	// 1. conv1 and the middle block over whole latent frames; their
	// outputs wait on the host.
	mids := make([][]float32, T)
	var midC int
	s := newState(b)
	for t := 0; t < T; t++ {
		chunk := make([]float32, z*H*W)
		for c := 0; c < z; c++ {
			copy(chunk[c*H*W:(c+1)*H*W], x[(c*T+t)*H*W:(c*T+t+1)*H*W])
		}
		in := b.Upload(v.dt, []int{z, 1, H, W}, chunk)
		y := pointwise(b, v.postQuant, in)
		b.Free(in)
		m := s.causal(v.decConv1, y, 1)
		b.Free(y)
		m = s.forwardAll(v.decMid, m)
		midC = m.Shape()[0]
		mids[t] = b.Download(m)
		b.Free(m)
	}
	s.free()

	// 2. Each tile over all frames, blended into the video on the host
	// (float64, see blendWeight).
	halo := v.HaloLatent()
	margin := halo + blendLatent
	acc := make([]float64, 3*F*OH*OW)
	rows, cols := spans(H, v.tile, margin), spans(W, v.tile, margin)
	for _, ry := range rows {
		for _, rx := range cols {
			if err := v.decodeTile(mids, midC, T, ry, rx, acc, F, OH, OW); err != nil {
				return err
			}
		}
	}

	// 3. Hand the frames over chunk by chunk, as DecodeChunks does.
	plane := OH * OW
	frame := 0
	for t := 0; t < T; t++ {
		n := TemporalFactor
		if t == 0 {
			n = 1
		}
		data := make([]float32, 3*n*plane)
		parallel.For(3*n, func(lo, hi int) {
			for ck := lo; ck < hi; ck++ {
				c, k := ck/n, ck%n
				src := acc[(c*F+frame+k)*plane : (c*F+frame+k+1)*plane]
				dst := data[(c*n+k)*plane : (c*n+k+1)*plane]
				for i, val := range src {
					dst[i] = float32(val)
				}
			}
		})
		if err := emit(frame, data, []int{3, n, OH, OW}); err != nil {
			return err
		}
		frame += n
	}
	return nil
}

// decodeTile runs the upsampling stages and the head over one tile's
// decoded area for every frame, with its own causal cache, cropping after
// each upsampling to the area (own area, blend band, remaining halo) still
// needed, and adds the weighted output into acc [3,F,OH,OW].
func (v *VAE) decodeTile(mids [][]float32, C, T int, ry, rx span, acc []float64, F, OH, OW int) error {
	b := v.b
	s := newState(b)
	defer s.free()
	h, w := ry.dhi-ry.dlo, rx.dhi-rx.dlo
	H, W := ry.n, rx.n
	frame := 0
	for t := 0; t < T; t++ {
		in := make([]float32, C*h*w)
		for c := 0; c < C; c++ {
			for y := 0; y < h; y++ {
				src := mids[t][(c*H+ry.dlo+y)*W+rx.dlo:]
				copy(in[(c*h+y)*w:(c*h+y+1)*w], src[:w])
			}
		}
		xt := b.Upload(v.dt, []int{C, 1, h, w}, in)
		// The tensor covers [y0,y1)×[x0,x1) in pixels at scale f.
		f, y0, y1, x0, x1 := 1, ry.dlo, ry.dhi, rx.dlo, rx.dhi
		for i, l := range v.decUp {
			y := s.forward(l, xt)
			b.Free(xt)
			xt = y
			if _, ok := l.(*resample); !ok {
				continue
			}
			f, y0, y1, x0, x1 = 2*f, 2*y0, 2*y1, 2*x0, 2*x1
			keep := radius(v.decUp, i+1) + f*blendLatent
			ny0, ny1 := ry.crop(f, keep, y0, y1)
			nx0, nx1 := rx.crop(f, keep, x0, x1)
			xt = cropHW(b, xt, ny0-y0, ny1-y0, nx0-x0, nx1-x0)
			y0, y1, x0, x1 = ny0, ny1, nx0, nx1
		}
		xt = s.head(v.decHeadG, v.decHead, xt)
		if f != SpatialFactor {
			backend.Fail("wanvae: tiling: the decoder upsamples %dx, want %dx", f, SpatialFactor)
		}
		// Only the own area and blend bands carry weight.
		ny0, ny1 := ry.crop(f, f*blendLatent, y0, y1)
		nx0, nx1 := rx.crop(f, f*blendLatent, x0, x1)
		cropped := cropHW(b, xt, ny0-y0, ny1-y0, nx0-x0, nx1-x0)
		out := b.Cast(cropped, tensor.F32)
		b.Free(cropped)
		sh := out.Shape()
		n, th, tw := sh[1], sh[2], sh[3]
		data := b.Download(out)
		b.Free(out)
		wx := make([]float64, tw)
		for xx := range wx {
			wx[xx] = rx.blendWeight(nx0 + xx)
		}
		// Rows of distinct (channel, frame, y) are disjoint: split them over
		// the cores.
		parallel.For(3*n*th, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				ck, yy := r/th, r%th
				c, k := ck/n, ck%n
				wy := ry.blendWeight(ny0 + yy)
				if wy == 0 {
					continue
				}
				row := acc[((c*F+frame+k)*OH+ny0+yy)*OW+nx0:]
				src := data[((c*n+k)*th+yy)*tw:]
				for xx, w := range wx {
					row[xx] += wy * w * float64(src[xx])
				}
			}
		})
		frame += n
	}
	return nil
}

// cropHW returns x[:, :, y0:y1, x0:x1] (x itself when that is all of it,
// else a copy, and x is freed).
func cropHW(b backend.VAE, x backend.Tensor, y0, y1, x0, x1 int) backend.Tensor {
	sh := x.Shape()
	if y0 == 0 && y1 == sh[2] && x0 == 0 && x1 == sh[3] {
		return x
	}
	out := x
	if y0 != 0 || y1 != sh[2] {
		out = b.Slice(x, 2, y0, y1)
	}
	if x0 != 0 || x1 != sh[3] {
		o := b.Slice(out, 3, x0, x1)
		if out != x {
			b.Free(out)
		}
		out = o
	}
	b.Free(x)
	return out
}
