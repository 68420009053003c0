package cuda

import "testing"

// TestParseVariant pins the variant names to kernel parameters (no GPU).
func TestParseVariant(t *testing.T) {
	for _, tc := range []struct {
		v                 string
		nwg, minb, bn, st int
		pipe, sw, ok      bool
	}{
		{"w3b1", 3, 1, 64, 2, false, false, true},
		{"w2b2", 2, 2, 64, 2, false, false, true},
		{"w2n128", 2, 1, 128, 2, false, false, true},
		{"w3p", 3, 1, 64, 2, true, false, true},
		{"w3s", 3, 1, 64, 2, false, true, true},
		{"w2s3", 2, 1, 64, 3, false, true, true},
		{"w9b9", 0, 0, 0, 0, false, false, false},
		{"", 0, 0, 0, 0, false, false, false},
	} {
		nwg, minb, bn, pipe, sw, st, ok := parseVariantStages(tc.v)
		if ok != tc.ok || (ok && (nwg != tc.nwg || minb != tc.minb || bn != tc.bn || pipe != tc.pipe || sw != tc.sw || st != tc.st)) {
			t.Errorf("%q: got nwg=%d minb=%d bn=%d pipe=%v sw=%v stages=%d ok=%v", tc.v, nwg, minb, bn, pipe, sw, st, ok)
		}
	}
	for _, v := range WGMMAVariants {
		if _, _, _, _, _, _, ok := parseVariantStages(v); !ok {
			t.Errorf("listed variant %q does not parse", v)
		}
	}
}
