package checkpoint

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Order lists f's tensor names in file order: for a .pth the order of the
// pickled dict (the saving model's module order), for safetensors the order
// of the data. Writers given tensors in this order reproduce the layout.
func Order(f File) []string {
	switch f := f.(type) {
	case *pthFile:
		return f.order
	case *safetensorsFile:
		names := slices.Clone(f.names)
		slices.SortStableFunc(names, func(a, b string) int {
			return cmp.Compare(f.entries[a].begin, f.entries[b].begin)
		})
		return names
	}
	return f.Names()
}

// Format describes the file's format for people: "safetensors", or
// "torch.save zip (.pth)", noting when tensors were read from a nested
// "state_dict"/"model"/"ema" entry.
func Format(f File) string {
	switch f := f.(type) {
	case *pthFile:
		if f.from != "" {
			return fmt.Sprintf("torch.save zip (.pth), tensors under %q", f.from)
		}
		return "torch.save zip (.pth)"
	case *safetensorsFile:
		return "safetensors"
	}
	return fmt.Sprintf("%T", f)
}

// Metadata returns a safetensors file's __metadata__ map (nil for other
// formats or when absent).
func Metadata(f File) map[string]string {
	if s, ok := f.(*safetensorsFile); ok {
		return s.meta
	}
	return nil
}

// DTypeStats counts the tensors of one dtype.
type DTypeStats struct {
	DType   tensor.DType
	Tensors int
	Params  int64 // elements
	Bytes   int64
}

// Summary is what a checkpoint holds, in totals.
type Summary struct {
	Tensors int
	Params  int64        // total elements
	Bytes   int64        // total tensor bytes
	ByDType []DTypeStats // largest byte count first
}

// Summarize totals f's tensors by dtype (from the headers; no data is read).
func Summarize(f File) Summary {
	by := map[tensor.DType]*DTypeStats{}
	var s Summary
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		n := int64(tensor.NumElements(info.Shape))
		b := n * int64(info.DType.Size())
		d := by[info.DType]
		if d == nil {
			d = &DTypeStats{DType: info.DType}
			by[info.DType] = d
		}
		d.Tensors++
		d.Params += n
		d.Bytes += b
		s.Tensors++
		s.Params += n
		s.Bytes += b
	}
	for _, d := range by {
		s.ByDType = append(s.ByDType, *d)
	}
	slices.SortFunc(s.ByDType, func(a, b DTypeStats) int {
		if c := cmp.Compare(b.Bytes, a.Bytes); c != 0 {
			return c
		}
		return cmp.Compare(a.DType, b.DType)
	})
	return s
}

// String renders the summary on one line, e.g.
// "825 tensors, 1.42 G params, 2.84 GB (bfloat16: 2.83 GB in 800, float32: 9.4 MB in 25)".
func (s Summary) String() string {
	parts := make([]string, len(s.ByDType))
	for i, d := range s.ByDType {
		parts[i] = fmt.Sprintf("%v: %s in %d", d.DType, humanBytes(d.Bytes), d.Tensors)
	}
	return fmt.Sprintf("%d tensors, %s params, %s (%s)", s.Tensors, humanCount(s.Params), humanBytes(s.Bytes), strings.Join(parts, ", "))
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f G", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f M", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f k", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
