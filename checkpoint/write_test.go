package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// sampleTensors covers every dtype both writers support, a scalar, an
// empty tensor and a 4-D tensor (the MARK ... TUPLE form of a size).
func sampleTensors(rng *rand.Rand) []Tensor {
	mk := func(name string, dt tensor.DType, shape ...int) Tensor {
		b := make([]byte, tensor.NumElements(shape)*dt.Size())
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if dt == tensor.Bool {
			for i := range b {
				b[i] &= 1
			}
		}
		return Tensor{Name: name, DType: dt, Shape: shape, Data: b}
	}
	return []Tensor{
		mk("patch_embedding.weight", tensor.BF16, 8, 4, 1, 2, 2),
		mk("z.f16", tensor.F16, 3, 5),
		mk("blocks.0.norm3.weight", tensor.F32, 7),
		mk("a.f64", tensor.F64, 2, 2),
		mk("blocks.0.ffn.0.int8_weight", tensor.I8, 4, 6),
		mk("u8", tensor.U8, 5),
		mk("i16", tensor.I16, 3),
		mk("i32", tensor.I32, 1, 3),
		mk("i64", tensor.I64, 2),
		mk("mask", tensor.Bool, 4),
		mk("fp8", tensor.F8E4M3, 2, 8),
		mk("scalar", tensor.F32),
		mk("empty", tensor.BF16, 0, 3),
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	ts := sampleTensors(rand.New(rand.NewPCG(1, 2)))
	dir := t.TempDir()
	for _, format := range []string{"pth", "safetensors"} {
		t.Run(format, func(t *testing.T) {
			path := filepath.Join(dir, "model."+format)
			write := WritePth
			if format == "safetensors" {
				write = WriteSafetensors
			}
			if err := write(path, ts); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if len(f.Names()) != len(ts) {
				t.Fatalf("%d tensors read back, wrote %d", len(f.Names()), len(ts))
			}
			for _, w := range ts {
				info, ok := f.Info(w.Name)
				if !ok {
					t.Fatalf("%s missing", w.Name)
				}
				if info.DType != w.DType || !slices.Equal(info.Shape, nonNil(w.Shape)) {
					t.Errorf("%s: %v%v, wrote %v%v", w.Name, info.DType, info.Shape, w.DType, w.Shape)
				}
				raw, err := f.Raw(w.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, w.Data) {
					t.Errorf("%s: bytes differ", w.Name)
				}
			}
			if format == "pth" {
				var names []string
				for _, w := range ts {
					names = append(names, w.Name)
				}
				if !slices.Equal(Order(f), names) {
					t.Errorf("pth order %q, wrote %q", Order(f), names)
				}
			}
			s := Summarize(f)
			var params, nbytes int64
			for _, w := range ts {
				params += int64(tensor.NumElements(w.Shape))
				nbytes += int64(len(w.Data))
			}
			if s.Tensors != len(ts) || s.Params != params || s.Bytes != nbytes || len(s.ByDType) != 11 {
				t.Errorf("summary %+v, want %d tensors, %d params, %d bytes, 11 dtypes", s, len(ts), params, nbytes)
			}
			t.Logf("%s: %s", Format(f), s)
			if format == "safetensors" {
				// Data order: decreasing element size, then name.
				order := Order(f)
				for i := 1; i < len(order); i++ {
					a, _ := f.Info(order[i-1])
					b, _ := f.Info(order[i])
					if a.DType.Size() < b.DType.Size() || a.DType.Size() == b.DType.Size() && order[i-1] > order[i] {
						t.Errorf("data order %q", order)
						break
					}
				}
			}
		})
	}
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}

// The archive has torch.save's records, each stored and starting on a
// 64-byte boundary, and the safetensors header keeps tensors aligned.
func TestWriteLayout(t *testing.T) {
	ts := sampleTensors(rand.New(rand.NewPCG(3, 4)))
	dir := t.TempDir()
	path := filepath.Join(dir, "my model.v2.pth")
	if err := WritePth(path, ts); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		off, err := f.DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		if off%64 != 0 || f.Method != zip.Store {
			t.Errorf("%s: data at %d (method %d), want stored at a multiple of 64", f.Name, off, f.Method)
		}
		rc, err := f.Open() // checks the CRC on EOF
		if err == nil {
			_, err = bytes.NewBuffer(nil).ReadFrom(rc)
		}
		if err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
	want := []string{"my_model.v2/data.pkl", "my_model.v2/.format_version", "my_model.v2/.storage_alignment", "my_model.v2/byteorder"}
	for i := range ts {
		want = append(want, fmt.Sprintf("my_model.v2/data/%d", i))
	}
	want = append(want, "my_model.v2/version", "my_model.v2/.data/serialization_id")
	if !slices.Equal(names, want) {
		t.Errorf("records %q, want %q", names, want)
	}

	st := filepath.Join(dir, "m.safetensors")
	if err := WriteSafetensors(st, ts); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(st)
	hlen := binary.LittleEndian.Uint64(data)
	if hlen%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", hlen)
	}
	f, err := ParseSafetensors(st, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range f.Names() {
		e := f.(*safetensorsFile).entries[name]
		if e.begin%int64(e.info.DType.Size()) != 0 {
			t.Errorf("%s: %v data at %d is misaligned", name, e.info.DType, e.begin)
		}
	}
}

// Same tensors, same bytes: outputs are deterministic.
func TestWriteDeterministic(t *testing.T) {
	ts := sampleTensors(rand.New(rand.NewPCG(5, 6)))
	for _, w := range []func(string, []Tensor) error{WritePth, WriteSafetensors} {
		// Same file name: the .pth's top folder is named after the file.
		a, b := filepath.Join(t.TempDir(), "m.x"), filepath.Join(t.TempDir(), "m.x")
		if err := w(a, ts); err != nil {
			t.Fatal(err)
		}
		if err := w(b, ts); err != nil {
			t.Fatal(err)
		}
		da, _ := os.ReadFile(a)
		db, _ := os.ReadFile(b)
		if !bytes.Equal(da, db) {
			t.Error("two writes of the same tensors differ")
		}
	}
}

// Load streams tensors one at a time; a failing Load aborts the write
// and leaves neither the file nor a temporary behind, and an existing file
// is kept.
func TestWriteStreamingAndAtomic(t *testing.T) {
	ts := sampleTensors(rand.New(rand.NewPCG(7, 8)))
	for _, w := range []struct {
		name  string
		write func(string, []Tensor) error
	}{{"pth", WritePth}, {"safetensors", WriteSafetensors}} {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out")
			lazy := make([]Tensor, len(ts))
			calls := 0
			for i, x := range ts {
				lazy[i] = Tensor{Name: x.Name, DType: x.DType, Shape: x.Shape, Load: func() ([]byte, error) {
					calls++
					return x.Data, nil
				}}
			}
			if err := w.write(path, lazy); err != nil {
				t.Fatal(err)
			}
			if calls != len(ts) {
				t.Errorf("Load called %d times for %d tensors", calls, len(ts))
			}
			before, _ := os.ReadFile(path)
			boom := errors.New("disk on fire")
			lazy[3].Load = func() ([]byte, error) { return nil, boom }
			err := w.write(path, lazy)
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), lazy[3].Name) {
				t.Errorf("error %v, want the Load error naming %q", err, lazy[3].Name)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Error("a failed write changed the existing file")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("folder holds %d entries after a failed write, want 1", len(entries))
			}
			if err := w.write(filepath.Join(dir, "fresh"), lazy); err == nil {
				t.Error("no error")
			}
			if _, err := os.Stat(filepath.Join(dir, "fresh")); !os.IsNotExist(err) {
				t.Error("a failed write left a file")
			}
		})
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	ok := Tensor{Name: "a", DType: tensor.F32, Shape: []int{2}, Data: make([]byte, 8)}
	cases := []struct {
		what string
		ts   []Tensor
		want string
	}{
		{"duplicate", []Tensor{ok, ok}, `"a" is listed twice`},
		{"short data", []Tensor{{Name: "b", DType: tensor.F32, Shape: []int{3}, Data: make([]byte, 8)}}, `"b": shape [3] of float32 needs 12 bytes, got 8`},
		{"negative dim", []Tensor{{Name: "c", DType: tensor.F32, Shape: []int{-1}, Data: nil}}, `"c": bad shape [-1]`},
		{"no dtype", []Tensor{{Name: "d", Shape: []int{1}, Data: []byte{0}}}, `"d": invalid dtype`},
		{"no name", []Tensor{{DType: tensor.F32, Data: make([]byte, 4)}}, `empty name`},
		{"no data", []Tensor{{Name: "e", DType: tensor.F32, Shape: []int{1}}}, `"e": no data`},
	}
	dir := t.TempDir()
	for _, c := range cases {
		for _, w := range []func(string, []Tensor) error{WritePth, WriteSafetensors} {
			path := filepath.Join(dir, "bad.out")
			err := w(path, c.ts)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: error %v, want one naming %s and containing %q", c.what, err, path, c.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("%s: a rejected write created the file", c.what)
			}
		}
	}
}

func TestSafetensorsMetadata(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	ts := []Tensor{{Name: "a", DType: tensor.F32, Shape: []int{1}, Data: make([]byte, 4)}}
	meta := map[string]string{"format": "pt", "source": "quantize"}
	if err := WriteSafetensorsMetadata(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := Metadata(f); len(got) != 2 || got["source"] != "quantize" {
		t.Errorf("metadata %v, wrote %v", got, meta)
	}
	if len(f.Names()) != 1 {
		t.Errorf("names %q", f.Names())
	}
}

// shiftedReader presents data as if it started at byte pad of a larger
// file, so an archive written with offsets past 4 GiB can be read back
// without writing 4 GiB.
type shiftedReader struct {
	pad  int64
	data []byte
}

func (s shiftedReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for ; n < len(p) && off+int64(n) < s.pad; n++ {
		p[n] = 0
	}
	if n < len(p) {
		i := off + int64(n) - s.pad
		if i >= int64(len(s.data)) {
			return n, io.EOF
		}
		n += copy(p[n:], s.data[i:])
		if n < len(p) {
			return n, io.EOF
		}
	}
	return n, nil
}

// Past 4 GiB the records need zip64 offsets in the central directory; the
// 64-byte alignment must still hold there.
func TestWritePthZip64Offsets(t *testing.T) {
	const start = 5 << 30
	var buf bytes.Buffer
	zw := &alignedZip{w: zip.NewWriter(&buf), path: "big.pth", off: start}
	zw.w.SetOffset(start)
	records := map[string][]byte{"a/data.pkl": []byte("pickle"), "a/data/0": make([]byte, 100), "a/data/1": []byte{1, 2, 3}}
	for _, name := range []string{"a/data.pkl", "a/data/0", "a/data/1"} {
		zw.add(name, records[name])
	}
	if zw.err != nil {
		t.Fatal(zw.err)
	}
	if err := zw.w.Close(); err != nil {
		t.Fatal(err)
	}
	r := shiftedReader{pad: start, data: buf.Bytes()}
	zr, err := zip.NewReader(r, start+int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 3 {
		t.Fatalf("%d records, wrote 3", len(zr.File))
	}
	for _, f := range zr.File {
		off, err := f.DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		if off < start || off%64 != 0 {
			t.Errorf("%s: data at %d, want a multiple of 64 past %d", f.Name, off, start)
		}
		got := make([]byte, f.UncompressedSize64)
		if _, err := r.ReadAt(got, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, records[f.Name]) {
			t.Errorf("%s: data differs", f.Name)
		}
	}
}
