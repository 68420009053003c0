package checkpoint

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// A torch.save file (torch >= 1.6) is a zip archive of stored (uncompressed)
// entries under one top folder <name>/: data.pkl (the pickled object, which
// refers to storages by key), data/<key> (each storage's raw little-endian
// bytes), byteorder, version, .format_version, ... The whole file is mapped
// and every tensor is a slice of the mapping, so opening an 11 GB
// checkpoint reads only its pickle.

// storageDTypes maps torch storage classes to element types.
// UntypedStorage counts bytes; _rebuild_tensor_v3 names the tensor dtype.
var storageDTypes = map[string]tensor.DType{
	"BFloat16Storage": tensor.BF16, "HalfStorage": tensor.F16, "FloatStorage": tensor.F32,
	"DoubleStorage": tensor.F64, "CharStorage": tensor.I8, "ByteStorage": tensor.U8,
	"ShortStorage": tensor.I16, "IntStorage": tensor.I32, "LongStorage": tensor.I64,
	"BoolStorage": tensor.Bool, "Float8_e4m3fnStorage": tensor.F8E4M3, "UntypedStorage": tensor.U8,
}

// torchDTypes maps torch dtype names (as pickled) to element types.
var torchDTypes = map[string]tensor.DType{
	"float32": tensor.F32, "float": tensor.F32, "float64": tensor.F64, "double": tensor.F64,
	"float16": tensor.F16, "half": tensor.F16, "bfloat16": tensor.BF16, "int8": tensor.I8,
	"uint8": tensor.U8, "int16": tensor.I16, "short": tensor.I16, "int32": tensor.I32, "int": tensor.I32,
	"int64": tensor.I64, "long": tensor.I64, "bool": tensor.Bool, "float8_e4m3fn": tensor.F8E4M3,
}

// flattenKeys are the entries a training checkpoint keeps its weights
// under. If the top-level dict holds no tensors itself and exactly one of
// these holds a dict of tensors, that dict is read instead (one level only).
var flattenKeys = []string{"state_dict", "model", "ema"}

type pthTensor struct {
	info       Info
	storage    []byte  // the whole storage record
	offset     int64   // in elements
	stride     []int64 // in elements
	numel      int64
	contiguous bool
}

type pthFile struct {
	path    string
	data    []byte
	mapped  bool
	tensors map[string]*pthTensor
	names   []string // sorted
	order   []string // as in the pickle (module order)
	from    string   // the entry the tensors were flattened from, or ""
}

// OpenPth memory-maps a torch.save zip archive and parses its pickle.
func OpenPth(path string) (File, error) {
	data, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	pf, err := parsePth(path, data)
	if err != nil {
		unmap(data)
		return nil, err
	}
	pf.mapped = true
	return pf, nil
}

// ParsePth parses a torch.save archive held in memory (tests, the fuzzer);
// the data is not copied.
func ParsePth(name string, data []byte) (File, error) { return parsePth(name, data) }

func legacyError(path string) error {
	return fmt.Errorf("%s: legacy torch.save format (a raw pickle stream, torch < 1.6) is not supported; re-save it with torch >= 1.6: torch.save(torch.load(f), f2)", path)
}

func parsePth(path string, data []byte) (*pthFile, error) {
	if len(data) >= 2 && data[0] == 0x80 && data[1] <= 5 {
		return nil, legacyError(path)
	}
	if !bytes.HasPrefix(data, zipMagic) {
		return nil, fmt.Errorf("%s: not a torch.save archive: expected zip magic \"PK\\x03\\x04\", found %q", path, data[:min(len(data), 4)])
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // names are only looked up, never used as paths
		return nil, fmt.Errorf("%s: not a readable zip archive (truncated or corrupt?): %v", path, err)
	}
	var pkls []string
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			pkls = append(pkls, f.Name)
		}
	}
	if len(pkls) != 1 {
		var some []string
		for i, f := range zr.File {
			if i == 5 {
				some = append(some, "...")
				break
			}
			some = append(some, f.Name)
		}
		if len(pkls) == 0 {
			return nil, fmt.Errorf("%s: zip archive without <name>/data.pkl, not a torch.save file (entries: %q)", path, some)
		}
		return nil, fmt.Errorf("%s: zip archive with %d data.pkl entries %q, want one", path, len(pkls), pkls)
	}
	prefix := strings.TrimSuffix(pkls[0], "data.pkl")
	records := map[string]*zip.File{}
	for _, f := range zr.File {
		if rest, ok := strings.CutPrefix(f.Name, prefix); ok {
			if _, dup := records[rest]; dup {
				return nil, fmt.Errorf("%s: zip entry %q appears twice", path, f.Name)
			}
			records[rest] = f
		}
	}
	pf := &pthFile{path: path, data: data, tensors: map[string]*pthTensor{}}
	rec := func(name string) ([]byte, error) { return pf.record(records, prefix, name) }

	if bo, ok := records["byteorder"]; ok {
		b, err := rec("byteorder")
		if err != nil {
			return nil, err
		}
		if string(b) != "little" {
			return nil, fmt.Errorf("%s: zip entry %q says %q; only little-endian checkpoints are supported", path, bo.Name, truncate(string(b)))
		}
	}
	pkl, err := rec("data.pkl")
	if err != nil {
		return nil, err
	}
	root, bud, err := unpickleBudget(pkl)
	if err != nil {
		return nil, fmt.Errorf("%s: %q: %v", path, prefix+"data.pkl", err)
	}
	top, ok := root.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("%s: the pickled object is a %s, not a dict of tensors", path, typeName(root))
	}
	names, tensors, from, err := selectTensors(path, top)
	if err != nil {
		return nil, err
	}
	pf.from = from
	storages := map[string]*storageRec{}
	for i, name := range names {
		// One memoised tensor may be stored under many names, each costing
		// a few pickle bytes and a resolved copy: charged like the opcodes.
		if err := bud.take(objectCost + int64(len(name)) + 16*int64(len(tensors[i].shape))); err != nil {
			return nil, fmt.Errorf("%s: %q: %v", path, prefix+"data.pkl", err)
		}
		t, err := pf.resolve(name, tensors[i], storages, rec, prefix)
		if err != nil {
			return nil, err
		}
		pf.tensors[name] = t
		pf.order = append(pf.order, name)
	}
	pf.names = sortedNames(pf.tensors)
	return pf, nil
}

// record returns the bytes of a stored zip entry as a slice of the mapping.
func (p *pthFile) record(records map[string]*zip.File, prefix, name string) ([]byte, error) {
	f, ok := records[name]
	if !ok {
		return nil, fmt.Errorf("%s: zip entry %q is missing", p.path, prefix+name)
	}
	if f.Method != zip.Store {
		return nil, fmt.Errorf("%s: zip entry %q is compressed (method %d); torch.save stores entries uncompressed, re-save the checkpoint with torch.save", p.path, f.Name, f.Method)
	}
	if f.CompressedSize64 != f.UncompressedSize64 {
		return nil, fmt.Errorf("%s: zip entry %q: stored entry with compressed size %d != size %d", p.path, f.Name, f.CompressedSize64, f.UncompressedSize64)
	}
	off, err := f.DataOffset()
	if err != nil {
		return nil, fmt.Errorf("%s: zip entry %q: %v", p.path, f.Name, err)
	}
	size := f.UncompressedSize64
	if off < 0 || off > int64(len(p.data)) || size > uint64(int64(len(p.data))-off) {
		return nil, fmt.Errorf("%s: zip entry %q: %d bytes at offset %d run past the end of the %d-byte file (truncated)", p.path, f.Name, size, off, len(p.data))
	}
	return p.data[off : off+int64(size)], nil
}

// selectTensors picks the named tensors out of the top-level dict (see
// flattenKeys). Entries that are not tensors (metadata, epoch counters)
// are ignored.
func selectTensors(path string, top *pyDict) ([]string, []*pyTensor, string, error) {
	names, ts, err := directTensors(path, "", top)
	if err != nil || len(ts) > 0 {
		return names, ts, "", err
	}
	var found []string
	for _, k := range flattenKeys {
		if v, ok := top.get(k); ok {
			if d, ok := v.(*pyDict); ok {
				if n, _, _ := directTensors(path, k, d); len(n) > 0 {
					found = append(found, k)
				}
			}
		}
	}
	switch len(found) {
	case 1:
		d, _ := top.get(found[0])
		names, ts, err := directTensors(path, found[0], d.(*pyDict))
		return names, ts, found[0], err
	case 0:
		var keys []string
		for i, k := range top.keys {
			if i == 10 {
				keys = append(keys, "...")
				break
			}
			if s, ok := k.(string); ok {
				keys = append(keys, fmt.Sprintf("%q", truncate(s)))
			} else {
				keys = append(keys, typeName(k))
			}
		}
		return nil, nil, "", fmt.Errorf("%s: no tensors in the checkpoint (top-level keys: %s)", path, strings.Join(keys, ", "))
	}
	return nil, nil, "", fmt.Errorf("%s: tensors under several top-level entries %q; cannot tell which are the weights", path, found)
}

func directTensors(path, under string, d *pyDict) ([]string, []*pyTensor, error) {
	var names []string
	var ts []*pyTensor
	for i, k := range d.keys {
		t, ok := d.vals[i].(*pyTensor)
		if !ok {
			continue
		}
		name, ok := k.(string)
		if !ok {
			where := ""
			if under != "" {
				where = fmt.Sprintf(" under %q", under)
			}
			return nil, nil, fmt.Errorf("%s: a tensor%s has a %s key, want str", path, where, typeName(k))
		}
		names = append(names, name)
		ts = append(ts, t)
	}
	return names, ts, nil
}

type storageRec struct {
	typ  string
	data []byte
}

// resolve checks a rebuilt tensor against its storage record and returns
// its description. Every bound is checked here, before anything is
// allocated, so a corrupt pickle cannot make a later read run off the data
// or allocate more than the storage holds.
func (p *pthFile) resolve(name string, t *pyTensor, storages map[string]*storageRec, rec func(string) ([]byte, error), prefix string) (*pthTensor, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: tensor %q: %s", p.path, name, fmt.Sprintf(format, args...))
	}
	st := t.storage
	sdt, ok := storageDTypes[st.typ]
	if !ok {
		return nil, bad("storage type torch.%s is not supported", truncate(st.typ))
	}
	dt := sdt
	if t.dtype != "" {
		if dt, ok = torchDTypes[t.dtype]; !ok {
			return nil, bad("dtype torch.%s is not supported", t.dtype)
		}
	}
	s, ok := storages[st.key]
	if !ok {
		data, err := rec("data/" + st.key)
		if err != nil {
			return nil, bad("storage %q: %v", truncate(st.key), err)
		}
		if st.numel > int64(len(data)) || st.numel*int64(sdt.Size()) != int64(len(data)) {
			return nil, bad("storage record %q holds %d bytes, the pickle declares %d elements of torch.%s", prefix+"data/"+truncate(st.key), len(data), st.numel, st.typ)
		}
		s = &storageRec{typ: st.typ, data: data}
		storages[st.key] = s
	} else if s.typ != st.typ && s.typ != "UntypedStorage" && st.typ != "UntypedStorage" {
		return nil, bad("storage %q is used as torch.%s and as torch.%s", truncate(st.key), s.typ, st.typ)
	}
	es := int64(dt.Size())
	if int64(len(s.data))%es != 0 {
		return nil, bad("storage of %d bytes is not a whole number of %v elements", len(s.data), dt)
	}
	elems := int64(len(s.data)) / es
	if len(t.shape) != len(t.stride) {
		return nil, bad("size %v and stride %v differ in rank", t.shape, t.stride)
	}
	numel := int64(1)
	for _, n := range t.shape {
		if n == 0 {
			numel = 0
			break
		}
	}
	if numel != 0 {
		for _, n := range t.shape {
			if numel > elems/n {
				return nil, bad("size %v holds more elements than its storage (%d elements of %v)", t.shape, elems, dt)
			}
			numel *= n
		}
		// Highest element the view touches.
		last := t.offset
		for i, n := range t.shape {
			if t.stride[i] != 0 && n-1 > (math.MaxInt64-last)/t.stride[i] {
				return nil, bad("size %v with stride %v overflows", t.shape, t.stride)
			}
			last += (n - 1) * t.stride[i]
		}
		if last >= elems {
			return nil, bad("size %v, stride %v at offset %d reach element %d, but the storage holds %d elements (truncated or corrupt)", t.shape, t.stride, t.offset, last, elems)
		}
	} else if t.offset > elems {
		return nil, bad("storage offset %d is past the %d-element storage", t.offset, elems)
	}
	shape := make([]int, len(t.shape))
	for i, n := range t.shape {
		shape[i] = int(n)
	}
	return &pthTensor{
		info:       Info{Name: name, DType: dt, Shape: shape},
		storage:    s.data,
		offset:     t.offset,
		stride:     t.stride,
		numel:      numel,
		contiguous: isContiguous(t.shape, t.stride),
	}, nil
}

// isContiguous reports whether strides are row-major dense (dimensions of
// size 1 may have any stride, as in torch).
func isContiguous(shape, stride []int64) bool {
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 0 {
			return true
		}
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

func (p *pthFile) Path() string    { return p.path }
func (p *pthFile) Names() []string { return p.names }

// Order lists the tensor names in the order of the pickle, which is the
// module order of the model that saved them.
func (p *pthFile) Order() []string { return p.order }

// FlattenedFrom names the top-level entry ("state_dict", "model", "ema")
// the tensors were read from, or "" if they were at the top level.
func (p *pthFile) FlattenedFrom() string { return p.from }

func (p *pthFile) Info(name string) (Info, bool) {
	t, ok := p.tensors[name]
	if !ok {
		return Info{}, false
	}
	return t.info, true
}

// Raw returns the tensor's bytes. A contiguous tensor is a slice of the
// mapping; a strided view is gathered into a new contiguous buffer.
func (p *pthFile) Raw(name string) ([]byte, error) {
	t, ok := p.tensors[name]
	if !ok {
		return nil, &notFound{p.path, name}
	}
	if p.data == nil {
		return nil, fmt.Errorf("%s: tensor %q: file is closed", p.path, name)
	}
	es := int64(t.info.DType.Size())
	if t.contiguous {
		return t.storage[t.offset*es : (t.offset+t.numel)*es], nil
	}
	out := make([]byte, t.numel*es)
	gather(out, t.storage, t.offset, t.info.Shape, t.stride, es)
	return out, nil
}

// gather copies a strided view into dst in row-major order.
func gather(dst, src []byte, offset int64, shape []int, stride []int64, es int64) {
	if len(dst) == 0 {
		return
	}
	nd := len(shape)
	idx := make([]int, nd)
	pos := offset // element index in src of idx
	for o := int64(0); o < int64(len(dst)); o += es {
		copy(dst[o:o+es], src[pos*es:(pos+1)*es])
		for d := nd - 1; d >= 0; d-- {
			idx[d]++
			pos += stride[d]
			if idx[d] < shape[d] {
				break
			}
			pos -= int64(idx[d]) * stride[d]
			idx[d] = 0
		}
	}
}

func (p *pthFile) Float32(name string) ([]float32, error) {
	raw, err := p.Raw(name)
	if err != nil {
		return nil, err
	}
	return convertFloat32(p.path, name, p.tensors[name].info.DType, raw)
}

func (p *pthFile) Int8(name string) ([]int8, error) {
	t, ok := p.tensors[name]
	if !ok {
		return nil, &notFound{p.path, name}
	}
	if t.info.DType != tensor.I8 {
		return nil, fmt.Errorf("%s: tensor %q: want dtype int8, got %v", p.path, name, t.info.DType)
	}
	raw, err := p.Raw(name)
	if err != nil {
		return nil, err
	}
	out := make([]int8, len(raw))
	for i, b := range raw {
		out[i] = int8(b)
	}
	return out, nil
}

func (p *pthFile) Close() error {
	data := p.data
	p.data = nil
	if !p.mapped || data == nil {
		return nil
	}
	p.mapped = false
	return unmap(data)
}
