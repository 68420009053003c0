package cuda

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// vaeBenchBackend opens the GPU for a benchmark (no poisoning), skipping
// without one.
func vaeBenchBackend(b *testing.B) *Backend {
	g, _ := vaeBackends(b)
	g.Poison = false
	return g
}

// vaeKeys lists the tensors of a Wan2.1 VAE state dict of base width dim and
// zdim latent channels with their shapes (the module tree of docs/NUMERICS.md
// §8, keys as in Wan2.1_VAE.pth).
func vaeKeys(dim, zdim int) map[string][]int {
	m := map[string][]int{}
	conv := func(key string, cout, cin int, k ...int) {
		m[key+".weight"] = append([]int{cout, cin}, k...)
		m[key+".bias"] = []int{cout}
	}
	res := func(key string, cin, cout int) {
		m[key+".residual.0.gamma"] = []int{cin, 1, 1, 1}
		conv(key+".residual.2", cout, cin, 3, 3, 3)
		m[key+".residual.3.gamma"] = []int{cout, 1, 1, 1}
		conv(key+".residual.6", cout, cout, 3, 3, 3)
		if cin != cout {
			conv(key+".shortcut", cout, cin, 1, 1, 1)
		}
	}
	attn := func(key string, c int) {
		m[key+".norm.gamma"] = []int{c, 1, 1}
		conv(key+".to_qkv", 3*c, c, 1, 1)
		conv(key+".proj", c, c, 1, 1)
	}
	d, z, c := dim, zdim, 4*dim
	conv("encoder.conv1", d, 3, 3, 3, 3)
	dims := []int{d, d, 2 * d, 4 * d, 4 * d}
	idx := 0
	for s := 0; s < 4; s++ {
		in, out := dims[s], dims[s+1]
		for r := 0; r < 2; r++ {
			res(fmt.Sprintf("encoder.downsamples.%d", idx), in, out)
			in = out
			idx++
		}
		if s < 3 {
			key := fmt.Sprintf("encoder.downsamples.%d", idx)
			conv(key+".resample.1", out, out, 3, 3)
			if s > 0 {
				conv(key+".time_conv", out, out, 3, 1, 1)
			}
			idx++
		}
	}
	res("encoder.middle.0", c, c)
	attn("encoder.middle.1", c)
	res("encoder.middle.2", c, c)
	m["encoder.head.0.gamma"] = []int{c, 1, 1, 1}
	conv("encoder.head.2", 2*z, c, 3, 3, 3)
	conv("conv1", 2*z, 2*z, 1, 1, 1)
	conv("conv2", z, z, 1, 1, 1)
	conv("decoder.conv1", c, z, 3, 3, 3)
	res("decoder.middle.0", c, c)
	attn("decoder.middle.1", c)
	res("decoder.middle.2", c, c)
	udims := []int{c, c, c, 2 * d, d}
	idx = 0
	for s := 0; s < 4; s++ {
		in, out := udims[s], udims[s+1]
		if s > 0 {
			in /= 2
		}
		for r := 0; r < 3; r++ {
			res(fmt.Sprintf("decoder.upsamples.%d", idx), in, out)
			in = out
			idx++
		}
		if s < 3 {
			key := fmt.Sprintf("decoder.upsamples.%d", idx)
			conv(key+".resample.1", out/2, out, 3, 3)
			if s < 2 {
				conv(key+".time_conv", 2*out, out, 3, 1, 1)
			}
			idx++
		}
	}
	m["decoder.head.0.gamma"] = []int{d, 1, 1, 1}
	conv("decoder.head.2", 3, d, 3, 3, 3)
	return m
}

// randomVAESafetensors builds a safetensors file in memory holding a Wan2.1
// VAE with random bf16 weights: uniform with variance 1/fan-in (so
// activations keep their scale through the network), unit gammas, small
// biases.
func randomVAESafetensors(dim, zdim int, seed uint64) []byte {
	keys := vaeKeys(dim, zdim)
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	type entry struct {
		DType   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	header := map[string]entry{}
	off := 0
	for _, n := range names {
		sz := 2 * tensor.NumElements(keys[n])
		header[n] = entry{"BF16", keys[n], [2]int{off, off + sz}}
		off += sz
	}
	hj, err := json.Marshal(header)
	if err != nil {
		panic(err)
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	buf := make([]byte, 8+len(hj)+off)
	binary.LittleEndian.PutUint64(buf, uint64(len(hj)))
	copy(buf[8:], hj)
	data := buf[8+len(hj):]
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	for _, n := range names {
		e := header[n]
		sh := e.Shape
		dst := data[e.Offsets[0]:e.Offsets[1]]
		var a float32
		switch {
		case len(n) > 6 && n[len(n)-6:] == ".gamma":
			a = 0 // all ones below
		case len(n) > 5 && n[len(n)-5:] == ".bias":
			a = 0.02
		default:
			a = float32(math.Sqrt(3 / float64(tensor.NumElements(sh[1:]))))
		}
		for i := 0; i < len(dst); i += 2 {
			v := float32(1)
			if a != 0 {
				v = (2*rng.Float32() - 1) * a
			}
			binary.LittleEndian.PutUint16(dst[i:], tensor.BF16FromF32(v))
		}
	}
	return buf
}

// BenchmarkVAEDecode480p decodes a [16,21,60,104] latent (81 frames of
// 480x832, what TurboDiffusion's 480p T2V produces) with the real Wan2.1
// VAE configuration (random weights) in bf16, three ways: sync, the
// sequential decode (wanvae.SetOverlap(false): a host sync per chunk,
// weights repacked by every conv); overlap, Decode with each chunk's
// download overlapped with the next chunk and the weights repacked once;
// frames, DecodeFrames as the pipeline runs it (bytes converted on the
// GPU). One op is one whole decode, including the copy of the video to the
// host. Each mode loads its own VAE; its first decode, which compiles
// kernels, plans GEMMs and repacks weights, is not timed and its output is
// checked to be finite; a second decode is profiled per kernel.
func BenchmarkVAEDecode480p(b *testing.B) {
	g := vaeBenchBackend(b)
	f, err := checkpoint.ParseSafetensors("random-wan2.1-vae.safetensors", randomVAESafetensors(96, 16, 1))
	if err != nil {
		b.Fatal(err)
	}
	shape := []int{16, 21, 60, 104}
	rng := rand.New(rand.NewPCG(2, 3))
	latent := make([]float32, tensor.NumElements(shape))
	for i := range latent {
		latent[i] = float32(rng.NormFloat64())
	}
	for _, mode := range []string{"sync", "overlap", "frames"} {
		var v *wanvae.VAE
		var peak int64
		b.Run(mode, func(b *testing.B) {
			defer wanvae.SetOverlap(wanvae.SetOverlap(mode != "sync"))
			decode := func() error {
				if mode != "frames" {
					_, _, err := v.Decode(latent, shape)
					return err
				}
				n := 0
				err := v.DecodeFrames(latent, shape, func(first int, fr [][]uint8, w, h int) error {
					n += len(fr)
					return nil
				})
				if err == nil && n != 81 {
					err = fmt.Errorf("%d frames, want 81", n)
				}
				return err
			}
			if v == nil { // the first of Go's calls (b.N = 1, then 3)
				if v, err = wanvae.Load(g, f, wanvae.Options{DType: tensor.BF16}); err != nil {
					b.Fatal(err)
				}
				g.ResetPeak()
				video, vshape, err := v.Decode(latent, shape)
				if err != nil {
					b.Fatal(err)
				}
				if want := []int{3, 81, 480, 832}; !backend.SameShape(vshape, want) {
					b.Fatalf("video shape %v, want %v", vshape, want)
				}
				for i, x := range video {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						b.Fatalf("video value %d is %v", i, x)
					}
				}
				// Pool high-water mark of the first decode (weights and
				// cached repacks included); reported after the timed loop,
				// since ResetTimer drops reported metrics.
				_, peak, _ = g.MemStats()
				// One untimed decode with every kernel timed by CUDA
				// events: where the time goes, per kernel (per GEMM shape
				// for cuBLASLt).
				g.StartProfile()
				t0 := time.Now()
				if err := decode(); err != nil {
					b.Fatal(err)
				}
				prof := g.StopProfile()
				wall := float64(time.Since(t0).Microseconds()) / 1e3
				// Printed, not logged: the testing package cuts benchmark logs short.
				fmt.Printf("%s: per-kernel GPU time of one decode (wall %.1f ms, with two events per launch):\n%s", mode, wall, FormatProfile(prof, wall))
			}
			b.ResetTimer()
			for range b.N {
				if err := decode(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak)/(1<<30), "peakGiB")
		})
		if v != nil {
			v.Free()
		}
	}
}

// BenchmarkConv3dBF16 times the decoder's heaviest convolutions (a causal
// 3x3x3 conv on a 4-frame chunk plus its 2 cached frames, and the 2-D
// resample convs) on the mma.sync kernel (wide tiles, see convWide) and on
// the sm_90a TMA + wgmma kernel where the device has it (one block per tile,
// persistent: tma-p, whole-tap steps for Cin 96: tma-s), and reports
// TFLOP/s (2 flops per multiply-add).
func BenchmarkConv3dBF16(b *testing.B) {
	g := vaeBenchBackend(b)
	rng := rand.New(rand.NewPCG(4, 5))
	for _, c := range []struct {
		name      string
		cin, cout int
		t, h, w   int
		kt        int
	}{
		{"up3_96x96_480x832", 96, 96, 6, 480, 832, 3},
		{"up2_192x192_240x416", 192, 192, 6, 240, 416, 3},
		{"up1_384x384_120x208", 384, 384, 4, 120, 208, 3},
		{"mid_384x384_60x104", 384, 384, 3, 60, 104, 3},
		{"resample_192x96_480x832", 192, 96, 4, 480, 832, 1},
		{"resample_384x192_240x416", 384, 192, 4, 240, 416, 1},
		{"head_96x3_480x832", 96, 3, 6, 480, 832, 3},
	} {
		for _, v := range []string{"mma", "tma", "tma-p", "tma-s", "tma-dw", "tma-dwp"} {
			if (v == "tma-s" || v == "tma-dw" || v == "tma-dwp") && c.cin != 96 {
				continue
			}
			b.Run(c.name+"/"+v, func(b *testing.B) {
				defer func(h bool, p *bool, s, d bool) { convHopper, convPersist, convSplit96, convDW = h, p, s, d }(convHopper, convPersist, convSplit96, convDW)
				convHopper, convPersist, convSplit96, convDW = v != "mma", ptrTo(v == "tma-p" || v == "tma-dwp"), v == "tma-s", v == "tma-dw" || v == "tma-dwp"
				before := convHopperLaunches.Load()
				benchConv(b, g, rng, c.cin, c.cout, c.t, c.h, c.w, c.kt)
				b.ReportMetric(float64(convHopperLaunches.Load()-before)/float64(b.N+1), "tma/op")
			})
		}
	}
}

// benchConv times one conv with kt×3×3 taps over t input frames (kt = 3:
// a causal chunk, t-2 output frames; kt = 1: a 2-D conv on every frame).
func benchConv(b *testing.B, g *Backend, rng *rand.Rand, cin, cout, t, h, w, kt int) {
	xs := []int{cin, t, h, w}
	ws := []int{cout, cin, kt, 3, 3}
	x := g.Upload(tensor.BF16, xs, randVals(rng, tensor.NumElements(xs), 1))
	wt := g.Upload(tensor.BF16, ws, randVals(rng, tensor.NumElements(ws), 0.05))
	bias := g.Upload(tensor.BF16, []int{cout}, randVals(rng, cout, 0.1))
	defer func() { g.Free(x); g.Free(wt); g.Free(bias) }()
	p := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	g.Free(g.Conv3d(x, wt, bias, p)) // compiles the module
	g.Sync()
	b.ResetTimer()
	for range b.N {
		g.Free(g.Conv3d(x, wt, bias, p))
	}
	g.Sync()
	flops := 2 * float64(cout*cin*kt*9) * float64((t-kt+1)*h*w)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e12, "TFLOP/s")
}

// BenchmarkVAEDecodeTiled decodes 81 frames at 480p and 720p untiled and in
// spatial tiles (wanvae.SetTiling) of 32 and 48 latent pixels with the real
// Wan2.1 VAE configuration (random weights, bf16), reporting the pool's
// high-water mark of live tensors (weights included) and what the pool held
// from the driver after the first decode (the cache emptied before it):
// the memory cap tiling buys and what it costs in time. The first decode
// of each is untimed.
func BenchmarkVAEDecodeTiled(b *testing.B) {
	g := vaeBenchBackend(b)
	f, err := checkpoint.ParseSafetensors("random-wan2.1-vae.safetensors", randomVAESafetensors(96, 16, 1))
	if err != nil {
		b.Fatal(err)
	}
	v, err := wanvae.Load(g, f, wanvae.Options{DType: tensor.BF16})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Free()
	rng := rand.New(rand.NewPCG(2, 3))
	for _, res := range []struct {
		name string
		h, w int
	}{{"480p", 60, 104}, {"720p", 90, 160}} {
		shape := []int{16, 21, res.h, res.w}
		latent := make([]float32, tensor.NumElements(shape))
		for i := range latent {
			latent[i] = float32(rng.NormFloat64())
		}
		for _, tile := range []int{0, 48, 32} {
			b.Run(fmt.Sprintf("%s/tile%d", res.name, tile), func(b *testing.B) {
				if err := v.SetTiling(tile); err != nil {
					b.Fatal(err)
				}
				defer v.SetTiling(0)
				g.Sync()
				func() { defer g.enter()(); g.trim() }() // held = what this decode takes from the driver
				g.ResetPeak()
				if _, _, err := v.Decode(latent, shape); err != nil {
					b.Fatal(err)
				}
				_, peak, held := g.MemStats()
				b.ResetTimer()
				for range b.N {
					if _, _, err := v.Decode(latent, shape); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(peak)/(1<<30), "peakGiB")
				b.ReportMetric(float64(held)/(1<<30), "heldGiB")
			})
		}
	}
}
