package checkpoint

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Tensor is one tensor to write: a name, an element type, a shape and the
// raw little-endian row-major bytes.
type Tensor struct {
	Name  string
	DType tensor.DType
	Shape []int
	Data  []byte
	// Load, used when Data is nil, produces the bytes when the writer
	// reaches this tensor, so a converter (quantize) can stream a large
	// checkpoint with one tensor in memory at a time.
	Load func() ([]byte, error)
}

// nbytes validates t's name, dtype and shape and returns its byte size.
func (t *Tensor) nbytes(path string) (int64, error) {
	if t.Name == "" {
		return 0, fmt.Errorf("%s: a tensor has an empty name", path)
	}
	es := int64(t.DType.Size())
	if es == 0 {
		return 0, fmt.Errorf("%s: tensor %q: invalid dtype %v", path, t.Name, t.DType)
	}
	n := es
	for _, s := range t.Shape {
		if s < 0 || (s > 0 && n > math.MaxInt64/int64(s)) {
			return 0, fmt.Errorf("%s: tensor %q: bad shape %v", path, t.Name, t.Shape)
		}
		n *= int64(s)
	}
	if t.Data == nil && t.Load == nil && n != 0 {
		return 0, fmt.Errorf("%s: tensor %q: no data", path, t.Name)
	}
	if t.Data != nil && int64(len(t.Data)) != n {
		return 0, fmt.Errorf("%s: tensor %q: shape %v of %v needs %d bytes, got %d", path, t.Name, t.Shape, t.DType, n, len(t.Data))
	}
	return n, nil
}

// bytes returns t's data, calling Load if needed, checked against want.
func (t *Tensor) bytes(path string, want int64) ([]byte, error) {
	data := t.Data
	if data == nil && t.Load != nil {
		var err error
		if data, err = t.Load(); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, t.Name, err)
		}
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("%s: tensor %q: shape %v of %v needs %d bytes, got %d", path, t.Name, t.Shape, t.DType, want, len(data))
	}
	return data, nil
}

// checkTensors validates a list to write and returns each tensor's size.
func checkTensors(path string, ts []Tensor) ([]int64, error) {
	sizes := make([]int64, len(ts))
	seen := make(map[string]bool, len(ts))
	for i := range ts {
		n, err := ts[i].nbytes(path)
		if err != nil {
			return nil, err
		}
		if seen[ts[i].Name] {
			return nil, fmt.Errorf("%s: tensor %q is listed twice", path, ts[i].Name)
		}
		seen[ts[i].Name] = true
		sizes[i] = n
	}
	return sizes, nil
}

// writeAtomic writes a file through a temporary file in the same folder
// and renames it into place, so readers never see a half-written
// checkpoint and a failed write leaves nothing behind.
func writeAtomic(path string, write func(w io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return nil
}
