package umt5

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestCacheKey(t *testing.T) {
	dir := t.TempDir()
	enc := filepath.Join(dir, "enc.pth")
	if err := os.WriteFile(enc, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	ids := []int32{5, 9, 1, 0, 0}
	k0, err := NewCacheKey(ids, 3, enc, tensor.BF16)
	if err != nil {
		t.Fatal(err)
	}
	same, _ := NewCacheKey([]int32{5, 9, 1, 7, 7}, 3, enc, tensor.BF16) // padding ids are not part of the key
	if same != k0 {
		t.Error("padding ids changed the key")
	}
	differ := map[string]func() (CacheKey, error){
		"id":       func() (CacheKey, error) { return NewCacheKey([]int32{5, 8, 1, 0, 0}, 3, enc, tensor.BF16) },
		"length":   func() (CacheKey, error) { return NewCacheKey(ids, 2, enc, tensor.BF16) },
		"text_len": func() (CacheKey, error) { return NewCacheKey(ids[:4], 3, enc, tensor.BF16) },
		"dtype":    func() (CacheKey, error) { return NewCacheKey(ids, 3, enc, tensor.F32) },
		"mtime": func() (CacheKey, error) {
			tm := time.Now().Add(-time.Hour)
			if err := os.Chtimes(enc, tm, tm); err != nil {
				t.Fatal(err)
			}
			return NewCacheKey(ids, 3, enc, tensor.BF16)
		},
	}
	for name, f := range differ {
		k, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if k == k0 {
			t.Errorf("changing the %s kept the key", name)
		}
	}
	if _, err := NewCacheKey(ids, 3, filepath.Join(dir, "missing.pth"), tensor.BF16); err == nil {
		t.Error("missing encoder file: want an error")
	}
	if _, err := NewCacheKey(ids, 0, enc, tensor.BF16); err == nil {
		t.Error("length 0: want an error")
	}
}

func TestCacheRoundTrip(t *testing.T) {
	c, err := OpenCache(filepath.Join(t.TempDir(), "prompts"))
	if err != nil {
		t.Fatal(err)
	}
	const textLen, length, dim = 6, 4, 3
	ctx := make([]float32, textLen*dim)
	for i := range ctx[:length*dim] {
		ctx[i] = float32(math.Sin(float64(i))) * 3.3
	}
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F32} {
		want := append([]float32(nil), ctx...)
		if dt == tensor.BF16 {
			tensor.RoundBF16Slice(want)
		}
		k := CacheKey("k" + dt.String())
		if _, ok, err := c.Get(k); ok || err != nil {
			t.Fatalf("%v: empty cache: ok %v err %v", dt, ok, err)
		}
		if err := c.Put(k, want, textLen, length, dim, dt); err != nil {
			t.Fatal(err)
		}
		e, ok, err := c.Get(k)
		if err != nil || !ok {
			t.Fatalf("%v: get after put: ok %v err %v", dt, ok, err)
		}
		if e.TextLen != textLen || e.Length != length || e.Dim != dim || e.DType != dt {
			t.Errorf("%v: entry %d/%d/%d %v", dt, e.TextLen, e.Length, e.Dim, e.DType)
		}
		if i := bitsDiffer(e.Context, want); i >= 0 {
			t.Errorf("%v: context[%d] = %v, stored %v", dt, i, e.Context[i], want[i])
		}
	}
	// a damaged entry is reported, not returned, and Put repairs it
	k := CacheKey("damaged")
	if err := os.WriteFile(c.path(k), []byte("not a safetensors file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(k); ok || err == nil {
		t.Errorf("damaged entry: ok %v err %v", ok, err)
	} else {
		t.Logf("damaged entry: %v", err)
	}
	if err := c.Put(k, ctx, textLen, length, dim, tensor.F32); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(k); !ok || err != nil {
		t.Errorf("repaired entry: ok %v err %v", ok, err)
	}
	// an entry stored under another key is not accepted
	if err := os.Rename(c.path(k), c.path("other")); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get("other"); ok || err == nil {
		t.Errorf("entry under the wrong key: ok %v err %v", ok, err)
	}
	if err := c.Put("x", ctx[:5], textLen, length, dim, tensor.F32); err == nil {
		t.Error("short context: want an error")
	}
	files, _ := os.ReadDir(c.dir)
	for _, f := range files {
		if filepath.Ext(f.Name()) != ".safetensors" {
			t.Errorf("stray file %s left in the cache", f.Name())
		}
	}
}

// TestCacheSkipsEncoder is the intended flow: key, Get, and only on a miss
// Load + Encode + Put. The second request must not load the encoder and
// must return exactly what the encoder produced.
func TestCacheSkipsEncoder(t *testing.T) {
	path := golden.Path(t, "umt5.safetensors")
	f := golden.Open(t, "umt5.safetensors")
	in := loadGoldenInputs(t, f)
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	loads := 0
	context := func() []float32 {
		k, err := NewCacheKey(in.ids, in.length, path, tensor.BF16)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok, err := c.Get(k); err != nil {
			t.Fatal(err)
		} else if ok {
			return e.Context
		}
		loads++
		enc, err := Load(cpu.New(), f, Options{DType: tensor.BF16})
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		ctx, err := enc.Encode(in.ids, in.length)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Put(k, ctx, len(in.ids), in.length, enc.Config().Dim, enc.DType()); err != nil {
			t.Fatal(err)
		}
		return ctx
	}
	first := context()
	second := context()
	if loads != 1 {
		t.Errorf("encoder loaded %d times, want 1", loads)
	}
	if i := bitsDiffer(first, second); i >= 0 {
		t.Errorf("cached context differs at %d: %v vs %v", i, second[i], first[i])
	}
	want, _ := golden.Tensor(t, f, "embedding_bf16")
	golden.Compare(t, "cached embedding_bf16", second, want, 2e-2)
}

func bitsDiffer(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
