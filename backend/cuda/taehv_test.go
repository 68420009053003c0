package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The tiny VAE (models/taehv) on the GPU: its ops against the CPU, the
// whole model against the CPU on random weights, the conformance set, and
// the 480p benchmark.

// TestConvFusedMatchesCPU runs TAEHV's fused convolutions (history, grown
// and upsampled input, residual, ReLU) at its widths against the CPU's
// unfused definition. bf16 with Cin a multiple of 32 must take the sm_90a
// kernel on an sm_90 device (one pack + one conv); the rest (Cin 16, the
// float32 path) runs the unfused ops on the GPU.
func TestConvFusedMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	p1 := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	first := p1
	first.PadT = [2]int{1, 0}
	cases := []struct {
		name       string
		cin, cout  int
		xc         int // x's channels (grow·cin when grown)
		th, T      int // history frames, x frames
		H, W       int
		kt         int
		grow       int
		up, res    bool
		relu, bias bool
		p          backend.Conv3dParams
	}{
		{"mem256_first", 256, 256, 256, 0, 3, 7, 9, 2, 1, false, false, true, true, first},
		{"mem256_hist", 256, 256, 256, 1, 2, 7, 9, 2, 1, false, false, true, true, p1},
		{"mem128_res", 128, 128, 128, 0, 3, 9, 13, 1, 1, false, true, true, true, p1},
		{"mem64_first", 64, 64, 64, 0, 4, 11, 10, 2, 1, false, false, true, true, first},
		{"mem64_hist_res", 64, 64, 64, 1, 1, 11, 10, 1, 1, false, true, true, true, p1},
		{"up256to128", 256, 128, 256, 0, 2, 5, 6, 1, 1, true, false, false, false, p1},
		{"grow2up128to64", 128, 64, 256, 0, 2, 5, 7, 1, 2, true, false, false, false, p1},
		{"grow2up64to64relu", 64, 64, 128, 0, 3, 6, 5, 1, 2, true, false, true, false, p1},
		{"head64to3", 64, 3, 64, 0, 3, 10, 12, 1, 1, false, false, false, true, p1},
		{"in16to256relu", 16, 256, 16, 0, 2, 4, 5, 1, 1, false, false, true, true, p1},
	}
	sm90 := g.info.Arch == "sm_90" && g.drv.cuTensorMapEncodeTiled != 0 && convHopper
	for _, tc := range cases {
		for _, dt := range vaeDTypes {
			t.Run(tc.name+"/"+dt.String(), func(t *testing.T) {
				xs := []int{tc.xc, tc.T, tc.H, tc.W}
				ws := []int{tc.cout, tc.cin, tc.kt, 3, 3}
				gx, cx := both(g, c, dt, xs, randVals(r, tensor.NumElements(xs), 1))
				gw, cw := both(g, c, dt, ws, randVals(r, tensor.NumElements(ws), 1/float32(tc.kt*9)))
				var gf, cf backend.ConvFusion
				gf.Grow, cf.Grow, gf.Up, cf.Up, gf.ReLU, cf.ReLU = tc.grow, tc.grow, tc.up, tc.up, tc.relu, tc.relu
				var gb, cb backend.Tensor
				if tc.bias {
					gb, cb = both(g, c, dt, []int{tc.cout}, randVals(r, tc.cout, 0.5))
				}
				if tc.th > 0 {
					hs := []int{tc.cin, tc.th, tc.H, tc.W}
					gf.Hist, cf.Hist = both(g, c, dt, hs, randVals(r, tensor.NumElements(hs), 1))
				}
				T, H, W := tc.th+tc.T*max(tc.grow, 1), tc.H, tc.W
				if tc.up {
					H, W = 2*H, 2*W
				}
				os := backend.Conv3dOutShape([]int{tc.cin, T, H, W}, ws, tc.p)
				if tc.res {
					gf.Res, cf.Res = both(g, c, dt, os, randVals(r, tensor.NumElements(os), 1))
				}
				cy := c.ConvFused(cx, cw, cb, tc.p, cf)
				want := c.Download(cy)
				type variant struct{ persist, n256 bool }
				variants := []variant{{false, false}, {true, false}}
				if tc.cout%256 == 0 {
					variants = append(variants, variant{false, true}, variant{true, true})
				}
				defer func(p *bool, n bool) { convPersist, convN256 = p, n }(convPersist, convN256)
				for _, v := range variants {
					convPersist, convN256 = &v.persist, v.n256
					before := convHopperLaunches.Load()
					gy := g.ConvFused(gx, gw, gb, tc.p, gf)
					used := convHopperLaunches.Load() - before
					if fast := sm90 && dt == tensor.BF16 && tc.cin%32 == 0; fast && used != 1 {
						t.Errorf("sm_90 device: %d launches of the sm_90a conv kernel, want 1", used)
					}
					if !slices.Equal(gy.Shape(), cy.Shape()) || gy.DType() != dt {
						t.Fatalf("output %v %v, want %v %v", gy.DType(), gy.Shape(), dt, cy.Shape())
					}
					golden.Compare(t, fmt.Sprintf("%s persist=%v n256=%v", tc.name, v.persist, v.n256), g.Download(gy), want, vaeTol(dt))
					g.Free(gy)
				}
			})
		}
	}
}

// TestConvFusedPackedChain runs a MemBlock-like chain whose intermediate
// results stay in the packed layout (ConvFusion.Intermediate): packed
// outputs, packed inputs with the causal kt = 2 window, a packed residual,
// a 1x1 conv and the 3-channel head reading packed input, and the unpack
// fallback for a conv that cannot read it. Poisoned allocations make any
// border the epilogue fails to zero show up as NaN.
func TestConvFusedPackedChain(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	p1 := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	first := p1
	first.PadT = [2]int{1, 0}
	sm90 := g.info.Arch == "sm_90" && g.drv.cuTensorMapEncodeTiled != 0 && convHopper
	for _, sz := range []struct{ C, T, H, W int }{{64, 3, 9, 13}, {128, 2, 6, 7}, {256, 2, 5, 4}} {
		t.Run(fmt.Sprintf("C%d_%dx%dx%d", sz.C, sz.T, sz.H, sz.W), func(t *testing.T) {
			C := sz.C
			xs := []int{C, sz.T, sz.H, sz.W}
			gx0, cx0 := both(g, c, tensor.BF16, xs, randVals(r, tensor.NumElements(xs), 1))
			wt := func(cout, cin, kt, k int) (backend.Tensor, backend.Tensor) {
				s := []int{cout, cin, kt, k, k}
				return both(g, c, tensor.BF16, s, randVals(r, tensor.NumElements(s), 1/float32(kt*k*k)))
			}
			bias := func(n int) (backend.Tensor, backend.Tensor) {
				return both(g, c, tensor.BF16, []int{n}, randVals(r, n, 0.3))
			}
			w0g, w0c := wt(C, C, 1, 3)
			w1g, w1c := wt(C, C, 2, 3)
			w2g, w2c := wt(C, C, 1, 3)
			w3g, w3c := wt(C, C, 1, 3)
			b1g, b1c := bias(C)
			b3g, b3c := bias(C)
			wgg, wgc := wt(2*C, C, 1, 1)
			whg, whc := wt(3, C, 1, 3)
			bhg, bhc := bias(3)
			run := func(b backend.TinyVAE, inter bool, x0, w0, w1, b1, w2, w3, b3, wg, wh, bh backend.Tensor) (out, grown, head, fallback, xin backend.Tensor) {
				x := b.ConvFused(x0, w0, nil, p1, backend.ConvFusion{ReLU: true, Intermediate: inter})
				a := b.ConvFused(x, w1, b1, first, backend.ConvFusion{ReLU: true, Intermediate: inter})
				m := b.ConvFused(a, w2, nil, p1, backend.ConvFusion{ReLU: true, Intermediate: inter})
				out = b.ConvFused(m, w3, b3, p1, backend.ConvFusion{Res: x, ReLU: true, Intermediate: inter})
				grown = b.ConvFused(out, wg, nil, backend.Conv3dParams{}, backend.ConvFusion{})
				head = b.ConvFused(out, wh, bh, p1, backend.ConvFusion{})
				// Unpadded 3x3: the packed layout cannot serve it; unpacked first.
				fallback = b.ConvFused(out, w2, nil, backend.Conv3dParams{}, backend.ConvFusion{ReLU: true})
				// A channel-first result with the packed residual.
				xin = b.ConvFused(m, w3, nil, p1, backend.ConvFusion{Res: x})
				return
			}
			before := convHopperLaunches.Load()
			og, gg, hg, fg, xg := run(g, true, gx0, w0g, w1g, b1g, w2g, w3g, b3g, wgg, whg, bhg)
			if sm90 {
				if n := convHopperLaunches.Load() - before; n != 8 {
					t.Errorf("%d sm_90a conv launches, want 8", n)
				}
				if !anyT(og).packed {
					t.Error("an Intermediate result on sm_90 is not packed")
				}
			}
			// The packed layout only moves data: the same kernels on
			// channel-first tensors must give the same bits.
			ug, ugg, uhg, ufg, uxg := run(g, false, gx0, w0g, w1g, b1g, w2g, w3g, b3g, wgg, whg, bhg)
			oc, gc, hc, fc, xc := run(c, false, cx0, w0c, w1c, b1c, w2c, w3c, b3c, wgc, whc, bhc)
			chain := og
			if anyT(og).packed {
				chain = g.unpack(anyT(og))
			}
			for _, v := range []struct {
				what           string
				packed, cf, cp backend.Tensor
			}{
				{"chain", chain, ug, oc},
				{"1x1 on packed", gg, ugg, gc},
				{"head on packed", hg, uhg, hc},
				{"unpack fallback", fg, ufg, fc},
				{"packed residual, channel-first out", xg, uxg, xc},
			} {
				got := g.Download(v.packed)
				if d := golden.MaxAbs(got, g.Download(v.cf)); d != 0 {
					t.Errorf("%s: packed and channel-first GPU runs differ (max abs %g)", v.what, d)
				}
				// Against the CPU, five bf16 convolutions deep: a rounding
				// that lands the other way compounds (one conv: ~1e-4).
				golden.Compare(t, v.what+" vs CPU", got, c.Download(v.cp), 1e-2)
			}
			if sm90 {
				var err error
				func() {
					defer backend.Recover(&err)
					g.Download(og)
				}()
				if err == nil || !strings.Contains(err.Error(), "packed layout") {
					t.Errorf("Download of a packed tensor: %v, want a refusal", err)
				}
			}
		})
	}
}

// TestTinyActMatchesCPU: ReLU, ScaledTanh and Clamp against the CPU.
func TestTinyActMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	shape := []int{3, 5, 7, 11}
	x := randVals(r, tensor.NumElements(shape), 6)
	x[0], x[1], x[2] = 0, float32(math.Copysign(0, -1)), 3 // a negative zero too
	for _, dt := range vaeDTypes {
		gx, cx := both(g, c, dt, shape, x)
		for _, op := range []struct {
			name string
			f    func(b backend.TinyVAE, x backend.Tensor) backend.Tensor
			tol  float64
		}{
			{"relu", func(b backend.TinyVAE, x backend.Tensor) backend.Tensor { return b.ReLU(x) }, 0},
			{"tanh3", func(b backend.TinyVAE, x backend.Tensor) backend.Tensor { return b.ScaledTanh(x, 3) }, 1e-6},
			{"clamp01", func(b backend.TinyVAE, x backend.Tensor) backend.Tensor { return b.Clamp(x, 0, 1) }, 0},
		} {
			got, want := g.Download(op.f(g, gx)), c.Download(op.f(c, cx))
			tol := op.tol
			if dt == tensor.BF16 && tol > 0 {
				tol = 4e-3 // a float32 tanh an ulp apart may round to the neighbouring bf16
			}
			if d := golden.RelL2(got, want); d > tol {
				t.Errorf("%s %v: rel-L2 %.3e (tolerance %.0e)", op.name, dt, d, tol)
			}
		}
	}
}

// randomTAEHV is a TAEW2.1 checkpoint of random weights (real shapes).
func randomTAEHV(seed uint64) checkpoint.File {
	return testmodels.NewRandom("random-taew2_1.safetensors", taehv.Tensors(16), seed)
}

func randLatent(r *rand.Rand, shape []int) []float32 {
	x := make([]float32, tensor.NumElements(shape))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// TestTAEHVModelMatchesCPU decodes (parallel and streamed) and encodes with
// the whole tiny VAE on random weights on the GPU and the CPU. bf16:
// a rounding that lands the other way cascades through ~25 layers (5e-2,
// as for the Wan VAE); float32 1e-4.
func TestTAEHVModelMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	f := randomTAEHV(11)
	r := rng(t)
	lshape := []int{16, 3, 5, 7}
	latent := randLatent(r, lshape)
	vshape := []int{3, 7, 24, 16}
	video := randVals(r, tensor.NumElements(vshape), 0.5)
	for i := range video {
		video[i] += 0.5
	}
	for _, dt := range vaeDTypes {
		t.Run(dt.String(), func(t *testing.T) {
			tol := 5e-2
			if dt == tensor.F32 {
				tol = 1e-4
			}
			mg, err := taehv.Load(g, f, taehv.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			defer mg.Free()
			mc, err := taehv.Load(c, f, taehv.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			dg, gs, err := mg.Decode(latent, lshape)
			if err != nil {
				t.Fatal(err)
			}
			dc, cs, err := mc.Decode(latent, lshape)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(gs, cs) {
				t.Fatalf("GPU video %v, CPU %v", gs, cs)
			}
			golden.Compare(t, "decode", dg, dc, tol)
			sg, _, err := mg.DecodeSequential(latent, lshape, nil)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, "decode sequential", sg, dc, tol)
			t.Logf("GPU parallel vs sequential: max abs %.3e", golden.MaxAbs(dg, sg))
			eg, _, err := mg.Encode(video, vshape)
			if err != nil {
				t.Fatal(err)
			}
			ec, _, err := mc.Encode(video, vshape)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, "encode", eg, ec, tol)
		})
	}
}

// TestGoldenTAEHVOnGPU runs the tiny VAE's conformance set (the reference's
// taehv.py on random float16 weights) on the GPU, with the set's README
// tolerances: rel-L2 1e-5 in float32, 5e-2 in bf16. Shapes come from the
// set, so it runs unchanged on another set of the same layout.
func TestGoldenTAEHVOnGPU(t *testing.T) {
	g := gpu(t)
	man := golden.LoadManifestFile(t, golden.TAEHVDir+"/manifest.json")
	cases := golden.Open(t, golden.TAEHVDir+"/cases.safetensors")
	wf, err := checkpoint.Open(golden.TAEHVWeights(t))
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	get := func(name string) ([]float32, []int) {
		d, s := golden.Tensor(t, cases, name)
		if want := man.Ints(t, "tensors", name, "shape"); !slices.Equal(s, want) {
			t.Fatalf("%s: shape %v, manifest %v", name, s, want)
		}
		return d, s
	}
	run := func(t *testing.T, in, want string, tol float64, f func([]float32, []int) ([]float32, []int, error)) {
		x, xs := get(in)
		ref, rs := get(want)
		var got []float32
		for n := 0; n < xs[0]; n++ {
			s, ss := golden.SampleCTHW(x, xs, n)
			y, ys, err := f(s, ss)
			if err != nil {
				t.Fatal(err)
			}
			if w := []int{rs[2], rs[1], rs[3], rs[4]}; !slices.Equal(ys, w) {
				t.Fatalf("%s: got [C,T,H,W] %v, reference NTCHW %v", want, ys, rs)
			}
			got = append(got, golden.TCHW(y, ys)...)
		}
		golden.Compare(t, want, got, ref, tol)
	}
	for _, dt := range vaeDTypes {
		t.Run(dt.String(), func(t *testing.T) {
			tol := 5e-2
			if dt == tensor.F32 {
				tol = 1e-5
			}
			m, err := taehv.Load(g, wf, taehv.Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			run(t, "latent", "decoded", tol, m.Decode)
			run(t, "latent", "decoded_sequential", tol, func(x []float32, s []int) ([]float32, []int, error) {
				return m.DecodeSequential(x, s, nil)
			})
			if _, ok := cases.Info("video"); ok && m.HasEncoder() {
				run(t, "video", "encoded", tol, m.Encode)
			}
		})
	}
}

// BenchmarkTAEHVDecode480p decodes a [16,21,60,104] latent (81 frames of
// 480x832, TurboDiffusion's 480p T2V) with the tiny VAE in bf16 (random
// weights, real shapes), every frame at once (parallel mode). One op is the
// decode on the GPU, from the latent on the device to the clamped video on
// the device, synchronised (the target is ≤ 60 ms); "download-ms" adds the
// video's copy to the host as float32, "rgb24-ms" is what the pipeline
// pays: host latent to rgb24 frames (DecodeChunks + Frames per chunk),
// "seq-ms" is the sequential
// (per-latent-frame, preview) mode without downloads. A profiled decode is
// printed per kernel.
func BenchmarkTAEHVDecode480p(b *testing.B) {
	g := vaeBenchBackend(b)
	m, err := taehv.Load(g, randomTAEHV(1), taehv.Options{DType: tensor.BF16})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	shape := []int{16, 21, 60, 104}
	latent := randLatent(rand.New(rand.NewPCG(2, 3)), shape)
	x := g.Upload(tensor.BF16, shape, latent)
	defer g.Free(x)
	y, err := m.DecodeTensor(x) // compiles the kernels
	if err != nil {
		b.Fatal(err)
	}
	if want := []int{3, 81, 480, 832}; !backend.SameShape(y.Shape(), want) {
		b.Fatalf("video %v, want %v", y.Shape(), want)
	}
	v := g.Download(y)
	g.Free(y)
	var sum float64
	for i, f := range v {
		if !(f >= 0 && f <= 1) {
			b.Fatalf("video value %d is %v", i, f)
		}
		sum += float64(f)
	}
	_, peak, _ := g.MemStats()
	g.StartProfile()
	t0 := time.Now()
	y, err = m.DecodeTensor(x)
	if err != nil {
		b.Fatal(err)
	}
	g.Sync()
	prof := g.StopProfile()
	g.Free(y)
	wall := float64(time.Since(t0).Microseconds()) / 1e3
	fmt.Printf("tiny VAE 480p: video mean %.4f, peak pool %.2f GiB\nper-kernel GPU time of one decode (wall %.1f ms, with two events per launch):\n%s",
		sum/float64(len(v)), float64(peak)/(1<<30), wall, FormatProfile(prof, wall))

	// Host-side extras, timed once each (medians of 3).
	med := func(f func()) float64 {
		var ts []float64
		for range 3 {
			t0 := time.Now()
			f()
			ts = append(ts, float64(time.Since(t0).Microseconds())/1e3)
		}
		slices.Sort(ts)
		return ts[1]
	}
	dl := med(func() {
		y, _ := m.DecodeTensor(x)
		g.Download(y)
		g.Free(y)
	})
	frames := med(func() {
		err := m.DecodeChunks(latent, shape, func(_ int, chunk []float32, cs []int) error {
			_, err := taehv.Frames(chunk, cs)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	})
	seq := med(func() {
		st := m.NewStream()
		for t := 0; t < shape[1]; t++ {
			xt := g.Slice(x, 1, t, t+1)
			y, err := st.PushTensor(xt)
			if err != nil {
				b.Fatal(err)
			}
			g.Free(y)
			g.Free(xt)
		}
		g.Sync()
		st.Close()
	})
	b.ResetTimer()
	for range b.N {
		y, err := m.DecodeTensor(x)
		if err != nil {
			b.Fatal(err)
		}
		g.Sync()
		g.Free(y)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/decode")
	b.ReportMetric(dl, "download-ms")
	b.ReportMetric(frames, "rgb24-ms")
	b.ReportMetric(seq, "seq-ms")
	b.ReportMetric(float64(peak)/(1<<30), "peakGiB")
}
