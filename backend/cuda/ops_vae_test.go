package cuda

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The VAE and text op tests run each op on the GPU and on the CPU backend
// (the reference implementation) on the same random inputs. They skip
// without a GPU; the argument checks at the end need none.

// vaeBackends returns the shared GPU backend (skipping without one; new
// tensors are poisoned with NaN, so an output element a kernel forgot to
// write shows) and a CPU backend, the reference.
func vaeBackends(t testing.TB) (*Backend, *cpu.Backend) {
	t.Helper()
	return gpu(t), cpu.New()
}

// randVals returns n values uniform in [-a, a].
func randVals(rng *rand.Rand, n int, a float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (2*rng.Float32() - 1) * a
	}
	return v
}

// vaeTol is the rel-L2 tolerance of a GPU op against the CPU: both compute
// in float32 and round the same way, so they differ only where float32 sums
// taken in another order land on the other side of a rounding boundary.
func vaeTol(dt tensor.DType) float64 {
	if dt == tensor.BF16 {
		return 1e-3
	}
	return 1e-5
}

var vaeDTypes = []tensor.DType{tensor.BF16, tensor.F32}

// both uploads the same data to the GPU and the CPU backend.
func both(g *Backend, c *cpu.Backend, dt tensor.DType, shape []int, data []float32) (backend.Tensor, backend.Tensor) {
	return g.Upload(dt, shape, data), c.Upload(dt, shape, data)
}

func TestConv3dMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	cases := []struct {
		name       string
		cin, cout  int
		T, H, W    int
		kt, kh, kw int
		p          backend.Conv3dParams
		bias       bool
	}{
		{"causal3x3x3", 40, 100, 4, 9, 13, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"pointwise", 64, 192, 1, 12, 20, 1, 1, 1, backend.Conv3dParams{}, false},
		{"down2d", 32, 16, 2, 10, 11, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{0, 1}, PadW: [2]int{0, 1}, Stride: [3]int{1, 2, 2}}, true},
		{"timeStride2", 16, 48, 5, 4, 6, 3, 1, 1, backend.Conv3dParams{Stride: [3]int{2, 1, 1}}, true},
		{"head", 96, 3, 3, 8, 8, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"wide2d", 128, 384, 1, 16, 24, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"rgbIn", 3, 96, 2, 7, 9, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
	}
	r := rng(t)
	defer func(w bool) { convWide = w }(convWide)
	for _, tc := range cases {
		for _, v := range []struct {
			dt   tensor.DType
			wide bool
		}{{tensor.BF16, false}, {tensor.BF16, true}, {tensor.F32, false}} {
			dt := v.dt
			name := tc.name + "/" + dt.String()
			if v.wide {
				name += "/wide"
			}
			t.Run(name, func(t *testing.T) {
				convWide = v.wide
				xs := []int{tc.cin, tc.T, tc.H, tc.W}
				ws := []int{tc.cout, tc.cin, tc.kt, tc.kh, tc.kw}
				x := randVals(r, tensor.NumElements(xs), 1)
				w := randVals(r, tensor.NumElements(ws), 1/float32(tc.kt*tc.kh*tc.kw))
				gx, cx := both(g, c, dt, xs, x)
				gw, cw := both(g, c, dt, ws, w)
				var gb, cb backend.Tensor
				if tc.bias {
					gb, cb = both(g, c, dt, []int{tc.cout}, randVals(r, tc.cout, 0.5))
				}
				gy := g.Conv3d(gx, gw, gb, tc.p)
				cy := c.Conv3d(cx, cw, cb, tc.p)
				if !slices.Equal(gy.Shape(), cy.Shape()) || gy.DType() != dt {
					t.Fatalf("output %v %v, want %v %v", gy.DType(), gy.Shape(), dt, cy.Shape())
				}
				golden.Compare(t, "conv3d "+tc.name, g.Download(gy), c.Download(cy), vaeTol(dt))
			})
		}
	}
}

func TestChannelRMSNormMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	shape := []int{40, 3, 5, 7}
	for _, dt := range vaeDTypes {
		for _, silu := range []bool{false, true} {
			name := dt.String()
			if silu {
				name += "/silu"
			}
			t.Run(name, func(t *testing.T) {
				x := randVals(r, tensor.NumElements(shape), 3)
				P := len(x) / shape[0]
				for ch := 0; ch < shape[0]; ch++ {
					x[ch*P] = 0 // position 0 is zero in every channel: the 1e-12 floor
				}
				gx, cx := both(g, c, dt, shape, x)
				gg, cg := both(g, c, dt, []int{shape[0]}, randVals(r, shape[0], 2))
				golden.Compare(t, "channel rms norm", g.Download(g.ChannelRMSNorm(gx, gg, silu)), c.Download(c.ChannelRMSNorm(cx, cg, silu)), vaeTol(dt))
			})
		}
	}
}

func TestUpsampleNearest2xMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	shape := []int{5, 3, 7, 9}
	for _, dt := range vaeDTypes {
		x := randVals(r, tensor.NumElements(shape), 1)
		gx, cx := both(g, c, dt, shape, x)
		gy, cy := g.UpsampleNearest2x(gx), c.UpsampleNearest2x(cx)
		if !slices.Equal(gy.Shape(), []int{5, 3, 14, 18}) {
			t.Fatalf("%v: shape %v, want [5 3 14 18]", dt, gy.Shape())
		}
		if got, want := g.Download(gy), c.Download(cy); !slices.Equal(got, want) {
			t.Errorf("%v: upsample differs from the CPU (it is a copy and must be exact)", dt)
		}
	}
}

func TestFrameAttentionMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	for _, shape := range [][]int{{192, 2, 6, 10}, {72, 1, 5, 7}} {
		for _, dt := range vaeDTypes {
			t.Run(dt.String(), func(t *testing.T) {
				x := randVals(r, tensor.NumElements(shape), 2)
				gx, cx := both(g, c, dt, shape, x)
				gy, cy := g.FrameAttention(gx), c.FrameAttention(cx)
				want := []int{shape[0] / 3, shape[1], shape[2], shape[3]}
				if !slices.Equal(gy.Shape(), want) {
					t.Fatalf("shape %v, want %v", gy.Shape(), want)
				}
				golden.Compare(t, "frame attention", g.Download(gy), c.Download(cy), vaeTol(dt))
			})
		}
	}
}

// fakeTensor is a CUDA tensor header with no memory: enough for the argument
// checks, which run before any device call.
func fakeTensor(dt tensor.DType, shape ...int) *Tensor {
	return &Tensor{shape: shape, dt: dt, buf: &buffer{}}
}

// opErr runs f and returns the error it failed with (nil if none).
func opErr(f func()) (err error) {
	defer backend.Recover(&err)
	f()
	return nil
}

func TestVAEOpArgumentErrors(t *testing.T) {
	b := &Backend{}
	bf := tensor.BF16
	cases := []struct {
		name, want string
		f          func()
	}{
		{"conv channels", "channels", func() {
			b.Conv3d(fakeTensor(bf, 4, 1, 8, 8), fakeTensor(bf, 8, 5, 3, 3, 3), nil, backend.Conv3dParams{})
		}},
		{"conv bias", "bias shape", func() {
			b.Conv3d(fakeTensor(bf, 4, 3, 8, 8), fakeTensor(bf, 8, 4, 3, 3, 3), fakeTensor(bf, 4), backend.Conv3dParams{})
		}},
		{"conv small", "smaller than the kernel", func() {
			b.Conv3d(fakeTensor(bf, 4, 1, 8, 8), fakeTensor(bf, 8, 4, 3, 3, 3), nil, backend.Conv3dParams{})
		}},
		{"conv int8", "float32 or bfloat16", func() {
			b.Conv3d(fakeTensor(tensor.I8, 4, 3, 8, 8), fakeTensor(bf, 8, 4, 3, 3, 3), nil, backend.Conv3dParams{})
		}},
		{"norm gamma", "gamma shape", func() { b.ChannelRMSNorm(fakeTensor(bf, 4, 2, 3), fakeTensor(bf, 3), true) }},
		{"upsample rank", "[C,T,H,W]", func() { b.UpsampleNearest2x(fakeTensor(bf, 4, 2, 3)) }},
		{"attention thirds", "[3C,T,H,W]", func() { b.FrameAttention(fakeTensor(bf, 8, 1, 2, 2)) }},
	}
	for _, tc := range cases {
		err := opErr(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestConvTile(t *testing.T) {
	defer func(w bool) { convWide = w }(convWide)
	for _, c := range []struct {
		wide     bool
		cout     int
		name     string
		bm, bn   int
		smemWant int
	}{
		{false, 96, "conv3d_bf16_m3", 96, 128, 2 * (96*40 + 32*136) * 2},
		{true, 96, "conv3d_bf16_m3_w", 96, 256, 2 * (96*40 + 32*264) * 2},
		{true, 3, "conv3d_bf16_m1", 32, 128, 2 * (32*40 + 32*136) * 2}, // no wide kernel for MT 1
		{true, 384, "conv3d_bf16_m4_w", 128, 256, 2 * (128*40 + 32*264) * 2},
	} {
		convWide = c.wide
		name, bm, bn, smem := convTile(c.cout)
		if name != c.name || bm != c.bm || bn != c.bn || smem != c.smemWant {
			t.Errorf("wide=%v: convTile(%d) = %s %d %d %d, want %s %d %d %d", c.wide, c.cout, name, bm, bn, smem, c.name, c.bm, c.bn, c.smemWant)
		}
	}
}

func TestConvMT(t *testing.T) {
	for cout, want := range map[int]int{96: 3, 192: 3, 384: 4, 768: 4, 1152: 4, 3: 1, 16: 1, 32: 1, 64: 2, 100: 4} {
		if got := convMT(cout); got != want {
			t.Errorf("convMT(%d) = %d, want %d", cout, got, want)
		}
	}
}

// TestConv3dHistoryMatchesCPU checks Conv3dWithHistory (history frames read
// in place by the bf16 kernels, both the MMA and the small-Cout ones)
// against the CPU's Conv3d of the concatenation.
func TestConv3dHistoryMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	var _ backend.Conv3dHistory = g
	r := rng(t)
	cases := []struct {
		name        string
		cin, cout   int
		th, T, H, W int
		kt, kh, kw  int
		p           backend.Conv3dParams
	}{
		{"mma2hist", 40, 100, 2, 4, 9, 13, 3, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}},
		{"mma1hist", 64, 96, 1, 1, 10, 7, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{1, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}},
		{"timeconv", 32, 64, 2, 4, 6, 5, 3, 1, 1, backend.Conv3dParams{}},
		{"small2hist", 96, 3, 2, 4, 23, 37, 3, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}},
		{"small4", 20, 4, 1, 2, 5, 9, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{1, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}},
	}
	for _, tc := range cases {
		for _, dt := range vaeDTypes {
			t.Run(tc.name+"/"+dt.String(), func(t *testing.T) {
				hs := []int{tc.cin, tc.th, tc.H, tc.W}
				xs := []int{tc.cin, tc.T, tc.H, tc.W}
				ws := []int{tc.cout, tc.cin, tc.kt, tc.kh, tc.kw}
				gh, ch := both(g, c, dt, hs, randVals(r, tensor.NumElements(hs), 1))
				gx, cx := both(g, c, dt, xs, randVals(r, tensor.NumElements(xs), 1))
				w := randVals(r, tensor.NumElements(ws), 1/float32(tc.kt*tc.kh*tc.kw))
				gw, cw := both(g, c, dt, ws, w)
				gb, cb := both(g, c, dt, []int{tc.cout}, randVals(r, tc.cout, 0.5))
				gy := g.Conv3dWithHistory(gh, gx, gw, gb, tc.p)
				cy := c.Conv3d(c.Concat(1, ch, cx), cw, cb, tc.p)
				if !slices.Equal(gy.Shape(), cy.Shape()) || gy.DType() != dt {
					t.Fatalf("output %v %v, want %v %v", gy.DType(), gy.Shape(), dt, cy.Shape())
				}
				golden.Compare(t, "conv3d history "+tc.name, g.Download(gy), c.Download(cy), vaeTol(dt))
			})
		}
	}
}

// convVariants are the sm_90a conv kernel choices every sm_90a test runs:
// one block per tile, persistent, Cin = 96 split into whole-tap steps, and
// the dw kernel (planar input, one A copy for the three w taps) where it
// applies, one block per tile and persistent.
var convVariants = []struct{ persist, split, dw bool }{{false, false, false}, {true, false, false}, {false, true, false}, {false, false, true}, {true, false, true}}

// setConvVariant selects v for the sm_90a conv and returns a function that
// restores the previous choice.
func setConvVariant(v struct{ persist, split, dw bool }) func() {
	p, s, d := convPersist, convSplit96, convDW
	convPersist, convSplit96, convDW = &v.persist, v.split, v.dw
	return func() { convPersist, convSplit96, convDW = p, s, d }
}

// checkDWLaunch fails t when, on an sm_90 device (sm90), the dw kernel ran
// a different number of times (ran: launches of conv3d_tma_k32_n96_m2_dw
// since the op started) than convDWPick says it should for cin→cout with
// kw taps along w.
func checkDWLaunch(t *testing.T, sm90 bool, ran int64, cin, cout, kw int) {
	t.Helper()
	want := int64(btoi(convDWPick(convTMAPick(cin, cout, convPersist), kw, false).dw))
	if sm90 && ran != want {
		t.Errorf("sm_90 device: %d launches of the dw conv kernel (convDW %v), want %d", ran, convDW, want)
	}
}

// TestConv3dHopperMatchesCPU runs the decoder's convolution shapes (Cin and
// Cout 96..768; 3x3x3 with history, 2-D 3x3, 3x1x1 time convs, 1x1x1) small
// enough for the CPU, with sizes that leave partial position tiles. On an
// sm_90 device every case must take the TMA + wgmma kernel
// (conv3d_sm90a.cu): a silent fallback to the mma.sync kernel fails.
func TestConv3dHopperMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	causal := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	cases := []struct {
		name        string
		cin, cout   int
		th, T, H, W int
		kt, kh, kw  int
		p           backend.Conv3dParams
		bias        bool
	}{
		{"c96_hist2", 96, 96, 2, 3, 17, 23, 3, 3, 3, causal, true},
		{"c96_first", 96, 96, 0, 1, 11, 30, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		// Several 256-row tiles, the last one partial; the w taps of the
		// dw kernel cross row and frame boundaries of the padded grid.
		{"c96_hist2_tiles", 96, 96, 2, 2, 13, 45, 3, 3, 3, causal, true},
		{"c96_2d", 96, 96, 0, 2, 9, 40, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"c96_validw", 96, 96, 0, 2, 6, 12, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}}, false},
		{"c160to96", 160, 96, 1, 2, 7, 19, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{1, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"time96", 96, 96, 2, 1, 5, 7, 3, 1, 1, backend.Conv3dParams{}, true},
		{"c192_hist2", 192, 192, 2, 2, 9, 21, 3, 3, 3, causal, true},
		{"c384_hist1", 384, 384, 1, 1, 7, 10, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{1, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, false},
		{"c192to384", 192, 384, 2, 2, 6, 9, 3, 3, 3, causal, true},
		{"c96to192", 96, 192, 2, 1, 8, 8, 3, 3, 3, causal, true},
		{"resample384to192", 384, 192, 0, 2, 12, 14, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"resample192to96", 192, 96, 0, 3, 16, 10, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"timeconv384to768", 384, 768, 2, 1, 6, 11, 3, 1, 1, backend.Conv3dParams{}, true},
		{"shortcut192to384", 192, 384, 0, 2, 13, 9, 1, 1, 1, backend.Conv3dParams{}, true},
		{"c64to100", 64, 100, 1, 2, 5, 7, 3, 3, 3, causal, true},
		{"c32to40", 32, 40, 0, 3, 4, 5, 3, 3, 3, backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true},
		{"head96to3", 96, 3, 2, 2, 19, 33, 3, 3, 3, causal, true},
		{"c64to8", 64, 8, 0, 2, 9, 9, 1, 3, 3, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, false},
	}
	sm90 := g.info.Arch == "sm_90" && g.drv.cuTensorMapEncodeTiled != 0 && convHopper
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			xs := []int{tc.cin, tc.T, tc.H, tc.W}
			ws := []int{tc.cout, tc.cin, tc.kt, tc.kh, tc.kw}
			gx, cx := both(g, c, tensor.BF16, xs, randVals(r, tensor.NumElements(xs), 1))
			w := randVals(r, tensor.NumElements(ws), 1/float32(tc.kt*tc.kh*tc.kw))
			gw, cw := both(g, c, tensor.BF16, ws, w)
			var gb, cb backend.Tensor
			if tc.bias {
				gb, cb = both(g, c, tensor.BF16, []int{tc.cout}, randVals(r, tc.cout, 0.5))
			}
			var gh, cy backend.Tensor
			if tc.th > 0 {
				hs := []int{tc.cin, tc.th, tc.H, tc.W}
				var ch backend.Tensor
				gh, ch = both(g, c, tensor.BF16, hs, randVals(r, tensor.NumElements(hs), 1))
				cy = c.Conv3d(c.Concat(1, ch, cx), cw, cb, tc.p)
			} else {
				cy = c.Conv3d(cx, cw, cb, tc.p)
			}
			want := c.Download(cy)
			for _, v := range convVariants {
				restore := setConvVariant(v)
				before, dw := convHopperLaunches.Load(), convDWLaunches.Load()
				gy := g.Conv3dWithHistory(gh, gx, gw, gb, tc.p)
				if used := convHopperLaunches.Load() - before; sm90 && used != 1 {
					t.Errorf("sm_90 device: %d launches of the sm_90a conv kernel, want 1", used)
				}
				checkDWLaunch(t, sm90, convDWLaunches.Load()-dw, tc.cin, tc.cout, tc.kw)
				restore()
				if !slices.Equal(gy.Shape(), cy.Shape()) || gy.DType() != tensor.BF16 {
					t.Fatalf("output %v %v, want bf16 %v", gy.DType(), gy.Shape(), cy.Shape())
				}
				golden.Compare(t, fmt.Sprintf("conv3d sm90 %s %+v", tc.name, v), g.Download(gy), want, vaeTol(tensor.BF16))
				g.Free(gy)
			}
		})
	}
}

func TestConvTMAPick(t *testing.T) {
	for _, c := range []struct {
		cin, cout int
		want      convTMA
	}{
		{96, 96, convTMA{32, 96, 2, 8, false, false}},
		{192, 96, convTMA{64, 96, 2, 4, false, false}},
		{192, 192, convTMA{64, 192, 1, 5, false, false}},
		{384, 384, convTMA{64, 192, 1, 5, false, false}},
		{384, 768, convTMA{64, 192, 1, 5, false, false}},
		{96, 192, convTMA{32, 192, 1, 8, false, false}},
		{64, 100, convTMA{64, 192, 1, 5, false, false}},
		{32, 40, convTMA{32, 96, 2, 8, false, false}},
		{96, 3, convTMA{32, 8, 2, 8, false, false}},
		{64, 8, convTMA{64, 8, 2, 6, false, false}},
	} {
		defer func(s bool) { convSplit96 = s }(convSplit96)
		convSplit96 = true
		if k := convTMAPick(96, 96, nil); k != (convTMA{96, 96, 2, 3, false, false}) || k.smem() > 227<<10 || k.staging() > k.ns*(k.rows()+k.n)*k.bk*2 {
			t.Errorf("split: convTMAPick(96, 96) = %+v (shared memory %d B)", k, k.smem())
		}
		convSplit96 = false
		// The dw kernel: only BK 32 / N 96 with three w taps and an input
		// packed by the op itself; its stages and staging tile fit.
		defer func(d bool) { convDW = d }(convDW)
		for _, on := range []bool{false, true} {
			convDW = on
			for _, kw := range []int{1, 3} {
				for _, pre := range []bool{false, true} {
					for _, persist := range []bool{false, true} {
						k := convDWPick(convTMAPick(c.cin, c.cout, &persist), kw, pre)
						want := on && kw == 3 && !pre && c.want.bk == 32 && c.want.n == 96
						if k.dw != want {
							t.Errorf("convDW %v: convDWPick(convTMAPick(%d, %d, persist %v), kw %d, prepacked %v) = %+v, want dw %v", on, c.cin, c.cout, persist, kw, pre, k, want)
						}
						wantName := map[bool]string{false: "conv3d_tma_k32_n96_m2_dw", true: "conv3d_tma_k32_n96_m2_dw_p"}[persist]
						if k.dw && (k.name() != wantName || k.persist != persist || k.smem() > 227<<10 || (!persist && k.staging() > k.ns*k.stage()) || k.stage() != 35328) {
							t.Errorf("dw kernel %+v: %s, shared memory %d B, stage %d B (conv_tma's SB: 35328), staging %d B", k, k.name(), k.smem(), k.stage(), k.staging())
						}
					}
				}
			}
		}
		convDW = false
		for _, persist := range []bool{false, true} {
			got := convTMAPick(c.cin, c.cout, &persist)
			want := c.want
			if persist {
				want.persist = true
				want.ns = map[int]int{192: 4, 96: 3, 8: 6}[want.n]
				if want.bk == 32 {
					want.ns = map[int]int{192: 8, 96: 7, 8: 8}[want.n]
				}
			}
			if got != want {
				t.Errorf("convTMAPick(%d, %d, %v) = %+v, want %+v", c.cin, c.cout, persist, got, want)
			}
			if def := convTMAPick(c.cin, c.cout, nil); def.persist != convPersistDefault(def.bk, def.n) {
				t.Errorf("convTMAPick(%d, %d, nil) = %+v, want the default persistence", c.cin, c.cout, def)
			}
			// The dynamic shared memory must fit an H100 block (227 KiB);
			// without a staging area of its own the epilogue's output tile
			// must fit the stages.
			if s := got.smem(); s > 227<<10 || (!persist && got.staging() > got.ns*(got.rows()+got.n)*got.bk*2) {
				t.Errorf("%+v: shared memory %d B does not fit", got, s)
			}
		}
	}
}

// TestConv3dNormHistoryMatchesCPU checks the fused RMS norm + SiLU + causal
// conv + residual add (Conv3dNormWithHistory: the norm in the sm_90a
// kernel's packing pass and the add in its epilogue, or norm, conv and add
// where that kernel does not run) against the CPU's ChannelRMSNorm of the
// concatenation followed by Conv3d and Add, and its tail against the last
// input frames. On an sm_90
// device the fusable cases must take the sm_90a kernel.
func TestConv3dNormHistoryMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	var _ backend.Conv3dNormHistory = g
	r := rng(t)
	causal := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	first := backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	cases := []struct {
		name        string
		cin, cout   int
		th, T, H, W int
		p           backend.Conv3dParams
		fused       bool
		keep        int
		res         bool
	}{
		{"c96_hist2", 96, 96, 2, 3, 13, 70, causal, true, 2, true},
		{"c96_first_w4", 96, 96, 0, 1, 9, 132, first, true, 2, true}, // conv_pack_norm_cl4 (W % 4 == 0), three column blocks
		{"c96_hist2_w4", 96, 96, 2, 2, 7, 68, causal, true, 2, false},
		{"c384_hist1", 384, 384, 1, 1, 6, 9, backend.Conv3dParams{PadT: [2]int{1, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, true, 2, false},
		{"c192to384_first", 192, 384, 0, 1, 7, 11, first, true, 2, true},
		{"c192_hist2", 192, 192, 2, 2, 5, 130, causal, true, 0, true},
		{"head96to3", 96, 3, 2, 2, 9, 14, causal, true, 3, false},
		{"head96to3_first", 96, 3, 0, 1, 21, 40, first, true, 2, false},
		{"c16to32", 16, 32, 2, 1, 5, 6, causal, false, 2, true},
		{"c32to32_hist2_t1", 32, 32, 2, 1, 5, 6, causal, true, 2, true},
	}
	sm90 := g.info.Arch == "sm_90" && g.drv.cuTensorMapEncodeTiled != 0 && convHopper
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			xs := []int{tc.cin, tc.T, tc.H, tc.W}
			ws := []int{tc.cout, tc.cin, 3, 3, 3}
			gx, cx := both(g, c, tensor.BF16, xs, randVals(r, tensor.NumElements(xs), 3))
			gw, cw := both(g, c, tensor.BF16, ws, randVals(r, tensor.NumElements(ws), 1.0/27))
			gb, cb := both(g, c, tensor.BF16, []int{tc.cout}, randVals(r, tc.cout, 0.5))
			gamma := randVals(r, tc.cin, 0.5)
			for i := range gamma {
				gamma[i] += 1
			}
			gg, cg := both(g, c, tensor.BF16, []int{tc.cin}, gamma)
			var gh, ch backend.Tensor
			cin := cx
			if tc.th > 0 {
				hs := []int{tc.cin, tc.th, tc.H, tc.W}
				gh, ch = both(g, c, tensor.BF16, hs, randVals(r, tensor.NumElements(hs), 3))
				cin = c.Concat(1, ch, cx)
			}
			if got := g.NormConvFused(gx, gw); got != (sm90 && tc.fused) {
				t.Errorf("NormConvFused = %v on %s, want %v", got, g.info.Arch, sm90 && tc.fused)
			}
			cy := c.Conv3d(c.ChannelRMSNorm(cin, cg, true), cw, cb, tc.p)
			var gr backend.Tensor
			if tc.res {
				var cr backend.Tensor
				gr, cr = both(g, c, tensor.BF16, cy.Shape(), randVals(r, tensor.NumElements(cy.Shape()), 2))
				cy = c.Add(cy, cr)
			}
			want := c.Download(cy)
			for _, v := range convVariants {
				restore := setConvVariant(v)
				before, dw := convHopperLaunches.Load(), convDWLaunches.Load()
				gy, gt := g.Conv3dNormWithHistory(gh, gx, gg, gw, gb, gr, tc.p, tc.keep)
				if used := convHopperLaunches.Load() - before; sm90 && tc.fused && used != 1 {
					t.Errorf("sm_90 device: %d launches of the sm_90a conv kernel, want 1", used)
				}
				if tc.fused {
					checkDWLaunch(t, sm90, convDWLaunches.Load()-dw, tc.cin, tc.cout, 3)
				}
				restore()
				if !slices.Equal(gy.Shape(), cy.Shape()) || gy.DType() != tensor.BF16 {
					t.Fatalf("output %v %v, want bf16 %v", gy.DType(), gy.Shape(), cy.Shape())
				}
				golden.Compare(t, fmt.Sprintf("conv3d norm %s %+v", tc.name, v), g.Download(gy), want, vaeTol(tensor.BF16))
				g.Free(gy)
				// The tail is the last keep raw frames of history + chunk, exactly.
				n := cin.Shape()[1]
				k := min(tc.keep, n)
				if tc.keep == 0 {
					if gt != nil {
						t.Errorf("keep 0: got a tail %v", gt.Shape())
					}
					continue
				}
				wantTail := c.Download(c.Slice(cin, 1, n-k, n))
				if gt == nil || !slices.Equal(gt.Shape(), []int{tc.cin, k, tc.H, tc.W}) {
					t.Fatalf("tail %v, want [%d %d %d %d]", gt, tc.cin, k, tc.H, tc.W)
				}
				if got := g.Download(gt); !slices.Equal(got, wantTail) {
					t.Errorf("tail differs from the last %d input frames", k)
				}
				g.Free(gt)
			}
		})
	}
}

// TestConv3dUpsample2xMatchesCPU checks the resample convolution read
// through the nearest 2x upsampling (Conv3dUpsample2x) against the CPU's
// UpsampleNearest2x followed by Conv3d; on an sm_90 device the cases with
// Cin a multiple of 32 must take the sm_90a kernel.
func TestConv3dUpsample2xMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	var _ backend.Conv3dUpsample = g
	r := rng(t)
	p := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	sm90 := g.info.Arch == "sm_90" && g.drv.cuTensorMapEncodeTiled != 0 && convHopper
	for _, tc := range []struct {
		name      string
		cin, cout int
		T, H, W   int
		fused     bool
	}{
		{"384to192", 384, 192, 2, 6, 7, true},
		{"192to96", 192, 96, 1, 9, 13, true},
		{"96to96", 96, 96, 3, 5, 40, true},
		{"16to32", 16, 32, 2, 4, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xs := []int{tc.cin, tc.T, tc.H, tc.W}
			ws := []int{tc.cout, tc.cin, 1, 3, 3}
			gx, cx := both(g, c, tensor.BF16, xs, randVals(r, tensor.NumElements(xs), 1))
			gw, cw := both(g, c, tensor.BF16, ws, randVals(r, tensor.NumElements(ws), 1.0/9))
			gb, cb := both(g, c, tensor.BF16, []int{tc.cout}, randVals(r, tc.cout, 0.5))
			cy := c.Conv3d(c.UpsampleNearest2x(cx), cw, cb, p)
			want := c.Download(cy)
			for _, v := range convVariants {
				restore := setConvVariant(v)
				before, dw := convHopperLaunches.Load(), convDWLaunches.Load()
				gy := g.Conv3dUpsample2x(gx, gw, gb, p)
				if used := convHopperLaunches.Load() - before; sm90 && tc.fused && used != 1 {
					t.Errorf("sm_90 device: %d launches of the sm_90a conv kernel, want 1", used)
				}
				if tc.fused { // 96to96: the dw kernel reads the upsampled planar pack (conv_pack_cl_pl, up)
					checkDWLaunch(t, sm90, convDWLaunches.Load()-dw, tc.cin, tc.cout, 3)
				}
				restore()
				if !slices.Equal(gy.Shape(), cy.Shape()) || gy.DType() != tensor.BF16 {
					t.Fatalf("output %v %v, want bf16 %v", gy.DType(), gy.Shape(), cy.Shape())
				}
				golden.Compare(t, fmt.Sprintf("conv3d upsampled %s %+v", tc.name, v), g.Download(gy), want, vaeTol(tensor.BF16))
				g.Free(gy)
			}
		})
	}
}
