package cuda

import (
	"fmt"
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

// legacyBF16Args are the arguments the three former bf16 encoders
// (attention_select.go's tensorMap2D, conv_sm90.go's convTensorMap and, for
// SLA, tensorMap2D again) passed to cuTensorMapEncodeTiled: bf16, rank 2,
// element strides 1, no interleave, 128-byte L2 promotion, zero fill.
func legacyBF16Args(addr uintptr, inner, outer, rowBytes int64, boxInner, boxOuter, swizzle int) tensorMapArgs {
	a := tensorMapArgs{DType: 9, Rank: 2, Addr: addr, Interleave: 0, Swizzle: uintptr(swizzle), L2Promotion: 2, OOBFill: 0}
	a.Dims[0], a.Dims[1] = uint64(inner), uint64(outer)
	a.Strides[0] = uint64(rowBytes)
	a.Box[0], a.Box[1] = uint32(boxInner), uint32(boxOuter)
	a.EStr[0], a.EStr[1] = 1, 1
	return a
}

// sameArgs compares what the driver reads: the first Rank entries.
func sameArgs(a, b tensorMapArgs) bool {
	r := int(a.Rank)
	if a.DType != b.DType || a.Rank != b.Rank || a.Addr != b.Addr || a.Interleave != b.Interleave ||
		a.Swizzle != b.Swizzle || a.L2Promotion != b.L2Promotion || a.OOBFill != b.OOBFill {
		return false
	}
	for i := 0; i < r; i++ {
		if a.Dims[i] != b.Dims[i] || a.Box[i] != b.Box[i] || a.EStr[i] != b.EStr[i] || (i < r-1 && a.Strides[i] != b.Strides[i]) {
			return false
		}
	}
	return true
}

// TestTensorMapArgsUnchanged checks, without a GPU, that the one encoder
// passes the driver exactly what each former call site passed, for the
// shapes in use: attention (every TMA variant, both head dims, self and
// cross, batch 1 and 2), SLA and every Conv3d kernel instance.
func TestTensorMapArgsUnchanged(t *testing.T) {
	const addr = 0x7f0000000000
	n := 0
	check := func(what string, got tensorMapSpec, want tensorMapArgs) {
		t.Helper()
		n++
		if err := got.check(addr); err != nil {
			t.Errorf("%s: spec rejected: %v", what, err)
		}
		if g := got.args(addr); !sameArgs(g, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", what, g, want)
		}
	}
	for _, name := range WGMMAVariants {
		kv, ok := parseVariant(name)
		if !ok || !kv.tma {
			continue
		}
		for _, c := range [][5]int{{1, 32760, 32760, 12, 128}, {1, 32760, 512, 40, 128}, {2, 777, 777, 2, 64}, {1, 200, 2148, 2, 128}} {
			batch, Lq, Lk, heads, d := c[0], c[1], c[2], c[3], c[4]
			q, k, v := attnTensorMaps(kv, batch, Lq, Lk, heads, d)
			// The former flashWGMMA code, verbatim in its arithmetic.
			bm, W := 64*kv.nwg, heads*d
			Lkp := (Lk + 127) / 128 * 128
			hd := heads * d
			what := fmt.Sprintf("%s %v", name, c)
			check(what+" q", q, legacyBF16Args(addr, int64(W), int64(batch*Lq), int64(W*2), 64, bm, 3))
			check(what+" k", k, legacyBF16Args(addr, int64(W), int64(batch*Lk), int64(W*2), 64, kv.bn, 3))
			if kv.vn {
				check(what+" v", v, legacyBF16Args(addr, int64(W), int64(batch*Lk), int64(W*2), 64, kv.bn, 3))
			} else {
				check(what+" vᵀ", v, legacyBF16Args(addr, int64(Lkp), int64(batch*hd), int64(Lkp*2), 64, d, 3))
			}
		}
	}
	// SLA (ops_sla_sm90.go): W = H·d, rows = B·L, 64-element boxes of a
	// query/key block's rows.
	for _, c := range [][4]int64{{1, 32760, 12 * 128, 128}, {2, 1280, 2 * 64, 64}} {
		B, L, W, blk := c[0], c[1], c[2], int(c[3])
		rows := B * L
		check("SLA", tensorMapBF16(W, rows, W*2, 64, blk, tmapSwizzle128), legacyBF16Args(addr, W, rows, W*2, 64, blk, 3))
	}
	// Conv3d: every kernel instance convTMAPick can return, with the former
	// convTensorMap calls (stride = cin·2; bk 32: 64-byte swizzle, 96: a
	// 64-channel 128-byte pair and a 32-channel 64-byte pair).
	defer func(s, n bool) { convSplit96, convN256 = s, n }(convSplit96, convN256)
	for _, cin := range []int{64, 96, 128, 160, 256, 384} {
		for _, cout := range []int{3, 64, 96, 128, 192, 256, 384} {
			for _, persist := range []bool{false, true} {
				for _, split := range []bool{false, true} {
					convSplit96, convN256 = split, split
					k := convTMAPick(cin, cout, &persist)
					const rows, ntap = 5000, 27
					ci, co := int64(cin), int64(cout)
					var want []tensorMapArgs
					switch k.bk {
					case 96:
						want = []tensorMapArgs{legacyBF16Args(addr, ci, rows, ci*2, 64, k.rows(), 3), legacyBF16Args(addr, ci, ntap*co, ci*2, 64, k.n, 3),
							legacyBF16Args(addr, ci, rows, ci*2, 32, k.rows(), 2), legacyBF16Args(addr, ci, ntap*co, ci*2, 32, k.n, 2)}
					default:
						swz := 3
						if k.bk == 32 {
							swz = 2
						}
						want = []tensorMapArgs{legacyBF16Args(addr, ci, rows, ci*2, k.bk, k.rows(), swz), legacyBF16Args(addr, ci, ntap*co, ci*2, k.bk, k.n, swz)}
					}
					got := convTensorMaps(k, ci, rows, ntap, co)
					if len(got) != len(want) {
						t.Errorf("conv %s: %d maps, want %d", k.name(), len(got), len(want))
						continue
					}
					for i := range got {
						check(fmt.Sprintf("conv %s cin %d cout %d map %d", k.name(), cin, cout, i), got[i], want[i])
					}
				}
			}
		}
	}
	// The dw kernel copies without tensor maps.
	defer func(d bool) { convDW = d }(convDW)
	convDW, convSplit96, convN256 = true, false, false
	if k := convDWPick(convTMAPick(96, 96, nil), 3, false); !k.dw || convTensorMaps(k, 96, 5000, 27, 96) != nil {
		t.Errorf("dw kernel %+v: tensor maps %v, want none", k, convTensorMaps(k, 96, 5000, 27, 96))
	}
	t.Logf("%d tensor maps compared", n)
}
