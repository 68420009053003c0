package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// int8Weight quantises a random [n, k] weight with package quant (the
// offline step) and uploads codes and scales to both backends.
func int8Weight(g *Backend, c *cpu.Backend, r *rand.Rand, n, k int) (gw, gs, cw, cs backend.Tensor) {
	w := make([]float32, n*k)
	for i := range w {
		w[i] = tensor.RoundBF16(float32(r.NormFloat64() / math.Sqrt(float64(k))))
	}
	wq, ws, err := quant.Quantize(w, n, k)
	if err != nil {
		panic(err)
	}
	sr, sc := quant.ScaleShape(n, k)
	return g.UploadInt8([]int{n, k}, wq), g.Upload(tensor.F32, []int{sr, sc}, ws),
		c.UploadInt8([]int{n, k}, wq), c.Upload(tensor.F32, []int{sr, sc}, ws)
}

// heavyTailed returns bf16-exact values whose magnitudes vary over a few
// orders (x·e^N(0,1)), so tiles get different scales and codes use the
// whole int8 range, including the saturated +amax → 127.
func heavyTailed(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = tensor.RoundBF16(float32(r.NormFloat64() * math.Exp(r.NormFloat64())))
	}
	return x
}

// int8GemmModes are the GEMM kernels a test runs: the mma.sync kernel, and
// on an sm_90 device every sm_90a instance and the default choice.
// $TURBODIFFUSION_INT8_TEST_MODES (comma-separated) narrows the list.
func int8GemmModes(g *Backend) []string {
	if g.info.Arch != "sm_90" {
		return []string{"mma"}
	}
	if e := os.Getenv("TURBODIFFUSION_INT8_TEST_MODES"); e != "" {
		return strings.Split(e, ",")
	}
	modes := []string{"mma"}
	for k := range int8TMAVariants {
		modes = append(modes, k)
	}
	sort.Strings(modes[1:])
	// @N: a grid of N blocks, so that every block walks many tiles (the
	// cross-tile stream of the x instances across tile boundaries, with
	// ragged last tiles) even on the small shapes.
	return append(modes, "n128p_i2f-st", "n128px_i2f@7", "n128w3x_i2f@5", "") // "": the default pick, which must be an sm_90a one
}

// withInt8Gemm runs f with Int8GemmEnv's mode set to mode and fails the
// test unless the sm_90a kernel ran exactly when the mode asks for it (no
// silent fallback to the mma.sync kernel on sm_90). A mode "name@N" runs
// an mc instance on at most N clusters, any other on at most N blocks;
// "name-st" without tensor stores.
func withInt8Gemm(t *testing.T, g *Backend, mode string, f func()) {
	t.Helper()
	defer func(m string, c int, st bool) {
		int8GemmMode, int8GridCap, int8TMAStore = m, c, st
	}(int8GemmMode, int8GridCap, int8TMAStore)
	int8GemmMode = mode
	if m, ok := strings.CutSuffix(mode, "-st"); ok { // without tensor stores
		int8GemmMode, int8TMAStore = m, false
	}
	if m, cl, ok := strings.Cut(int8GemmMode, "@"); ok { // at most cl clusters (mc) or blocks
		int8GemmMode = m
		if _, err := fmt.Sscan(cl, &int8GridCap); err != nil {
			t.Fatalf("mode %q: %v", mode, err)
		}
	}
	before := int8HopperLaunches.Load()
	f()
	ran := int8HopperLaunches.Load() - before
	if want := int8GemmMode != "mma"; want != (ran > 0) {
		t.Errorf("GEMM mode %q on %s: %d sm_90a launches", mode, g.info.Arch, ran)
	}
}

// TestInt8LinearMatchesCPU runs the GPU W8A8 layer with every GEMM kernel
// and the CPU backend on fresh random inputs and requires bit-identical
// outputs (both reproduce the reference kernel's block-ordered float32
// fma; the int32 block sums are exact). The shapes cover ragged M and N
// (N not a multiple of 8, 128 or 192, a 192-wide tile straddling two weight
// scale blocks) and scaled-down Wan layers: N = 1536, 8960, 5120, 13824 with
// K = 1536, 5120, 8960, 13824.
func TestInt8LinearMatchesCPU(t *testing.T) {
	g, c, r := gpu(t), cpu.New(), rng(t)
	for _, tc := range []struct {
		name    string
		xdt     tensor.DType
		bias    tensor.DType // Invalid: none
		lead    []int
		n, k    int
		zeroRow bool
	}{
		{"ragged M and N, bf16 bias", tensor.BF16, tensor.BF16, []int{1, 300}, 320, 384, false},
		{"one row, no bias", tensor.BF16, tensor.Invalid, []int{1}, 7, 128, false},
		{"batch 2, f32 bias, zero tile", tensor.BF16, tensor.F32, []int{2, 129}, 200, 1536, true},
		{"exact tiles", tensor.BF16, tensor.BF16, []int{256}, 256, 1024, false},
		{"f32 input", tensor.F32, tensor.F32, []int{130}, 260, 256, false},
		{"N not a multiple of 8", tensor.BF16, tensor.BF16, []int{77}, 333, 256, false},
		{"1.3B qkv 1536x1536", tensor.BF16, tensor.BF16, []int{1, 300}, 1536, 1536, false},
		{"1.3B ffn1 1536->8960", tensor.BF16, tensor.BF16, []int{2, 97}, 8960, 1536, false},
		{"1.3B ffn2 8960->1536", tensor.BF16, tensor.BF16, []int{200}, 1536, 8960, false},
		{"14B qkv 5120x5120", tensor.BF16, tensor.BF16, []int{130}, 5120, 5120, false},
		{"14B ffn1 5120->13824", tensor.BF16, tensor.BF16, []int{70}, 13824, 5120, false},
		{"14B ffn2 13824->5120", tensor.BF16, tensor.BF16, []int{129}, 5120, 13824, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tensor.NumElements(tc.lead)
			x := heavyTailed(r, m*tc.k)
			if tc.xdt == tensor.F32 {
				for i := range x {
					x[i] *= 1 + float32(r.Float64())*1e-3 // not bf16-exact
				}
			}
			if tc.zeroRow {
				for i := 0; i < 128*tc.k && i < len(x); i++ {
					if (i%tc.k)/128 == 0 {
						x[i] = 0 // tile (0, 0) all zero: the 1e-8 amax floor
					}
				}
			}
			xs := append(append([]int(nil), tc.lead...), tc.k)
			xp := up(g, c, tc.xdt, xs, x)
			gw, gs, cw, cs := int8Weight(g, c, r, tc.n, tc.k)
			var gb, cb backend.Tensor
			if tc.bias != tensor.Invalid {
				bp := up(g, c, tc.bias, []int{tc.n}, randn(r, tc.n, 0.5))
				gb, cb = bp.g, bp.c
			}
			defer func() { g.Free(xp.g); g.Free(gw); g.Free(gs); g.Free(gb) }()
			cy := c.Int8Linear(xp.c, cw, cs, cb)
			want := c.Download(cy)
			for _, mode := range int8GemmModes(g) {
				withInt8Gemm(t, g, mode, func() {
					gy := g.int8Linear(xp.g, gw, gs, gb)
					defer g.Free(gy)
					if !backend.SameShape(gy.Shape(), cy.Shape()) || gy.DType() != cy.DType() {
						t.Fatalf("%s: cuda gives %v %v, cpu %v %v", mode, gy.DType(), gy.Shape(), cy.DType(), cy.Shape())
					}
					got := g.Download(gy)
					golden.Compare(t, "int8 linear "+tc.name+" ("+mode+")", got, want, 0)
					requireIdentical(t, got, want, tc.n)
				})
			}
		})
	}
}

// requireIdentical fails unless got and want are bit-identical, naming the
// first differing element as (row, col) of an [.., n] matrix.
func requireIdentical(t *testing.T, got, want []float32, n int) {
	t.Helper()
	diff, first := 0, -1
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if first < 0 {
				first = i
			}
			diff++
		}
	}
	if diff > 0 {
		t.Errorf("%d of %d outputs differ; first at row %d col %d: %g, want %g", diff, len(want), first/n, first%n, got[first], want[first])
	} else {
		t.Logf("all %d outputs bit-identical", len(want))
	}
}

// TestInt8LinearGolden runs the set's Int8Linear case (official
// TurboDiffusion output) on the GPU and expects bit-exact output.
func TestInt8LinearGolden(t *testing.T) {
	g := gpu(t)
	f := golden.Open(t, "int8_linear.safetensors")
	x, xs := golden.Tensor(t, f, "x")
	ws, wss := golden.Tensor(t, f, "weight_scale")
	bias, bs := golden.Tensor(t, f, "bias")
	want, _ := golden.Tensor(t, f, "y_module")
	wq, err := f.Int8("weight_int8")
	if err != nil {
		t.Fatal(err)
	}
	wi, _ := f.Info("weight_int8")
	if len(wi.Shape) != 2 || len(xs) < 2 || xs[len(xs)-1] != wi.Shape[1] {
		t.Fatalf("%s: x %v and weight_int8 %v are not [.., K] and [N, K]", f.Path(), xs, wi.Shape)
	}
	xt, wt, st, bt := g.Upload(tensor.BF16, xs, x), g.UploadInt8(wi.Shape, wq), g.Upload(tensor.F32, wss, ws), g.Upload(tensor.BF16, bs, bias)
	defer func() { g.Free(xt); g.Free(wt); g.Free(st); g.Free(bt) }()
	for _, mode := range int8GemmModes(g) {
		withInt8Gemm(t, g, mode, func() {
			y := g.int8Linear(xt, wt, st, bt)
			defer g.Free(y)
			got := g.Download(y)
			golden.Compare(t, "Int8Linear y_module (GPU, "+mode+")", got, want, 0)
			requireIdentical(t, got, want, wi.Shape[0])
		})
	}
}

// TestGoldenDiTInt8Hopper runs the golden set's int8 DiT (SLA, fast norms,
// W8A8 block Linears: TestGoldenDiTOnGPU's int8 case, same tolerance) with
// each GEMM kernel and checks on sm_90 that the sm_90a one really ran; then
// once more with the fused int8 activation ops off (Int8FuseEnv=0). Every
// run must give the same bits: the fused LayerNorm/GELU quantisers are
// exact replacements of the unfused ops.
func TestGoldenDiTInt8Hopper(t *testing.T) {
	g := gpu(t)
	man := golden.LoadManifest(t)
	in := golden.Open(t, "dit_inputs.safetensors")
	x, xs := golden.Tensor(t, in, "x")
	ts, _ := golden.Tensor(t, in, "timestep")
	txt, txs := golden.Tensor(t, in, "text_valid")
	want, _ := golden.Tensor(t, golden.Open(t, "dit_int8.safetensors"), "bf16_sla_fastnorm_int8.output")
	opt := wan.Options{DType: tensor.BF16, Norm: backend.NormFast, Linear: wan.LinearInt8, Attention: backend.SLA,
		TopK:   man.Number(t, "configs", "dit", "sla_topk"),
		BlockQ: int(man.Number(t, "configs", "dit", "sla_BLKQ")),
		BlockK: int(man.Number(t, "configs", "dit", "sla_BLKK"))}
	var outs [][]float32
	modes := int8GemmModes(g)
	for _, mode := range append(modes, "nofuse", "lnq+gemm", "gemmx") {
		fuse, variant := mode != "nofuse", ""
		if mode == "nofuse" || mode == "lnq+gemm" || mode == "gemmx" {
			// the default GEMM, every op unfused (Int8FuseEnv=0), or the
			// non-default fused kernels
			mode, variant = "", mode
		}
		var fused int64
		gqx := int8GQXLaunches.Load()
		withInt8Gemm(t, g, mode, func() {
			fused = withFuse(fuse, func() {
				m, err := wan.Load(g, golden.Open(t, "dit_int8.pth"), opt)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Free()
				text, err := m.EmbedText(txt, txs[1])
				if err != nil {
					t.Fatal(err)
				}
				defer text.Free()
				out, err := m.Forward(x, xs[1:], ts[0], text)
				if err != nil {
					t.Fatal(err)
				}
				golden.Compare(t, fmt.Sprintf("bf16_sla_fastnorm_int8.output (GPU, %q, fused ops %v %s)", mode, fuse, variant), out, want, 2e-2)
				outs = append(outs, out)
			}, variant)
		})
		// The FFN's GELU must have been fused into a quantiser (on any
		// GPU), and with lnq+gemm each LayerNorm and FFN GEMM on sm_90.
		if fuse != (fused > 0) || (variant == "lnq+gemm" && g.info.Arch == "sm_90" && fused < 4*2) {
			t.Errorf("GEMM mode %q, fused ops %v %s: %d fused launches", mode, fuse, variant, fused)
		}
		if variant == "gemmx" && g.info.Arch == "sm_90" && int8GQXLaunches.Load() == gqx {
			t.Errorf("gemmx: the cross-tile GEMM with the GELU+quantiser epilogue did not run")
		}
	}
	// The GEMMs are bit-exact with each other, so the whole forward is too.
	for i := 1; i < len(outs); i++ {
		requireIdentical(t, outs[i], outs[0], len(outs[0]))
	}
}

// TestInt8LinearArgumentErrors needs no GPU: the checks run before any
// device call.
func TestInt8LinearArgumentErrors(t *testing.T) {
	b := &Backend{}
	bf, i8, f32 := tensor.BF16, tensor.I8, tensor.F32
	cases := []struct {
		name, want string
		f          func()
	}{
		{"K not 128-multiple", "K=200 is not a positive multiple of 128", func() {
			b.int8Linear(fakeTensor(bf, 3, 200), fakeTensor(i8, 4, 200), fakeTensor(f32, 1, 2), nil)
		}},
		{"K mismatch", "does not end in the weight's K=256", func() {
			b.int8Linear(fakeTensor(bf, 3, 128), fakeTensor(i8, 4, 256), fakeTensor(f32, 1, 2), nil)
		}},
		{"weight dtype", "2-D int8 tensor", func() {
			b.int8Linear(fakeTensor(bf, 3, 128), fakeTensor(bf, 4, 128), fakeTensor(f32, 1, 1), nil)
		}},
		{"scale shape", "want float32 [2, 2]", func() {
			b.int8Linear(fakeTensor(bf, 3, 256), fakeTensor(i8, 130, 256), fakeTensor(f32, 1, 2), nil)
		}},
		{"scale dtype", "want float32 [1, 1]", func() {
			b.int8Linear(fakeTensor(bf, 3, 128), fakeTensor(i8, 4, 128), fakeTensor(bf, 1, 1), nil)
		}},
		{"bias shape", "bias shape [5], want [4]", func() {
			b.int8Linear(fakeTensor(bf, 3, 128), fakeTensor(i8, 4, 128), fakeTensor(f32, 1, 1), fakeTensor(bf, 5))
		}},
		{"input dtype", "float32 or bfloat16", func() {
			b.int8Linear(fakeTensor(i8, 3, 128), fakeTensor(i8, 4, 128), fakeTensor(f32, 1, 1), nil)
		}},
	}
	for _, tc := range cases {
		err := opErr(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// TestInt8VariantsMatchKernels needs no GPU: every sm_90a instance the Go
// side can launch (int8TMAVariants, and the _gq kernels int8GemmGQ picks)
// must be instantiated in int8_gemm_sm90a.cu with the tile width, ring
// stages, pipelining, warpgroups, cross-tile stream, multicast and fold
// conversion that int8TMA describes (smem() lays the shared memory out from
// them), and fit the 227 KiB of shared memory an H100/H200 block may opt
// into.
func TestInt8VariantsMatchKernels(t *testing.T) {
	var src string
	for _, m := range kernels.Modules() {
		if m.Name == "int8_gemm_sm90a.cu" {
			src = m.Code
		}
	}
	if src == "" {
		t.Fatal("int8_gemm_sm90a.cu is not embedded")
	}
	// What each instance macro's arguments mean (after NAME); fixed fields
	// for the macros that do not take them.
	type inst struct {
		bn, ns, wgs int
		pipe, xt    bool
		mc          bool
		cvt         int
	}
	found := map[string]inst{}
	re := regexp.MustCompile(`(?m)^(I8G_KERNEL(?:_[A-Z0-9]+)?)\((int8_gemm_tma_\w+),\s*([^)]*)\)\s*$`)
	atoi := func(s string) int {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("instance argument %q: %v", s, err)
		}
		return n
	}
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		a := strings.Split(m[3], ",")
		b := func(i int) bool { return strings.TrimSpace(a[i]) == "true" }
		var in inst
		switch m[1] {
		case "I8G_KERNEL": // BN, NS, PIPE, FOLD, CVT
			in = inst{bn: atoi(a[0]), ns: atoi(a[1]), wgs: 2, pipe: b(2), cvt: atoi(a[4])}
		case "I8G_KERNEL_MC": // BN, NS, PIPE, CVT
			in = inst{bn: atoi(a[0]), ns: atoi(a[1]), wgs: 2, pipe: b(2), mc: true, cvt: atoi(a[3])}
		case "I8G_KERNEL_W3": // NS, CVT
			in = inst{bn: 128, ns: atoi(a[0]), wgs: 3, cvt: atoi(a[1])}
		case "I8G_KERNEL_GQ": // NS
			in = inst{bn: 128, ns: atoi(a[0]), wgs: 2, pipe: true, cvt: 1}
		case "I8G_KERNEL_X": // BN, NS, PIPE, CVT
			in = inst{bn: atoi(a[0]), ns: atoi(a[1]), wgs: 2, pipe: b(2), xt: true, cvt: atoi(a[3])}
		case "I8G_KERNEL_W3X": // NS, CVT
			in = inst{bn: 128, ns: atoi(a[0]), wgs: 3, xt: true, cvt: atoi(a[1])}
		case "I8G_KERNEL_GQX": // NS
			in = inst{bn: 128, ns: atoi(a[0]), wgs: 2, pipe: true, xt: true, cvt: 1}
		default:
			t.Fatalf("%s: unknown instance macro %s (teach this test its arguments)", m[2], m[1])
		}
		found[m[2]] = in
	}
	check := func(name string, v int8TMA) {
		t.Helper()
		in, ok := found[name]
		if !ok {
			t.Errorf("%s: not instantiated in int8_gemm_sm90a.cu", name)
			return
		}
		cvt := 0
		if v.cvt == "_i2f" {
			cvt = 1
		}
		want := inst{bn: v.bn, ns: v.ns, wgs: v.warpgroups(), pipe: v.pipe, xt: v.xt, mc: v.mc, cvt: cvt}
		if in != want {
			t.Errorf("%s: instantiated as %+v, the Go side launches it as %+v", name, in, want)
		}
		if s := v.smem(); s > 232448 {
			t.Errorf("%s: %d bytes of shared memory, more than the 232448 an H100/H200 block may use", name, s)
		}
	}
	for key, v := range int8TMAVariants {
		if v.name() != "int8_gemm_tma_"+key {
			t.Errorf("variant %q launches %s", key, v.name())
		}
		check(v.name(), v)
	}
	for _, base := range []string{"n128p_i2f", "n128px_i2f"} { // int8GemmGQ's kernels: the base variant's layout
		check(int8TMAVariants[base].name()+"_gq", int8TMAVariants[base])
	}
}
