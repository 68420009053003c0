package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// maxHeader bounds the JSON header so a corrupt length cannot make us
// allocate without limit.
const maxHeader = 100 << 20

var safetensorsDTypes = map[string]tensor.DType{
	"F32": tensor.F32, "BF16": tensor.BF16, "F16": tensor.F16, "F64": tensor.F64,
	"F8_E4M3": tensor.F8E4M3, "I8": tensor.I8, "U8": tensor.U8, "I16": tensor.I16,
	"I32": tensor.I32, "I64": tensor.I64, "BOOL": tensor.Bool,
}

type stEntry struct {
	info       Info
	begin, end int64 // absolute offsets in the file
}

type safetensorsFile struct {
	path    string
	data    []byte // the whole file, mapped
	entries map[string]stEntry
	names   []string
	meta    map[string]string
	mapped  bool // data came from mmap and must be unmapped
}

// OpenSafetensors memory-maps a .safetensors file and parses its header.
func OpenSafetensors(path string) (File, error) {
	data, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	sf, err := parseSafetensors(path, data)
	if err != nil {
		unmap(data)
		return nil, err
	}
	sf.mapped = true
	return sf, nil
}

// ParseSafetensors parses a safetensors image held in memory (used by tests
// and the fuzzer; the data is not copied).
func ParseSafetensors(name string, data []byte) (File, error) { return parseSafetensors(name, data) }

func parseSafetensors(path string, data []byte) (*safetensorsFile, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%s: not a safetensors file: %d bytes, need at least 8", path, len(data))
	}
	hlen := binary.LittleEndian.Uint64(data[:8])
	if hlen > maxHeader || hlen > uint64(len(data)-8) {
		return nil, fmt.Errorf("%s: safetensors header length %d does not fit in a %d-byte file (truncated or not safetensors)", path, hlen, len(data))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+hlen], &raw); err != nil {
		return nil, fmt.Errorf("%s: safetensors header is not valid JSON: %v", path, err)
	}
	base := int64(8 + hlen)
	sf := &safetensorsFile{path: path, data: data, entries: map[string]stEntry{}}
	for name, msg := range raw {
		if name == "__metadata__" {
			_ = json.Unmarshal(msg, &sf.meta)
			continue
		}
		var h struct {
			DType   string  `json:"dtype"`
			Shape   []int   `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: bad header entry: %v", path, name, err)
		}
		dt, ok := safetensorsDTypes[h.DType]
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q: unsupported dtype %q", path, name, h.DType)
		}
		if len(h.Offsets) != 2 || h.Offsets[0] < 0 || h.Offsets[1] < h.Offsets[0] {
			return nil, fmt.Errorf("%s: tensor %q: bad data_offsets %v", path, name, h.Offsets)
		}
		n := int64(1)
		for _, s := range h.Shape {
			if s < 0 || (s > 0 && n > (1<<50)/int64(s)) {
				return nil, fmt.Errorf("%s: tensor %q: bad shape %v", path, name, h.Shape)
			}
			n *= int64(s)
		}
		if want := n * int64(dt.Size()); h.Offsets[1]-h.Offsets[0] != want {
			return nil, fmt.Errorf("%s: tensor %q: shape %v of %v needs %d bytes, data_offsets give %d", path, name, h.Shape, dt, want, h.Offsets[1]-h.Offsets[0])
		}
		if h.Offsets[1] > int64(len(data))-base {
			// base + offset in uint64: both are below 2^63, so the sum
			// cannot wrap (in int64 it could, and print as negative).
			return nil, fmt.Errorf("%s: tensor %q: data ends at byte %d but the file has %d bytes (truncated)", path, name, uint64(base)+uint64(h.Offsets[1]), len(data))
		}
		shape := h.Shape
		if shape == nil {
			shape = []int{}
		}
		sf.entries[name] = stEntry{info: Info{Name: name, DType: dt, Shape: shape}, begin: base + h.Offsets[0], end: base + h.Offsets[1]}
	}
	sf.names = sortedNames(sf.entries)
	return sf, nil
}

func (s *safetensorsFile) Path() string    { return s.path }
func (s *safetensorsFile) Names() []string { return s.names }

// Metadata returns the header's __metadata__ map (may be nil).
func (s *safetensorsFile) Metadata() map[string]string { return s.meta }

func (s *safetensorsFile) Info(name string) (Info, bool) {
	e, ok := s.entries[name]
	return e.info, ok
}

func (s *safetensorsFile) Raw(name string) ([]byte, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, &notFound{s.path, name}
	}
	if s.data == nil {
		return nil, fmt.Errorf("%s: tensor %q: file is closed", s.path, name)
	}
	return s.data[e.begin:e.end], nil
}

func (s *safetensorsFile) Float32(name string) ([]float32, error) {
	raw, err := s.Raw(name)
	if err != nil {
		return nil, err
	}
	return convertFloat32(s.path, name, s.entries[name].info.DType, raw)
}

func (s *safetensorsFile) Int8(name string) ([]int8, error) {
	raw, err := s.Raw(name)
	if err != nil {
		return nil, err
	}
	if dt := s.entries[name].info.DType; dt != tensor.I8 {
		return nil, fmt.Errorf("%s: tensor %q: want dtype int8, got %v", s.path, name, dt)
	}
	out := make([]int8, len(raw))
	for i, b := range raw {
		out[i] = int8(b)
	}
	return out, nil
}

func (s *safetensorsFile) Close() error {
	data := s.data
	s.data = nil
	if !s.mapped || data == nil {
		return nil // in-memory images are left to the GC
	}
	s.mapped = false
	return unmap(data)
}
