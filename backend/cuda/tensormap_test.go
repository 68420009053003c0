package cuda

import (
	"strings"
	"testing"
)

// TestTensorMapSpecCheck needs no GPU: the limits are checked before the
// driver is asked, so a bad map names its reason.
func TestTensorMapSpecCheck(t *testing.T) {
	ok := tensorMapRows(tmapU8, 1, 300, 1536, 128, 128, tmapSwizzle128)
	if err := ok.check(256); err != nil {
		t.Fatalf("int8 [300, 1536] with 128×128 boxes: %v", err)
	}
	bad := func(f func(*tensorMapSpec)) tensorMapSpec {
		s := tensorMapRows(tmapBF16, 2, 64, 256, 64, 64, tmapSwizzle128)
		s.Dims = append([]uint64(nil), s.Dims...)
		s.Strides = append([]uint64(nil), s.Strides...)
		s.Box = append([]uint32(nil), s.Box...)
		f(&s)
		return s
	}
	for _, c := range []struct {
		name string
		s    tensorMapSpec
		addr uintptr
		want string
	}{
		{"misaligned address", bad(func(*tensorMapSpec) {}), 8, "not 16-byte aligned"},
		{"row wider than swizzle", bad(func(s *tensorMapSpec) { s.Box[0] = 128 }), 0, "exceeds the 128-byte swizzle"},
		{"box too tall", bad(func(s *tensorMapSpec) { s.Box[1] = 512 }), 0, "want 1..256"},
		{"stride not 16-byte multiple", bad(func(s *tensorMapSpec) { s.Strides[0] = 200 }), 0, "multiple of 16"},
		{"zero dimension", bad(func(s *tensorMapSpec) { s.Dims[1] = 0 }), 0, "dimension 1 is 0"},
		{"stride count", bad(func(s *tensorMapSpec) { s.Strides = nil }), 0, "need 1 strides"},
	} {
		err := c.s.check(c.addr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}
