package checkpoint

import (
	"archive/zip"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The fuzz targets parse arbitrary bytes and read every tensor they find.
// Properties: no panic, no hang, no allocation beyond what the input can
// back (the fuzzer's memory limit enforces it), every error names the file,
// and every tensor that parses reads back at its declared size.
// Seed corpus: testdata/fuzz/Fuzz*/ (TestWriteFuzzCorpus regenerates it).

func FuzzPth(f *testing.F) {
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog()()
		pf, err := ParsePth("fuzz.pth", data)
		checkParsed(t, pf, err)
	})
}

// FuzzPickle fuzzes data.pkl alone inside a fixed, valid archive (with
// storages data/0..3 of 0, 1, 16 and 64 bytes), so mutations reach the
// unpickler and the tensor checks instead of breaking the zip directory.
func FuzzPickle(f *testing.F) {
	for proto := 1; proto <= 5; proto++ {
		b, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("pickle_proto%d.pth", proto)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pickleOf(f, b))
	}
	f.Add(stateDictPickle(pklTensor{"v", "FloatStorage", "2", 4, 1, []int64{1, 3}, []int64{3, 1}}))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		defer watchdog()()
		pf, err := ParsePth("fuzz.pth", buildPth(t, pkl, map[string][]byte{
			"data/0": {}, "data/1": {1}, "data/2": make([]byte, 16), "data/3": make([]byte, 64),
		}))
		checkParsed(t, pf, err)
	})
}

// pickleOf returns the data.pkl of an archive.
func pickleOf(t testing.TB, archive []byte) []byte {
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") {
			off, _ := f.DataOffset()
			return archive[off : off+int64(f.UncompressedSize64)]
		}
	}
	t.Fatal("no data.pkl")
	return nil
}

func FuzzSafetensors(f *testing.F) {
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog()()
		sf, err := ParseSafetensors("fuzz.safetensors", data)
		checkParsed(t, sf, err)
	})
}

// watchdog crashes the process if one input takes over 10 s, so the
// fuzzer records a hang as a failing input (it has no timeout of its own).
func watchdog() (stop func()) {
	t := time.AfterFunc(10*time.Second, func() { panic("fuzz input took over 10s: hang") })
	return func() { t.Stop() }
}

func checkParsed(t *testing.T, f File, err error) {
	if err != nil {
		if !strings.Contains(err.Error(), "fuzz.") {
			t.Fatalf("error does not name the file: %v", err)
		}
		return
	}
	Summarize(f)
	Order(f)
	for _, name := range f.Names() {
		info, ok := f.Info(name)
		if !ok {
			t.Fatalf("%q listed but has no Info", name)
		}
		raw, err := f.Raw(name)
		if err != nil {
			t.Fatalf("Raw(%q): %v", name, err)
		}
		if want := tensor.NumElements(info.Shape) * info.DType.Size(); len(raw) != want {
			t.Fatalf("Raw(%q): %d bytes for %v%v, want %d", name, len(raw), info.DType, info.Shape, want)
		}
		if _, err := f.Float32(name); err != nil {
			t.Fatalf("Float32(%q): %v", name, err)
		}
		if _, err := f.Int8(name); (err == nil) != (info.DType == tensor.I8) {
			t.Fatalf("Int8(%q) of %v: %v", name, info.DType, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFuzzCorpus rewrites the seed corpus from the writers' output and
// a few damaged copies: CHECKPOINT_WRITE_CORPUS=1 go test -run WriteFuzzCorpus.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("CHECKPOINT_WRITE_CORPUS") == "" {
		t.Skip("set CHECKPOINT_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	ts := sampleTensors(rng)[:6]
	for i := range ts { // keep seeds small
		if len(ts[i].Data) > 16 {
			ts[i].Shape = []int{16 / ts[i].DType.Size()}
			ts[i].Data = ts[i].Data[:16]
		}
	}
	dir := t.TempDir()
	seeds := map[string]map[string][]byte{"FuzzPth": {}, "FuzzSafetensors": {}}
	for _, c := range []struct {
		target string
		write  func(string, []Tensor) error
	}{{"FuzzPth", WritePth}, {"FuzzSafetensors", WriteSafetensors}} {
		path := filepath.Join(dir, "s")
		if err := c.write(path, ts); err != nil {
			t.Fatal(err)
		}
		good, _ := os.ReadFile(path)
		seeds[c.target]["valid"] = good
		seeds[c.target]["truncated"] = good[:len(good)*2/3]
		flip := append([]byte(nil), good...)
		flip[len(flip)/5] ^= 0xff
		seeds[c.target]["flipped"] = flip
		if err := c.write(path, ts[:1]); err != nil {
			t.Fatal(err)
		}
		seeds[c.target]["one"], _ = os.ReadFile(path)
	}
	for proto := 1; proto <= 5; proto++ {
		b, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("pickle_proto%d.pth", proto)))
		if err != nil {
			t.Fatal(err)
		}
		seeds["FuzzPth"][fmt.Sprintf("proto%d", proto)] = b
	}
	seeds["FuzzPth"]["strided"] = buildPth(t,
		stateDictPickle(pklTensor{"v", "FloatStorage", "0", 6, 1, []int64{2, 2}, []int64{1, 2}}),
		map[string][]byte{"data/0": make([]byte, 24)})
	for target, m := range seeds {
		out := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range m {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
