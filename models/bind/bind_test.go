package bind

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// memFile is a checkpoint held in memory; reads counts every tensor read.
type memFile struct {
	infos map[string]checkpoint.Info
	f32   map[string][]float32
	i8    map[string][]int8
	reads int
}

func newMem() *memFile {
	return &memFile{infos: map[string]checkpoint.Info{}, f32: map[string][]float32{}, i8: map[string][]int8{}}
}

func (m *memFile) float(name string, dt tensor.DType, shape []int, v []float32) {
	m.infos[name] = checkpoint.Info{Name: name, DType: dt, Shape: shape}
	m.f32[name] = v
}

func (m *memFile) int8(name string, shape []int, v []int8) {
	m.infos[name] = checkpoint.Info{Name: name, DType: tensor.I8, Shape: shape}
	m.i8[name] = v
}

func (m *memFile) Path() string { return "m.safetensors" }
func (m *memFile) Names() []string {
	var n []string
	for k := range m.infos {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}
func (m *memFile) Info(name string) (checkpoint.Info, bool) { i, ok := m.infos[name]; return i, ok }
func (m *memFile) Float32(name string) ([]float32, error) {
	m.reads++
	v, ok := m.f32[name]
	if !ok {
		return nil, errors.New("no float tensor " + name)
	}
	return slices.Clone(v), nil
}
func (m *memFile) Int8(name string) ([]int8, error) {
	m.reads++
	v, ok := m.i8[name]
	if !ok {
		return nil, errors.New("no int8 tensor " + name)
	}
	return slices.Clone(v), nil
}
func (m *memFile) Raw(string) ([]byte, error) { return nil, errors.New("no raw") }
func (m *memFile) Close() error               { return nil }

// sample is a file of a [2 3] weight (values off the bf16 grid), a bias,
// int8 codes and an int8 tensor where a float is due.
func sample() *memFile {
	m := newMem()
	m.float("p.w", tensor.F32, []int{2, 3}, []float32{1.00390625 + 1.0/1024, -2, 3.1, 4, 5, 6})
	m.float("p.b", tensor.BF16, []int{2}, []float32{0.5, -0.25})
	m.int8("p.codes", []int{2, 2}, []int8{1, -2, 3, -4})
	m.int8("p.bad", []int{2}, []int8{1, 2})
	return m
}

func wantErr(t *testing.T, err error, frags ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", frags)
	}
	for _, f := range frags {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

// The upload holds the file's values rounded once to the binder's dtype,
// in the upload shape, and the binder lists it.
func TestTensorUploadsConverted(t *testing.T) {
	f := sample()
	be := cpu.New()
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		b := &Binder{File: f, To: be, DType: dt, Prefix: "p."}
		w := b.Tensor("w", []int{2, 3}, []int{2, 1, 3})
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(w.Shape(), []int{2, 1, 3}) || w.DType() != dt {
			t.Fatalf("%v: uploaded %v %v, want [2 1 3] %v", dt, w.Shape(), w.DType(), dt)
		}
		got := be.Download(w)
		for i, v := range f.f32["p.w"] {
			want := v
			if dt == tensor.BF16 {
				want = tensor.F32FromBF16(tensor.BF16FromF32(v))
			}
			if math.Float32bits(got[i]) != math.Float32bits(want) {
				t.Errorf("%v: value %d = %v, want %v", dt, i, got[i], want)
			}
		}
		if h := b.Host("w", []int{2, 3}); dt == tensor.BF16 && h[0] != tensor.F32FromBF16(tensor.BF16FromF32(f.f32["p.w"][0])) {
			t.Errorf("Host did not round to bf16: %v", h[0])
		}
		codes := b.UploadInt8([]int{2, 2}, b.ReadInt8("codes", []int{2, 2}))
		if codes == nil || codes.DType() != tensor.I8 {
			t.Fatalf("int8 upload %v", codes)
		}
		if len(b.Uploaded()) != 2 || b.Uploaded()[0] != w || b.Uploaded()[1] != codes {
			t.Errorf("Uploaded %v, want [w codes]", b.Uploaded())
		}
		b.Free()
		if len(b.Uploaded()) != 0 {
			t.Error("Free left tensors listed")
		}
		if err := catch(func() { be.Download(w) }); err == nil {
			t.Error("a freed weight still downloads")
		}
	}
}

// A wrong shape or dtype is one error naming the file, the key and what
// was expected and found; the walk reads nothing after it.
func TestBadTensorStopsTheWalk(t *testing.T) {
	cases := []struct {
		name  string
		bind  func(b *Binder)
		frags []string
	}{
		{"shape", func(b *Binder) { b.Tensor("w", []int{3, 2}, nil) },
			[]string{"m.safetensors", `tensor "p.w"`, "want shape [3 2], got [2 3]", "(use the real one)"}},
		{"int8 where a float is due", func(b *Binder) { b.Tensor("bad", []int{2}, nil) },
			[]string{"m.safetensors", `tensor "p.bad"`, "want a float dtype, got int8"}},
		{"float where int8 is due", func(b *Binder) { b.ReadInt8("w", []int{2, 3}) },
			[]string{`tensor "p.w"`, "want dtype int8, got float32"}},
		{"bf16 where float32 is due", func(b *Binder) { b.ReadKind("b", []int{2}, F32) },
			[]string{`tensor "p.b"`, "want dtype float32, got bfloat16"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := sample()
			b := &Binder{File: f, To: cpu.New(), DType: tensor.F32, Prefix: "p.", Hint: "use the real one"}
			c.bind(b)
			wantErr(t, b.Err(), c.frags...)
			reads := f.reads
			if b.Tensor("b", []int{2}, nil) != nil || f.reads != reads {
				t.Error("the walk read or uploaded a tensor after an error")
			}
			b.Tensor("absent", []int{1}, nil)
			if !strings.Contains(b.Err().Error(), c.frags[len(c.frags)-1]) {
				t.Errorf("a later missing key replaced the first error: %v", b.Err())
			}
		})
	}
}

// Missing keys are collected over the whole walk and named at once, sorted;
// nothing is read or uploaded once one is missing.
func TestMissingKeysCollected(t *testing.T) {
	f := sample()
	b := &Binder{File: f, To: cpu.New(), DType: tensor.F32, Prefix: "p.", What: "Toy", Hint: "want toy.pth"}
	if b.Tensor("w", []int{2, 3}, nil) == nil {
		t.Fatal(b.Err())
	}
	b.Tensor("zeta", []int{1}, nil)
	reads := f.reads
	if b.Tensor("b", []int{2}, nil) != nil || f.reads != reads {
		t.Error("read or uploaded after a missing key")
	}
	b.Tensor("alpha", []int{1}, nil)
	wantErr(t, b.Err(), "m.safetensors: not a complete Toy checkpoint", `missing 2 tensors: "p.alpha", "p.zeta"`, "(want toy.pth)")
	if len(b.Uploaded()) != 1 {
		t.Errorf("%d uploads listed, want the one before the missing key", len(b.Uploaded()))
	}
}

// With no uploader the binder only checks: names, shapes and dtypes, no
// reads. With Specs it lists what the walk looks up and checks nothing.
func TestDryAndListing(t *testing.T) {
	f := sample()
	used := map[string]bool{}
	b := &Binder{File: f, Prefix: "p.", Used: used}
	if b.Tensor("w", []int{2, 3}, nil) != nil || b.Err() != nil || f.reads != 0 {
		t.Errorf("dry run: err %v, %d reads", b.Err(), f.reads)
	}
	if !used["p.w"] {
		t.Error("Used does not record p.w")
	}
	b.Tensor("w", []int{9}, nil)
	wantErr(t, b.Err(), "want shape [9], got [2 3]")

	var specs []checkpoint.Info
	l := &Binder{Prefix: "q.", Specs: &specs}
	l.Tensor("a", []int{4, 2}, []int{8})
	l.Read("b", []int{3})
	if l.Err() != nil || len(specs) != 2 || specs[0].Name != "q.a" || !slices.Equal(specs[0].Shape, []int{4, 2}) || specs[1].Name != "q.b" {
		t.Errorf("listed %v (err %v)", specs, l.Err())
	}
}

// Check reports every missing, unexpected (strict only), mis-shaped and
// mis-typed tensor in one error.
func TestCheck(t *testing.T) {
	f := sample()
	want := []Spec{
		{Name: "p.w", Shape: []int{2, 3}},
		{Name: "p.b", Shape: []int{3}},
		{Name: "p.bad", Shape: []int{2}, Kind: StdFloat},
		{Name: "p.gone", Shape: []int{1}},
	}
	err := Check(f, "toy", want, true)
	wantErr(t, err, "m.safetensors: not a valid toy checkpoint", `missing 1 tensor: "p.gone"`,
		`unexpected 1 tensor: "p.codes"`, `tensor "p.b": want shape [3], got [2]`,
		`tensor "p.bad": want dtype bfloat16, float32 or float16, got int8`)
	err = Check(f, "toy", want, false)
	if err == nil || strings.Contains(err.Error(), "unexpected") {
		t.Errorf("non-strict check: %v", err)
	}
	ok := []Spec{{Name: "p.w", Shape: []int{2, 3}}, {Name: "p.b", Shape: []int{2}, Kind: StdFloat}, {Name: "p.codes", Shape: []int{2, 2}, Kind: Int8}}
	if err := Check(f, "toy", ok, false); err != nil {
		t.Errorf("a matching file: %v", err)
	}
}

// Count quotes and sorts, shows eight names and counts the rest.
func TestCount(t *testing.T) {
	names := []string{"j", "i", "h", "g", "f", "e", "d", "c", "b", "a"}
	got := Count(names)
	want := `10 tensors: "a", "b", "c", "d", "e", "f", "g", "h" and 2 more`
	if got != want {
		t.Errorf("Count = %s, want %s", got, want)
	}
	if got := Count([]string{"x\x1b"}); got != `1 tensor: "x\x1b"` {
		t.Errorf("Count of one odd name = %s", got)
	}
}

// catch runs f and returns the backend error it fails with.
func catch(f func()) (err error) {
	defer backend.Recover(&err)
	f()
	return nil
}
