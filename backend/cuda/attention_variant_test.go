package cuda

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestParseVariant pins the variant names to kernel parameters (no GPU).
func TestParseVariant(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nwg, st int
		sw, ok  bool
	}{
		{"w3s3", 3, 3, true, true},
		{"w3t", 3, 3, true, true},
		{"w2tivk128", 2, 3, true, true},
		{"w2tivk128p", 2, 3, true, true},
		{"w3b1", 0, 0, false, false}, // removed: never won (docs/PERF.md)
		{"w2tovk192", 0, 0, false, false},
		{"w9b9", 0, 0, false, false},
		{"w2p", 0, 0, false, false},
		{"", 0, 0, false, false},
	} {
		v, ok := parseVariant(tc.name)
		if ok != tc.ok || (ok && (v.nwg != tc.nwg || v.stages != tc.st || v.sw != tc.sw)) {
			t.Errorf("%q: got %+v ok=%v", tc.name, v, ok)
		}
	}
	for _, name := range append(WGMMAVariants, defaultVariant, defaultVariant64, defaultVariantCross) {
		if _, ok := parseVariant(name); !ok {
			t.Errorf("variant %q does not parse", name)
		}
	}
	// The TMA option letters and the stage width reach the kernel name and launch.
	for _, tc := range []struct {
		name string
		bn   int
		vn   bool
		pers bool
	}{{"w3t", 64, false, false}, {"w2tivk128", 128, true, false}, {"w2tivk128p", 128, true, true}} {
		if v, ok := parseVariant(tc.name); !ok || !v.tma || v.bn != tc.bn || v.vn != tc.vn || v.pers != tc.pers {
			t.Errorf("%q: got %+v ok=%v, want a TMA variant with %d-key stages, V in place %v, persistent %v",
				tc.name, v, ok, tc.bn, tc.vn, tc.pers)
		}
	}
	for _, bad := range []string{"w3tx", "w3top", "w3te", "w3tk128", "w2tovk", "w3s3k192", "w2tovk128p", "w3tp", "w2tivk192p",
		"w2s", "w3s", "w2s3", "w2t", "w3to", "w2tok128", "w2tovk128", "w2tik128", "w3s3p"} { // not built
		if _, ok := parseVariant(bad); ok {
			t.Errorf("%q parses but has no kernel", bad)
		}
	}
}

// TestSplitVariants pins how "<self>+<cross>" choices split (no GPU).
func TestSplitVariants(t *testing.T) {
	for _, tc := range []struct {
		in          string
		picked      bool
		self, cross string
	}{
		{defaultVariant, false, defaultVariant, defaultVariantCross},
		{"w2tivk128p", true, "w2tivk128p", "w2tivk128p"},
		{"w2tivk128+w2tivk128p", true, "w2tivk128", "w2tivk128p"},
		{"w3t+", true, "w3t", ""}, // then rejected by parseVariant
	} {
		if s, c := splitVariants(tc.in, tc.picked); s != tc.self || c != tc.cross {
			t.Errorf("splitVariants(%q, %v) = %q, %q; want %q, %q", tc.in, tc.picked, s, c, tc.self, tc.cross)
		}
	}
}

// TestCheckRelL2 pins the start-up checks' verdict (no GPU): a NaN result
// or an all-zero reference must read as +Inf, never as a pass.
func TestCheckRelL2(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name      string
		got, want []float32
		rel       float64
	}{
		{"equal", []float32{1, 2}, []float32{1, 2}, 0},
		{"one value off", []float32{3, 4}, []float32{3, 7}, 3.0 / math.Sqrt(58)},
		{"NaN output", []float32{nan, 1}, []float32{1, 1}, math.Inf(1)},
		{"zero reference", []float32{0, 0}, []float32{0, 0}, math.Inf(1)},
	} {
		if got := checkRelL2(tc.got, tc.want); !(got == tc.rel || math.Abs(got-tc.rel) <= 1e-12) {
			t.Errorf("%s: rel %v, want %v", tc.name, got, tc.rel)
		}
	}
}

// TestVariantKernelsBuilt compiles the attention modules (NVRTC 12+ from
// $TURBODIFFUSION_NVRTC_SM90A_LIBS, no GPU) and checks that every listed
// variant has its kernel for both head dims in the module its family
// launches from, so no variant name can reach a launch that fails with
// "function not found".
func TestVariantKernelsBuilt(t *testing.T) {
	dir := os.Getenv(SM90ALibsEnv)
	if dir == "" {
		t.Skipf("%s not set: sm_90a kernels not compiled here", SM90ALibsEnv)
	}
	n, err := LoadNVRTCFrom([]string{dir})
	if err != nil {
		t.Fatalf("%s=%s: %v", SM90ALibsEnv, dir, err)
	}
	cubins := map[string][]byte{}
	for _, name := range WGMMAVariants {
		v, _ := parseVariant(name)
		mod := v.module()
		if cubins[mod] == nil {
			m, ok := kernels.Module(mod)
			if !ok {
				t.Fatalf("variant %s: module %s not embedded", name, mod)
			}
			if cubins[mod], err = n.Compile(m, "sm_90a"); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []int{64, 128} {
			if fn := v.kernel(d); !bytes.Contains(cubins[mod], []byte(fn+"\x00")) {
				t.Errorf("variant %s: kernel %s not in %s", name, fn, mod)
			}
		}
	}
}

// TestAttnSmemCoversLayout checks that the dynamic shared memory the host
// reserves for each attention variant (kernels.AttnSmemBytes, as
// flashWGMMA launches it) covers what the kernel lays out
// (attn_layout_bytes in kernels/attention_wgmma.cuh, which each kernel
// asserts equals its own layout) plus the worst alignment slack of a
// 16-byte-aligned base, and fits the 227 KB a block may opt in to. It
// compiles static_asserts with NVRTC 12+ ($TURBODIFFUSION_NVRTC_SM90A_LIBS).
func TestAttnSmemCoversLayout(t *testing.T) {
	dir := os.Getenv(SM90ALibsEnv)
	if dir == "" {
		t.Skipf("%s not set: sm_90a kernels not compiled here", SM90ALibsEnv)
	}
	n, err := LoadNVRTCFrom([]string{dir})
	if err != nil {
		t.Fatalf("%s=%s: %v", SM90ALibsEnv, dir, err)
	}
	var b strings.Builder
	b.WriteString("#include \"attention_wgmma.cuh\"\n")
	for _, name := range WGMMAVariants {
		v, _ := parseVariant(name)
		nbar, slack := 0, 0
		if v.sw || v.tma {
			slack = kernels.SmemAlign - 16
		}
		if v.tma {
			nbar = 2*v.stages + 1
			if v.pers {
				nbar++
			}
		}
		for _, d := range []int{64, 128} {
			host := kernels.AttnSmemBytes(d, v.nwg, v.bn, v.stages, v.sw, v.tma)
			if host > 227*1024 {
				t.Errorf("%s d%d: %d bytes of shared memory, more than 227 KB", name, d, host)
			}
			fmt.Fprintf(&b, "static_assert(attn_layout_bytes(%d, %d, %d, %d, %d) + %d <= %d, \"%s d%d: the host reserves %d bytes\");\n",
				d, v.nwg, v.bn, v.stages, nbar, slack, host, name, d, host)
		}
	}
	b.WriteString("extern \"C\" __global__ void td_smem_probe() {}\n")
	t.Log(b.String())
	if _, err := n.Compile(kernels.Source{Name: "smem_probe.cu", Code: b.String()}, "sm_90a"); err != nil {
		t.Fatal(err)
	}
}

// TestAttentionPersistent runs the persistent kernel with its grid capped at
// a few blocks, so each block walks many (head, query tile) items and the
// K/V ring crosses item boundaries at every phase (1, 2, 3, 4 and 8 key
// tiles per item against 3 ring slots), and checks it against the CPU.
func TestAttentionPersistent(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	g.SetAttentionKernel("wgmma:w2tivk128p")
	defer g.SetAttentionKernel("")
	if got := g.AttentionKernel(); !strings.HasPrefix(got, "wgmma") {
		t.Skipf("persistent wgmma kernel not available here: %s", got)
	}
	defer func(n int) { persistentGridCap = n }(persistentGridCap)
	for _, tc := range []struct{ lq, lk, heads, d, batch, grid int }{
		{1000, 100, 3, 128, 2, 5}, {1000, 200, 3, 128, 2, 5}, {1000, 300, 3, 128, 2, 7}, {1000, 512, 3, 128, 2, 5},
		{1000, 1000, 3, 128, 2, 4}, {333, 77, 2, 128, 3, 1}, {777, 555, 4, 64, 1, 3}, {1500, 512, 12, 128, 1, 0},
	} {
		persistentGridCap = tc.grid
		w := tc.heads * tc.d
		q := up(g, c, tensor.BF16, []int{tc.batch, tc.lq, w}, randn(r, tc.batch*tc.lq*w, 1))
		k := up(g, c, tensor.BF16, []int{tc.batch, tc.lk, w}, randn(r, tc.batch*tc.lk*w, 1))
		v := up(g, c, tensor.BF16, []int{tc.batch, tc.lk, w}, randn(r, tc.batch*tc.lk*w, 1))
		s := float32(1 / math.Sqrt(float64(tc.d)))
		compare(t, fmt.Sprintf("persistent Lq=%d Lk=%d h=%d d=%d b=%d grid cap %d", tc.lq, tc.lk, tc.heads, tc.d, tc.batch, tc.grid),
			g, c, g.Attention(q.g, k.g, v.g, tc.heads, s), c.Attention(q.c, k.c, v.c, tc.heads, s), 1e-2)
		for _, p := range []pair{q, k, v} {
			g.Free(p.g)
		}
	}
}
