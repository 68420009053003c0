package cuda

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// rgbEdgeValues are every bfloat16 value (NaN, infinities and subnormals
// included) and, for each byte k, the float32 inputs on and around the
// values where either range's conversion moves from k to k+1.
func rgbEdgeValues() []float32 {
	var v []float32
	for u := 0; u < 1<<16; u++ {
		v = append(v, math.Float32frombits(uint32(u)<<16))
	}
	for k := 0; k <= 256; k++ {
		p := float32((float64(k) + 0.5) / 255)
		for _, x := range []float32{p, 2*p - 1} {
			lo, hi := x, x
			for i := 0; i < 3; i++ {
				v = append(v, lo, hi)
				lo, hi = math.Nextafter32(lo, -2), math.Nextafter32(hi, 2)
			}
		}
	}
	return v
}

// The device's frame conversion (DownloadFramesAsync) equals the host's
// rgb24.Frames byte for byte on every bf16 value and on the rounding edges,
// for both value ranges and input dtypes.
func TestVAEFramesKernelMatchesHost(t *testing.T) {
	g := gpu(t)
	vals := rgbEdgeValues()
	const W = 64
	H := (len(vals) + 3*W - 1) / (3 * W)
	vals = append(vals, make([]float32, 3*H*W-len(vals))...)
	shape := []int{3, 1, H, W}
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		for _, rng := range []rgb24.Range{rgb24.Signed, rgb24.Unit} {
			x := g.Upload(dt, shape, vals)
			want, err := rgb24.Frames(g.Download(x), shape, rng)
			if err != nil {
				t.Fatal(err)
			}
			got := g.DownloadFramesAsync(x, rng).Frames()
			if len(got) != 1 || len(got[0]) != len(want[0]) {
				t.Fatalf("%v range %d: %d frames, want 1 of %d bytes", dt, rng, len(got), len(want[0]))
			}
			for i := range got[0] {
				if got[0][i] != want[0][i] {
					px, c := i/3, i%3
					in := vals[c*H*W+px]
					t.Fatalf("%v range %d: pixel %d channel %d (input %v): device %d, host %d", dt, rng, px, c, in, got[0][i], want[0][i])
				}
			}
		}
	}
}

// DownloadAsync gives Download's values, frees its source once copied
// (also after Discard), and refuses a second reading.
func TestVAEDownloadAsync(t *testing.T) {
	g := gpu(t)
	r := rng(t)
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		shape := []int{3, 5, 33, 71}
		x := g.Upload(dt, shape, randVals(r, tensor.NumElements(shape), 3))
		want := g.Download(x)
		p := g.DownloadAsync(x)
		got := p.Floats()
		if !slices.Equal(got, want) {
			t.Errorf("%v: DownloadAsync differs from Download", dt)
		}
		if !x.(*Tensor).buf.freed {
			t.Errorf("%v: the source was not freed once copied", dt)
		}
		if err := opErr(func() { p.Floats() }); err == nil || !strings.Contains(err.Error(), "already finished") {
			t.Errorf("%v: second Floats: %v, want an error", dt, err)
		}
		y := g.Upload(dt, shape, want)
		g.DownloadAsync(y).Discard()
		if !y.(*Tensor).buf.freed {
			t.Errorf("%v: Discard did not free the source", dt)
		}
	}
}

// wpackLaunches counts the weight-repacking kernels in a profile.
func wpackLaunches(ps []ProfileEntry) int {
	n := 0
	for _, e := range ps {
		if strings.Contains(e.Name, "wpack") {
			n += e.Calls
		}
	}
	return n
}

// A weight marked constant is repacked once: later convolutions (also
// after the scope of the first has ended, which must not free the cache)
// reuse the packed copy and give the same bits, and freeing the weight
// frees the copy. dw: with the dw conv kernel (its own weight layout).
func TestConvConstantWeightCache(t *testing.T) {
	g := gpu(t)
	r := rng(t)
	defer func(d bool) { convDW = d }(convDW)
	for _, c := range []struct {
		cin, cout, kt int
		dw            bool
	}{{64, 96, 3, false}, {16, 64, 3, false}, {96, 3, 3, false}, {96, 96, 3, true}} {
		convDW = c.dw
		xs, ws := []int{c.cin, 4, 10, 12}, []int{c.cout, c.cin, c.kt, 3, 3}
		x := g.Upload(tensor.BF16, xs, randVals(r, tensor.NumElements(xs), 1))
		w := g.Upload(tensor.BF16, ws, randVals(r, tensor.NumElements(ws), 0.1))
		p := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
		conv := func() []float32 {
			y := g.Conv3d(x, w, nil, p)
			defer g.Free(y)
			return g.Download(y)
		}
		want := conv()
		g.MarkConstant(w)
		g.StartProfile()
		sc := g.Begin()
		y1 := conv()
		sc.End()
		filler := g.Upload(tensor.BF16, ws, make([]float32, tensor.NumElements(ws))) // takes a freed block of the weight's size, if any
		y2 := conv()
		prof := g.StopProfile()
		g.Free(filler)
		g.Free(x)
		if n := wpackLaunches(prof); n != 1 {
			t.Errorf("%d→%d: %d repacks in two convolutions of a constant weight, want 1", c.cin, c.cout, n)
		}
		if !slices.Equal(y1, want) || !slices.Equal(y2, want) {
			t.Errorf("%d→%d: convolution with the cached weight differs", c.cin, c.cout)
		}
		wb := w.(*Tensor).buf
		var cached []*buffer
		for _, d := range wb.derived {
			cached = append(cached, d.buf)
		}
		loose := g.Loose()
		g.Free(w)
		if n := g.Loose(); n != loose-2 {
			t.Errorf("%d→%d: freeing the weight left %d loose allocations, want %d (the weight and its cached form gone)", c.cin, c.cout, n, loose-2)
		}
		if len(cached) != 1 || !cached[0].freed {
			t.Errorf("%d→%d: %d cached forms, freed with the weight: %v; want 1, freed", c.cin, c.cout, len(cached), len(cached) == 1 && cached[0].freed)
		}
	}
}

// The overlapped decode (async downloads, cached weight repacks, frames
// converted on the device) equals the sequential one bit for bit, at the
// real Wan2.1 widths (the sm_90a convolutions and fused packs on Hopper),
// and its second decode repacks no weight.
func TestVAEDecodeOverlapMatchesSync(t *testing.T) {
	g := gpu(t)
	f, err := checkpoint.ParseSafetensors("random-wan2.1-vae.safetensors", randomVAESafetensors(96, 16, 5))
	if err != nil {
		t.Fatal(err)
	}
	r := rng(t)
	shape := []int{16, 3, 8, 12}
	latent := randVals(r, tensor.NumElements(shape), 2)
	for _, dt := range vaeDTypes {
		t.Run(dt.String(), func(t *testing.T) {
			defer wanvae.SetOverlap(wanvae.SetOverlap(false))
			loose := g.Loose()
			old, err := wanvae.Load(g, f, wanvae.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			before := convHopperLaunches.Load()
			want, ws, err := old.Decode(latent, shape)
			if err != nil {
				t.Fatal(err)
			}
			hopper := convHopperLaunches.Load() - before
			wantFrames, err := wanvae.Frames(want, ws)
			if err != nil {
				t.Fatal(err)
			}
			wanvae.SetOverlap(true)
			v, err := wanvae.Load(g, f, wanvae.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			for run := 0; run < 2; run++ {
				g.StartProfile()
				got, gs, err := v.Decode(latent, shape)
				var frames [][]uint8
				if err == nil {
					err = v.DecodeFrames(latent, shape, func(first int, fr [][]uint8, w, h int) error {
						if first != len(frames) || w != ws[3] || h != ws[2] {
							t.Errorf("frames from %d (%dx%d), want from %d (%dx%d)", first, w, h, len(frames), ws[3], ws[2])
						}
						frames = append(frames, fr...)
						return nil
					})
				}
				prof := g.StopProfile()
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(gs, ws) || !slices.Equal(got, want) {
					d, at := 0.0, -1
					for i := range min(len(got), len(want)) {
						if e := math.Abs(float64(got[i] - want[i])); e > d || (got[i] != want[i] && at < 0) {
							d, at = e, i
						}
					}
					t.Fatalf("run %d: overlapped decode %v differs from the sequential one %v (max |Δ| %g, first at %d)", run, gs, ws, d, at)
				}
				if !slices.EqualFunc(frames, wantFrames, slices.Equal) {
					t.Fatalf("run %d: DecodeFrames differs from Frames of the sequential decode", run)
				}
				if n := wpackLaunches(prof); run == 1 && n != 0 {
					t.Errorf("second overlapped decode repacked weights %d times, want 0", n)
				}
			}
			old.Free()
			v.Free()
			if n := g.Loose(); n != loose {
				t.Errorf("%d device allocations outside scopes after both VAEs were freed, want %d as before: downloads or cached repacks left behind", n, loose)
			}
			t.Logf("%v: %d sm_90a convolutions per decode; video %v identical", dt, hopper, ws)
		})
	}
}

// conv_pack_norm_cl4 (8-byte loads) and its 40-register build cl4b write
// the same packed input and tail as conv_pack_norm_cl, bit for bit, and
// every element of it: several column blocks (full and partial), one
// block, history or none, padding 1 or 0, the decoder's widths. Each also
// writes the same values in the dw kernel's planar layout ([C/8][rows][8]).
func TestConvPackNormVecMatchesScalar(t *testing.T) {
	g := gpu(t)
	if g.info.Arch != "sm_90" {
		t.Skipf("the packing kernels are sm_90a's; this GPU is %s", g.info.Arch)
	}
	r := rng(t)
	defer func(v string) { packNorm = v }(packNorm)
	for _, c := range []struct{ C, th, T, H, W, pad int }{
		{96, 2, 4, 5, 200, 1}, {384, 2, 1, 6, 104, 1}, {192, 0, 1, 5, 68, 1},
		{96, 1, 4, 3, 64, 1}, {32, 2, 4, 3, 4, 1}, {64, 2, 4, 4, 136, 0},
	} {
		xs := []int{c.C, c.T, c.H, c.W}
		x := g.Upload(tensor.BF16, xs, randVals(r, tensor.NumElements(xs), 4))
		var h backend.Tensor
		var hp uintptr
		if c.th > 0 {
			hs := []int{c.C, c.th, c.H, c.W}
			h = g.Upload(tensor.BF16, hs, randVals(r, tensor.NumElements(hs), 4))
			hp = T(h).buf.ptr
		}
		gamma := g.Upload(tensor.BF16, []int{c.C}, randVals(r, c.C, 1.5))
		p := backend.Conv3dParams{PadT: [2]int{2 - c.th, 0}, PadH: [2]int{c.pad, c.pad}, PadW: [2]int{c.pad, c.pad}}
		xshape := []int{c.C, c.th + c.T, c.H, c.W}
		rows := (c.th + c.T + 2 - c.th) * (c.H + 2*c.pad) * (c.W + 2*c.pad)
		run := func(mode string, planar bool) (xp, tail []float32) {
			packNorm = mode
			var xpt, tt *Tensor
			func() {
				defer g.enter()()
				xpt = g.newTensor(tensor.BF16, []int{rows, c.C})
				g.convPack(xpt, T(x), hp, c.th, T(gamma), xshape, p, 2, false, convExtra{}, planar, &tt)
			}()
			defer func() { g.Free(xpt); g.Free(tt) }()
			return g.Download(xpt), g.Download(tt)
		}
		defer func() { g.Free(x); g.Free(gamma); g.Free(h) }()
		xp0, tail0 := run("scalar", false)
		for _, m := range []struct {
			mode   string
			planar bool
		}{{"", false}, {"cl4b", false}, {"scalar", true}, {"", true}, {"cl4b", true}} {
			xp1, tail1 := run(m.mode, m.planar)
			name := fmt.Sprintf("%q planar %v: C%d th%d T%d %dx%d pad%d", m.mode, m.planar, c.C, c.th, c.T, c.H, c.W, c.pad)
			for i := range xp1 {
				j := i // the channels-last index of the same element
				if m.planar {
					row, c8, e := (i/8)%rows, i/(8*rows), i%8
					j = row*c.C + 8*c8 + e
				}
				if math.IsNaN(float64(xp1[i])) || math.Float32bits(xp1[i]) != math.Float32bits(xp0[j]) {
					t.Fatalf("%s: packed element %d (row %d channel %d): %v, conv_pack_norm_cl %v", name, i, j/c.C, j%c.C, xp1[i], xp0[j])
				}
			}
			for i := range tail1 {
				if math.IsNaN(float64(tail1[i])) || math.Float32bits(tail1[i]) != math.Float32bits(tail0[i]) {
					t.Fatalf("%s: tail element %d: %v, conv_pack_norm_cl %v", name, i, tail1[i], tail0[i])
				}
			}
		}
	}
}
