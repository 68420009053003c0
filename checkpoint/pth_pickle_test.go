package checkpoint

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// testdata/pickle_proto<N>.pth were pickled by CPython at protocols 1-5
// (testdata/gen_pickles.py): strided views, a storage offset, a scalar,
// shared storages, a Parameter, a float8 tensor via _rebuild_tensor_v3
// over an UntypedStorage, and a non-tensor entry that is ignored.
func TestPthPickleProtocols(t *testing.T) {
	want := []struct {
		name  string
		dt    tensor.DType
		shape []int
		vals  []float32
	}{
		{"big", tensor.F32, []int{3, 4}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"codes", tensor.I8, []int{2, 2}, []float32{-128, -1, 0, 127}},
		{"fp8", tensor.F8E4M3, []int{4}, []float32{1, 2, -1, 0}},
		{"scalar", tensor.F32, []int{}, []float32{7}},
		{"slice", tensor.F32, []int{2}, []float32{2, 5}},
		{"w", tensor.BF16, []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}},
		{"wt", tensor.F32, []int{4, 3}, []float32{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}},
	}
	for proto := 1; proto <= 5; proto++ {
		t.Run(fmt.Sprint("protocol", proto), func(t *testing.T) {
			f, err := Open(filepath.Join("testdata", fmt.Sprintf("pickle_proto%d.pth", proto)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var names []string
			for _, w := range want {
				names = append(names, w.name)
			}
			if !slices.Equal(f.Names(), names) {
				t.Fatalf("names %q, want %q", f.Names(), names)
			}
			if order := Order(f); !slices.Equal(order, []string{"w", "wt", "slice", "scalar", "codes", "fp8", "big"}) {
				t.Errorf("order %q is not the pickle's", order)
			}
			for _, w := range want {
				info, _ := f.Info(w.name)
				if info.DType != w.dt || !slices.Equal(info.Shape, w.shape) {
					t.Errorf("%s: %v%v, want %v%v", w.name, info.DType, info.Shape, w.dt, w.shape)
				}
				got, err := f.Float32(w.name)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, w.vals) {
					t.Errorf("%s: values %v, want %v", w.name, got, w.vals)
				}
			}
			codes, err := f.Int8("codes")
			if err != nil || !slices.Equal(codes, []int8{-128, -1, 0, 127}) {
				t.Errorf("Int8(codes) = %v, %v", codes, err)
			}
		})
	}
}

// A contiguous tensor is a view of the mapping, not a copy.
func TestPthRawAliasesMapping(t *testing.T) {
	f, err := Open(filepath.Join("testdata", "pickle_proto2.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pf := f.(*pthFile)
	a, _ := f.Raw("big")
	b, _ := f.Raw("big")
	if &a[0] != &b[0] {
		t.Error("Raw of a contiguous tensor copied its data")
	}
	if !pf.mapped || &a[0] != &pf.tensors["big"].storage[0] {
		t.Error("Raw of a contiguous tensor is not a slice of the mapped storage")
	}
	// Shared storage: "slice" reads elements 2 and 5 of the same record.
	if &pf.tensors["slice"].storage[0] != &pf.tensors["big"].storage[0] {
		t.Error("tensors sharing storage key 0 do not share its bytes")
	}
}

// buildPth makes a torch.save-shaped archive around a hand-made pickle.
func buildPth(t testing.TB, pkl []byte, records map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := &alignedZip{w: zipWriter(&buf), path: "test"}
	zw.add("archive/data.pkl", pkl)
	zw.add("archive/byteorder", []byte("little"))
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		zw.add("archive/"+k, records[k])
	}
	if zw.err != nil {
		t.Fatal(zw.err)
	}
	if err := zw.w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pklTensor is one entry of a hand-built state dict: a tensor view (offset,
// shape, stride) of a storage record of numel elements.
type pklTensor struct {
	name, storageType, key string
	numel, offset          int64
	shape, stride          []int64
}

// stateDictPickle writes {name: _rebuild_tensor_v2(storage, off, shape,
// stride)} with one storage per tensor, for error tests.
func stateDictPickle(ts ...pklTensor) []byte {
	p := newPickler()
	p.op(0x80, 2)
	p.global("collections", "OrderedDict")
	p.op(')', 'R')
	p.put()
	for _, t := range ts {
		p.str(t.name)
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op('(', '(')
		p.constStr("storage")
		p.global("torch", t.storageType)
		p.str(t.key)
		p.constStr("cuda:0")
		p.int(t.numel)
		p.op('t')
		p.put()
		p.op('Q')
		p.int(t.offset)
		p.intTuple(t.shape)
		p.intTuple(t.stride)
		p.op(0x89)
		p.emptyOrderedDict()
		p.op('t', 'R', 's')
	}
	p.op('.')
	return p.buf.Bytes()
}

func TestPthBoundsAndStorageErrors(t *testing.T) {
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	cases := []struct {
		what    string
		pkl     []byte
		records map[string][]byte
		want    []string // substrings of the error
	}{
		{"missing storage record",
			stateDictPickle(pklTensor{"blocks.0.w", "FloatStorage", "9", 4, 0, []int64{4}, []int64{1}}),
			map[string][]byte{}, []string{`"blocks.0.w"`, "archive/data/9", "missing"}},
		{"storage size mismatch",
			stateDictPickle(pklTensor{"w", "FloatStorage", "0", 4, 0, []int64{4}, []int64{1}}),
			map[string][]byte{"data/0": f32(3)}, []string{`"w"`, "12 bytes", "4 elements"}},
		{"view past the storage",
			stateDictPickle(pklTensor{"w", "FloatStorage", "0", 4, 1, []int64{4}, []int64{1}}),
			map[string][]byte{"data/0": f32(4)}, []string{`"w"`, "reach element 4", "holds 4 elements"}},
		{"more elements than the storage",
			stateDictPickle(pklTensor{"w", "FloatStorage", "0", 4, 0, []int64{8}, []int64{0}}),
			map[string][]byte{"data/0": f32(4)}, []string{`"w"`, "more elements than its storage"}},
		{"stride overflow",
			stateDictPickle(pklTensor{"w", "FloatStorage", "0", 4, 0, []int64{2, 2}, []int64{1 << 62, 1 << 62}}),
			map[string][]byte{"data/0": f32(4)}, []string{`"w"`, "overflows"}},
		{"rank mismatch",
			stateDictPickle(pklTensor{"w", "FloatStorage", "0", 4, 0, []int64{2, 2}, []int64{2}}),
			map[string][]byte{"data/0": f32(4)}, []string{`"w"`, "differ in rank"}},
		{"unsupported storage type",
			stateDictPickle(pklTensor{"w", "ComplexFloatStorage", "0", 4, 0, []int64{4}, []int64{1}}),
			map[string][]byte{"data/0": f32(8)}, []string{`"w"`, "torch.ComplexFloatStorage"}},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			_, err := ParsePth("bad.pth", buildPth(t, c.pkl, c.records))
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range append(c.want, "bad.pth") {
				if !bytes.Contains([]byte(err.Error()), []byte(s)) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestPthStridedGather(t *testing.T) {
	// A (2,3,2) view with strides (1,4,12) of a 24-element storage.
	data := make([]byte, 4*24)
	for i := range 24 {
		copy(data[4*i:], le32(float32(i)))
	}
	pkl := stateDictPickle(pklTensor{"v", "FloatStorage", "0", 24, 1, []int64{2, 3, 2}, []int64{1, 4, 12}})
	f, err := ParsePth("v.pth", buildPth(t, pkl, map[string][]byte{"data/0": data}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("v")
	if err != nil {
		t.Fatal(err)
	}
	var want []float32
	for i := range 2 {
		for j := range 3 {
			for k := range 2 {
				want = append(want, float32(1+i+4*j+12*k))
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("gathered %v, want %v", got, want)
	}
}

func TestPthFlattenNested(t *testing.T) {
	inner := stateDictPickle(pklTensor{"net.w", "FloatStorage", "0", 2, 0, []int64{2}, []int64{1}})
	// {'state_dict': <inner dict>, 'epoch': 3}: splice the inner pickle's
	// body (after PROTO, before STOP) into an outer dict.
	wrap := func(keys ...string) []byte {
		p := newPickler()
		p.op(0x80, 2, '}')
		p.put()
		for _, k := range keys {
			p.str(k)
			p.buf.Write(inner[2 : len(inner)-1])
			p.op('s')
		}
		p.str("epoch")
		p.int(3)
		p.op('s', '.')
		return p.buf.Bytes()
	}
	rec := map[string][]byte{"data/0": make([]byte, 8)}
	f, err := ParsePth("ckpt.pth", buildPth(t, wrap("state_dict"), rec))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Names(), []string{"net.w"}) || f.(*pthFile).FlattenedFrom() != "state_dict" {
		t.Errorf("names %q from %q, want [net.w] from state_dict", f.Names(), f.(*pthFile).FlattenedFrom())
	}
	if got := Format(f); got != `torch.save zip (.pth), tensors under "state_dict"` {
		t.Errorf("Format = %q", got)
	}
	_, err = ParsePth("ckpt.pth", buildPth(t, wrap("model", "ema"), rec))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`["model" "ema"]`)) {
		t.Errorf("two weight dicts: error %v, want one naming both", err)
	}
	_, err = ParsePth("ckpt.pth", buildPth(t, wrap(), rec))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`no tensors`)) || !bytes.Contains([]byte(err.Error()), []byte(`"epoch"`)) {
		t.Errorf("no tensors: error %v, want one listing the keys", err)
	}
}
