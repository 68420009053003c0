package cuda

import "testing"

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
