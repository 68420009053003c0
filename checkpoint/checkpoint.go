// Package checkpoint reads model weights as users download them (safetensors
// and PyTorch .pth files, memory-mapped, each tensor converted on use) and
// writes both formats (WritePth emits what torch.save itself writes, so a
// quantised checkpoint loads in the reference code).
package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Info describes one tensor of a checkpoint.
type Info struct {
	Name  string
	DType tensor.DType
	Shape []int
}

// File is an open checkpoint. Tensors are read lazily; a File must be
// closed to release its mapping. Reads may run concurrently; Close must not
// race with them (slices returned by Raw alias the mapping).
type File interface {
	// Path is the file the checkpoint was opened from.
	Path() string
	// Names lists the tensor names in sorted order.
	Names() []string
	// Info describes a tensor; ok is false if the name is absent.
	Info(name string) (Info, bool)
	// Float32 returns a tensor's values converted to float32 (from any float
	// or integer dtype), in row-major order.
	Float32(name string) ([]float32, error)
	// Int8 returns an int8 tensor's values.
	Int8(name string) ([]int8, error)
	// Raw returns the tensor's bytes, little-endian, row-major contiguous.
	// The slice may alias the mapping and is valid until Close.
	Raw(name string) ([]byte, error)
	Close() error
}

// ErrNotFound is wrapped by the error a File returns for a name it does not
// hold, so callers can tell a missing tensor (an incompatible checkpoint)
// from a damaged one with errors.Is.
var ErrNotFound = errors.New("no such tensor")

// notFound is the error for a missing tensor: it names the file and the key.
type notFound struct{ path, name string }

func (e *notFound) Error() string { return fmt.Sprintf("%s: no tensor %q", e.path, e.name) }
func (e *notFound) Unwrap() error { return ErrNotFound }

// zipMagic starts every torch.save archive (torch >= 1.6); legacy torch.save
// files and raw pickles start with the pickle PROTO opcode instead.
var zipMagic = []byte("PK\x03\x04")

// Open opens a checkpoint, choosing the reader by the file's first bytes
// rather than its extension (released files are not always named for their
// format): a zip archive is read as a torch.save .pth, anything else must be
// safetensors.
func Open(path string) (File, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 16)
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, zipMagic):
		return OpenPth(path)
	case looksLikeSafetensors(head):
		return OpenSafetensors(path)
	case len(head) >= 2 && head[0] == 0x80 && head[1] <= 5: // pickle PROTO
		return nil, legacyError(path)
	}
	return nil, fmt.Errorf("%s: not a checkpoint: expected a torch.save zip archive (starts with \"PK\\x03\\x04\") or safetensors (8-byte header length, then '{'), found %d bytes starting %q", path, n, head)
}

// looksLikeSafetensors checks the start of a safetensors file: a
// little-endian header length and the opening brace of its JSON.
func looksLikeSafetensors(head []byte) bool {
	if len(head) < 9 {
		return false
	}
	for _, c := range head[8:] {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// sortedNames returns the keys of m sorted.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// convertFloat32 converts raw little-endian bytes of dtype dt to float32.
// The float paths index the bytes directly (no per-element closures): this
// runs over every weight of a model at load time.
func convertFloat32(path, name string, dt tensor.DType, raw []byte) ([]float32, error) {
	n := len(raw) / max(dt.Size(), 1)
	out := make([]float32, n)
	le := binary.LittleEndian
	switch dt {
	case tensor.F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case tensor.BF16:
		raw = raw[:2*n]
		for i := range out {
			out[i] = math.Float32frombits(uint32(raw[2*i])<<16 | uint32(raw[2*i+1])<<24)
		}
	case tensor.F16:
		for i := range out {
			out[i] = tensor.F32FromF16(le.Uint16(raw[2*i:]))
		}
	case tensor.F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case tensor.F8E4M3:
		for i := range out {
			out[i] = tensor.F32FromE4M3(raw[i])
		}
	case tensor.I8:
		for i := range out {
			out[i] = float32(int8(raw[i]))
		}
	case tensor.U8, tensor.Bool:
		for i := range out {
			out[i] = float32(raw[i])
		}
	case tensor.I16:
		for i := range out {
			out[i] = float32(int16(le.Uint16(raw[2*i:])))
		}
	case tensor.I32:
		for i := range out {
			out[i] = float32(int32(le.Uint32(raw[4*i:])))
		}
	case tensor.I64:
		for i := range out {
			out[i] = float32(int64(le.Uint64(raw[8*i:])))
		}
	default:
		return nil, fmt.Errorf("%s: tensor %q: cannot convert dtype %v to float32", path, name, dt)
	}
	return out, nil
}
