package cuda

import (
	"math"
	"testing"
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
