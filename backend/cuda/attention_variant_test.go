package cuda

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

// TestParseVariant pins the variant names to kernel parameters (no GPU).
func TestParseVariant(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nwg, st int
		sw, ok  bool
	}{
		{"w3b1", 3, 2, false, true},
		{"w3s", 3, 2, true, true},
		{"w2s3", 2, 3, true, true},
		{"w3s3", 3, 3, true, true},
		{"w3t", 3, 3, true, true},
		{"w3to", 3, 3, true, true},
		{"w2tivk128", 2, 3, true, true},
		{"w2tovk192", 2, 2, true, true},
		{"w9b9", 0, 0, false, false},
		{"w2p", 0, 0, false, false},
		{"", 0, 0, false, false},
	} {
		v, ok := parseVariant(tc.name)
		if ok != tc.ok || (ok && (v.nwg != tc.nwg || v.stages != tc.st || v.sw != tc.sw)) {
			t.Errorf("%q: got %+v ok=%v", tc.name, v, ok)
		}
	}
	for _, name := range append(WGMMAVariants, defaultVariant, defaultVariant64) {
		if _, ok := parseVariant(name); !ok {
			t.Errorf("variant %q does not parse", name)
		}
	}
	// The TMA option letters and the stage width reach the kernel name and launch.
	for _, tc := range []struct {
		name string
		bn   int
		vn   bool
	}{{"w3t", 64, false}, {"w3to", 64, false}, {"w2tok128", 128, false}, {"w2tovk128", 128, true}, {"w2tovk192", 192, true}} {
		if v, ok := parseVariant(tc.name); !ok || !v.tma || v.bn != tc.bn || v.vn != tc.vn {
			t.Errorf("%q: got %+v ok=%v, want a TMA variant with %d-key stages, V in place %v", tc.name, v, ok, tc.bn, tc.vn)
		}
	}
	for _, bad := range []string{"w3tx", "w3top", "w3te", "w3tk128", "w2tovk", "w3s3k192"} { // not built
		if _, ok := parseVariant(bad); ok {
			t.Errorf("%q parses but has no kernel", bad)
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

// TestVariantKernelsBuilt compiles attention_sm90a.cu (NVRTC 12+ from
// $TURBODIFFUSION_NVRTC_SM90A_LIBS, no GPU) and checks that every listed
// variant has its kernel for both head dims, so no variant name can reach
// a launch that fails with "function not found".
func TestVariantKernelsBuilt(t *testing.T) {
	dir := os.Getenv(SM90ALibsEnv)
	if dir == "" {
		t.Skipf("%s not set: sm_90a kernels not compiled here", SM90ALibsEnv)
	}
	n, err := LoadNVRTCFrom([]string{dir})
	if err != nil {
		t.Fatalf("%s=%s: %v", SM90ALibsEnv, dir, err)
	}
	m, ok := kernels.Module("attention_sm90a.cu")
	if !ok {
		t.Fatal("attention_sm90a.cu not embedded")
	}
	cubin, err := n.Compile(m, "sm_90a")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range WGMMAVariants {
		v, _ := parseVariant(name)
		for _, d := range []int{64, 128} {
			fn := fmt.Sprintf("flash_wgmma_d%d_w%d_%s", d, v.nwg, name[2:])
			if !bytes.Contains(cubin, []byte(fn+"\x00")) {
				t.Errorf("variant %s: kernel %s not in the cubin", name, fn)
			}
		}
	}
}
