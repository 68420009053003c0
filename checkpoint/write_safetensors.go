package checkpoint

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// WriteSafetensors writes tensors as a .safetensors file (atomically).
func WriteSafetensors(path string, tensors []Tensor) error {
	return WriteSafetensorsMetadata(path, tensors, nil)
}

// WriteSafetensorsMetadata is WriteSafetensors with a __metadata__ map.
// As the reference implementation does, data is laid out by decreasing
// element size, then name, and the header is padded to 8 bytes, so every
// tensor is aligned to its element size.
func WriteSafetensorsMetadata(path string, tensors []Tensor, meta map[string]string) error {
	sizes, err := checkTensors(path, tensors)
	if err != nil {
		return err
	}
	names := map[tensor.DType]string{}
	for k, v := range safetensorsDTypes {
		names[v] = k
	}
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
		if _, ok := names[tensors[i].DType]; !ok {
			return fmt.Errorf("%s: tensor %q: dtype %v has no safetensors name", path, tensors[i].Name, tensors[i].DType)
		}
		if tensors[i].Name == "__metadata__" {
			return fmt.Errorf("%s: a tensor may not be named __metadata__", path)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(tensors[b].DType.Size(), tensors[a].DType.Size()); c != 0 {
			return c
		}
		return cmp.Compare(tensors[a].Name, tensors[b].Name)
	})
	type entry struct {
		DType   string  `json:"dtype"`
		Shape   []int   `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, i := range order {
		t := &tensors[i]
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = entry{DType: names[t.DType], Shape: shape, Offsets: []int64{off, off + sizes[i]}}
		off += sizes[i]
	}
	hj, err := json.Marshal(header) // map keys come out sorted: deterministic
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	return writeAtomic(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hj)))
		if _, err := w.Write(n[:]); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, err := w.Write(hj); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, i := range order {
			data, err := tensors[i].bytes(path, sizes[i])
			if err != nil {
				return err
			}
			if _, err := w.Write(data); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		return nil
	})
}
