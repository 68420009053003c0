package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

// sampleFiles writes the sample tensors in both formats and returns the
// bytes of each.
func sampleFiles(t *testing.T) (pth, st []byte) {
	dir := t.TempDir()
	ts := sampleTensors(rand.New(rand.NewPCG(9, 9)))
	if err := WritePth(filepath.Join(dir, "s.pth"), ts); err != nil {
		t.Fatal(err)
	}
	if err := WriteSafetensors(filepath.Join(dir, "s.safetensors"), ts); err != nil {
		t.Fatal(err)
	}
	pth, _ = os.ReadFile(filepath.Join(dir, "s.pth"))
	st, _ = os.ReadFile(filepath.Join(dir, "s.safetensors"))
	return pth, st
}

// A file cut anywhere is an error naming the file, never a panic or a
// short tensor.
func TestTruncatedFiles(t *testing.T) {
	pth, st := sampleFiles(t)
	for _, c := range []struct {
		name  string
		data  []byte
		parse func(string, []byte) (File, error)
	}{{"cut.pth", pth, ParsePth}, {"cut.safetensors", st, ParseSafetensors}} {
		cuts := []int{0, 1, 4, 7, 8, 9, 30, 64, 100, len(c.data) / 3, len(c.data) / 2, len(c.data) - 100, len(c.data) - 22, len(c.data) - 1}
		for _, n := range cuts {
			f, err := c.parse(c.name, c.data[:n])
			if err == nil {
				// A zip cut inside its data can still parse only if the
				// central directory survived, which it cannot.
				t.Errorf("%s cut at %d of %d: parsed (%d tensors)", c.name, n, len(c.data), len(f.Names()))
				continue
			}
			if !strings.Contains(err.Error(), c.name) {
				t.Errorf("%s cut at %d: error %q does not name the file", c.name, n, err)
			}
		}
		// Through Open (mmap path) as well.
		path := filepath.Join(t.TempDir(), c.name)
		os.WriteFile(path, c.data[:len(c.data)/2], 0o644)
		if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Open of a truncated %s: %v", c.name, err)
		}
	}
}

// A safetensors file whose data is cut (header intact) names the tensor
// that runs past the end.
func TestSafetensorsTruncatedData(t *testing.T) {
	_, st := sampleFiles(t)
	// The tensor whose data ends last, from the header's data_offsets.
	var header map[string]json.RawMessage
	if err := json.Unmarshal(st[8:8+binary.LittleEndian.Uint64(st)], &header); err != nil {
		t.Fatal(err)
	}
	last, end := "", int64(-1)
	for name, raw := range header {
		var e struct {
			Offsets []int64 `json:"data_offsets"`
		}
		if name == "__metadata__" || json.Unmarshal(raw, &e) != nil || len(e.Offsets) != 2 {
			continue
		}
		if e.Offsets[1] > end {
			last, end = name, e.Offsets[1]
		}
	}
	_, err := ParseSafetensors("cut.safetensors", st[:len(st)-1])
	wantErr(t, err, "cut.safetensors", fmt.Sprintf("tensor %q", last), "truncated")
}

func TestSafetensorsCorruptHeader(t *testing.T) {
	mk := func(header string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), make([]byte, data)...)
	}
	cases := []struct {
		what string
		data []byte
		want []string
	}{
		{"not json", mk(`{"a": [`, 0), []string{"not valid JSON"}},
		{"header too long", binary.LittleEndian.AppendUint64(nil, 1<<40), []string{"header length"}},
		{"bad dtype", mk(`{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}`, 1), []string{`"w"`, `unsupported dtype "Q7"`}},
		{"size mismatch", mk(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "needs 8 bytes"}},
		{"negative dim", mk(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0), []string{`"w"`, "bad shape"}},
		{"huge shape", mk(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "bad shape"}},
		{"offsets past end", mk(`{"w":{"dtype":"U8","shape":[4],"data_offsets":[9223372036854775800,9223372036854775804]}}`, 4), []string{`"w"`, "truncated"}},
		{"reversed offsets", mk(`{"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, 4), []string{`"w"`, "bad data_offsets"}},
		{"entry not an object", mk(`{"w":3}`, 0), []string{`"w"`, "bad header entry"}},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			_, err := ParseSafetensors("bad.safetensors", c.data)
			wantErr(t, err, append(c.want, "bad.safetensors")...)
		})
	}
}

// A pickle calling anything but the tensor-rebuilding globals is refused
// with the global's name, before anything is called.
func TestPthRefusesForeignGlobals(t *testing.T) {
	for _, g := range [][2]string{{"os", "system"}, {"builtins", "eval"}, {"torch._utils", "_rebuild_qtensor"}, {"__main__", "Net"}} {
		p := newPickler()
		p.op(0x80, 2)
		p.global(g[0], g[1])
		p.str("echo pwned")
		p.op(0x85, 'R', '.')
		_, err := ParsePth("evil.pth", buildPth(t, p.buf.Bytes(), nil))
		wantErr(t, err, "evil.pth", "refusing to load global \""+g[0]+"."+g[1]+"\"")
	}
	// Protocol-4 STACK_GLOBAL form.
	pkl := []byte("\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")
	_, err := ParsePth("evil.pth", buildPth(t, pkl, nil))
	wantErr(t, err, "evil.pth", "os.system")
	// INST names a class inline; refused as an opcode.
	_, err = ParsePth("evil.pth", buildPth(t, []byte("(ios\nsystem\nS'id'\n."), nil))
	wantErr(t, err, "evil.pth", "refused")
}

func TestPthNotTorchFiles(t *testing.T) {
	// Legacy torch.save: magic number pickled first.
	legacy := []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")
	path := filepath.Join(t.TempDir(), "old.pth")
	os.WriteFile(path, legacy, 0o644)
	_, err := Open(path)
	wantErr(t, err, path, "legacy torch.save format", "torch >= 1.6")

	// A zip that is not a torch archive.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("weights.npy")
	w.Write([]byte("x"))
	zw.Close()
	_, err = ParsePth("x.npz", buf.Bytes())
	wantErr(t, err, "x.npz", "without <name>/data.pkl", "weights.npy")

	// A compressed data.pkl (re-zipped archive).
	buf.Reset()
	zw = zip.NewWriter(&buf)
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "a/data.pkl", Method: zip.Deflate})
	w.Write(stateDictPickle())
	zw.Close()
	_, err = ParsePth("z.pth", buf.Bytes())
	wantErr(t, err, "z.pth", `"a/data.pkl" is compressed`)

	// Big-endian byte order record.
	pkl := stateDictPickle(pklTensor{"w", "FloatStorage", "0", 1, 0, []int64{1}, []int64{1}})
	data := buildPth(t, pkl, map[string][]byte{"data/0": make([]byte, 4)})
	data = bytes.Replace(data, []byte("little"), []byte("big\x00\x00\x00"), 1)
	_, err = ParsePth("be.pth", data)
	wantErr(t, err, "be.pth", "little-endian")

	// Not a checkpoint at all.
	path = filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("hello, world"), 0o644)
	_, err = Open(path)
	wantErr(t, err, path, "not a checkpoint", `"hello, world"`)
	path = filepath.Join(t.TempDir(), "empty")
	os.WriteFile(path, nil, 0o644)
	_, err = Open(path)
	wantErr(t, err, path, "not a checkpoint")
}

// Asking for a tensor that is absent, or for int8 from a float tensor, is
// an error naming the file and the key.
func TestMissingKeysAndWrongDTypes(t *testing.T) {
	pth, st := sampleFiles(t)
	for _, c := range []struct {
		name  string
		data  []byte
		parse func(string, []byte) (File, error)
	}{{"m.pth", pth, ParsePth}, {"m.safetensors", st, ParseSafetensors}} {
		f, err := c.parse(c.name, c.data)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.Info("blocks.9.nope"); ok {
			t.Error("Info found a missing tensor")
		}
		_, err1 := f.Raw("blocks.9.nope")
		_, err2 := f.Float32("blocks.9.nope")
		_, err3 := f.Int8("blocks.9.nope")
		for _, err := range []error{err1, err2, err3} {
			wantErr(t, err, c.name, `"blocks.9.nope"`)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%v is not ErrNotFound", err)
			}
		}
		_, err = f.Int8("patch_embedding.weight")
		wantErr(t, err, c.name, `"patch_embedding.weight"`, "want dtype int8, got bfloat16")
		if errors.Is(err, ErrNotFound) {
			t.Error("a dtype mismatch reads as not found")
		}
		// Every dtype converts to float32.
		for _, n := range f.Names() {
			info, _ := f.Info(n)
			v, err := f.Float32(n)
			if err != nil || len(v) != tensor.NumElements(info.Shape) {
				t.Errorf("%s: Float32: %d values, %v", n, len(v), err)
			}
		}
		f.Close()
		_, err = f.Raw("patch_embedding.weight")
		wantErr(t, err, c.name, "closed")
	}
}

func TestPickleBounds(t *testing.T) {
	cases := []struct {
		what string
		pkl  []byte
		want string
	}{
		{"no stop", []byte("\x80\x02}"), "no STOP"},
		{"string past end", []byte("\x80\x02X\xff\xff\xff\x7f"), "truncated"},
		{"bytes8 past end", []byte("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff"), "truncated"},
		{"long4 negative", []byte("\x80\x02\x8b\xff\xff\xff\xff"), "negative"},
		{"underflow", []byte("\x80\x02s."), "underflow"},
		{"pop below mark", []byte("\x80\x02K\x01(0."), "underflow"},
		{"memo miss", []byte("\x80\x02h\x07."), "memo entry 7"},
		{"unknown opcode", []byte("\x80\x02\xff."), "0xff"},
		{"protocol 6", []byte("\x80\x06."), "protocol 6"},
		{"tuple without mark", []byte("\x80\x02t."), "MARK"},
		{"setitem on list", []byte("\x80\x02]K\x01K\x02s."), "SETITEM on a list"},
		{"tuple dict key", []byte("\x80\x02})K\x01s."), "dict key of type tuple"},
		{"call a string", []byte("\x80\x02X\x01\x00\x00\x00a)R."), "cannot call a str"},
		{"top not dict", []byte("\x80\x02]."), "list, not a dict of tensors"},
	}
	for _, c := range cases {
		_, err := ParsePth("p.pth", buildPth(t, c.pkl, nil))
		wantErr(t, err, "p.pth", c.want)
	}
}

// Offsets and sizes near 2^63 are refused with messages whose numbers are
// what the file says (no wrapped, negative byte counts).
func TestHugeOffsets(t *testing.T) {
	negative := regexp.MustCompile(`-[0-9]`)
	const big = "9223372036854775800"
	for _, hdr := range []string{
		`{"w":{"dtype":"F32","shape":[1],"data_offsets":[` + big + `,9223372036854775804]}}`,
		`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,9223372036854775807]}}`,
		`{"w":{"dtype":"I8","shape":[9223372036854775807],"data_offsets":[0,9223372036854775807]}}`,
		`{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}`,
	} {
		data := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		data = append(append(data, hdr...), make([]byte, 16)...)
		_, err := ParseSafetensors("big.safetensors", data)
		if err == nil || negative.MatchString(err.Error()) {
			t.Errorf("header %s: error %v, want one without negative numbers", hdr, err)
		}
	}
	for _, tc := range []pklTensor{
		{"w", "FloatStorage", "0", 1, 1<<63 - 2, []int64{2}, []int64{1}},
		{"w", "FloatStorage", "0", 1, 1<<63 - 1, []int64{0}, []int64{1}},
		{"w", "FloatStorage", "0", 1, 0, []int64{1 << 62, 4}, []int64{4, 1}},
		{"w", "FloatStorage", "0", 1, 0, []int64{3, 2}, []int64{1 << 62, 1 << 62}},
	} {
		data := buildPth(t, stateDictPickle(tc), map[string][]byte{"data/0": make([]byte, 4)})
		_, err := ParsePth("big.pth", data)
		if err == nil || negative.MatchString(err.Error()) {
			t.Errorf("tensor offset %d shape %v stride %v: error %v, want one without negative numbers", tc.offset, tc.shape, tc.stride, err)
		}
	}
}
