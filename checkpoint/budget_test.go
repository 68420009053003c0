package checkpoint

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// amplifier builds a pickle of about size bytes that makes one list of n
// items and then feeds it again and again to a callable that copies or
// walks it: torch.Size(list) (a copy per call, kept on the stack unless
// pop), or OrderedDict(list of one pair repeated) (n dict insertions per
// call, the result popped: quadratic time in little memory).
func amplifier(size, n int, callable [2]string, pairs, pop bool) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x02")
	if pairs {
		b.WriteString("K\x01K\x02\x86q\x02") // memo 2 = (1, 2)
	}
	b.WriteString("]q\x00(") // memo 0 = the list
	for i := 0; i < n; i++ {
		if pairs {
			b.WriteString("h\x02")
		} else {
			b.WriteByte('N')
		}
	}
	b.WriteString("e")
	fmt.Fprintf(&b, "c%s\n%s\nq\x01", callable[0], callable[1])
	for b.Len() < size-8 {
		b.WriteString("h\x01h\x00\x85R")
		if pop {
			b.WriteByte('0')
		}
	}
	b.WriteString("}.")
	return b.Bytes()
}

// rebuildLoop is a pickle that rebuilds one 64-dimensional tensor view
// again and again from a memoised argument tuple (each call re-reads two
// 64-entry tuples for 5 bytes of pickle), and, if names, stores the one
// tensor under many names (each name a few bytes, each resolved alone).
func rebuildLoop(size int, names bool) ([]byte, map[string][]byte) {
	p := newPickler()
	p.op(0x80, 2, '}')
	dict := p.memo
	p.put()
	ones := make([]int64, 64)
	for i := range ones {
		ones[i] = 1
	}
	fn := p.memo
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op('(', '(')
	p.str("storage")
	p.global("torch", "FloatStorage")
	p.str("0")
	p.str("cpu")
	p.int(1)
	p.op('t', 'Q', 'K', 0)
	p.intTuple(ones)
	p.intTuple(ones)
	p.op(0x89)
	p.emptyOrderedDict()
	p.op('t')
	args := p.memo
	p.put()
	p.op('R')
	tens := p.memo
	p.put()
	p.op('0')
	for i := 0; p.buf.Len() < size-16; i++ {
		if names {
			p.get(dict)
			fmt.Fprintf(&p.buf, "\x8c%c%x", len(fmt.Sprintf("%x", i)), i)
			p.get(tens)
			p.op('s', '0')
		} else {
			p.get(fn)
			p.get(args)
			p.op('R', '0')
		}
	}
	p.get(dict)
	p.op('.')
	return p.buf.Bytes(), map[string][]byte{"data/0": make([]byte, 4)}
}

// TestPickleAmplificationBounded: crafted pickles that copy one list over
// and over (the probe's torch.Size(list) and OrderedDict(list) files, which
// reached 2.4 GB or a fatal out-of-memory from 1 MB, and the quadratic
// variant that ran for over 20 s) are refused quickly, having allocated at
// most a small multiple of their size.
func TestPickleAmplificationBounded(t *testing.T) {
	const size = 1 << 20
	rebuild, recs := rebuildLoop(size, false)
	named, _ := rebuildLoop(size, true)
	memoFlood := append([]byte("\x80\x04N"), bytes.Repeat([]byte{0x94}, size)...)
	memoFlood = append(memoFlood, "0}."...)
	cases := []struct {
		what string
		pkl  []byte
		want string
	}{
		{"torch.Size(list) kept", amplifier(size, size/4, [2]string{"torch", "Size"}, false, false), "refused as a crafted file"},
		{"torch.Size(list) popped", amplifier(size, size/4, [2]string{"torch", "Size"}, false, true), "refused as a crafted file"},
		{"OrderedDict(pairs) popped", amplifier(size, size/8, [2]string{"collections", "OrderedDict"}, true, true), "refused as a crafted file"},
		{"OrderedDict(pairs) kept", amplifier(size, size/8, [2]string{"collections", "OrderedDict"}, true, false), "refused as a crafted file"},
		{"a 64-dim tensor rebuilt from memoised arguments", rebuild, "refused as a crafted file"},
		{"one 64-dim tensor under many names", named, "refused as a crafted file"},
		// Linear: one memo entry per byte is allowed, and bounded anyway.
		{"a memo entry per byte", memoFlood, "no tensors"},
	}
	for _, c := range cases {
		archive := buildPth(t, c.pkl, recs)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		_, err := ParsePth("amp.pth", archive)
		took := time.Since(t0)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s (%d-byte pickle): %v in %v, %.1f MB allocated", c.what, len(c.pkl), err, took, float64(alloc)/1e6)
		wantErr(t, err, "amp.pth", c.want)
		// The budget is 16 bytes per pickle byte; the slices and maps
		// behind it at most double that.
		if limit := uint64(48*len(c.pkl) + 8<<20); alloc > limit {
			t.Errorf("%s: %d bytes allocated for a %d-byte pickle, want at most %d", c.what, alloc, len(c.pkl), limit)
		}
		if took > 5*time.Second {
			t.Errorf("%s: took %v", c.what, took)
		}
	}
}
