package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// IsQuantizedLinear reports whether the checkpoint tensor name/info is the
// weight of a Linear that TurboDiffusion's `--quant_linear` replaces by an
// Int8Linear: a 2-D float `.weight` under `blocks.` whose path does not
// contain `proj_l` (docs/NUMERICS.md §4.3). In a flat Wan state dict the only
// 2-D weights inside the blocks are Linears (norms are 1-D, modulations 3-D).
func IsQuantizedLinear(info checkpoint.Info) bool {
	return strings.HasPrefix(info.Name, "blocks.") && strings.HasSuffix(info.Name, ".weight") &&
		!strings.Contains(info.Name, "proj_l") && len(info.Shape) == 2 && info.DType.IsFloat()
}

// QuantizeCheckpoint writes outPath, a `-quant` checkpoint made from
// in exactly as the reference's `modify_model.py --quant_linear`: every
// Linear weight under `blocks.*` except proj_l becomes `<path>.int8_weight`
// (int8 [out, in]) and `<path>.scale` (float32 [ceil(out/128),
// ceil(in/128)]); all other tensors, biases included, are copied unchanged
// with their dtypes. Tensors are converted one at a time as they are
// written, so memory stays near one layer's size.
func QuantizeCheckpoint(in checkpoint.File, outPath string) error {
	return QuantizeCheckpointProgress(in, outPath, nil)
}

// OutputFormat is the container a quantised checkpoint is written in,
// chosen by the output's name: ".pth" or ".pt" a torch.save zip (what
// TurboDiffusion loads), ".safetensors" safetensors. Any other name is an
// error, so a file never holds a format its name does not say.
func OutputFormat(outPath string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(outPath)); ext {
	case ".pth", ".pt":
		return "pth", nil
	case ".safetensors":
		return "safetensors", nil
	default:
		return "", fmt.Errorf("%s: the output name must end in .pth (a torch.save file, as TurboDiffusion's -quant releases) or .safetensors, not %q", outPath, ext)
	}
}

// QuantizeCheckpointProgress is QuantizeCheckpoint reporting each tensor as
// it is written (done counts from 1 to total); progress may be nil. The
// output's format follows its name (OutputFormat).
func QuantizeCheckpointProgress(in checkpoint.File, outPath string, progress func(done, total int, name string)) error {
	format, err := OutputFormat(outPath)
	if err != nil {
		return err
	}
	ts, err := QuantizedTensors(in)
	if err != nil {
		return err
	}
	if progress != nil {
		for i := range ts {
			load, name := ts[i].Load, ts[i].Name
			ts[i].Load = func() ([]byte, error) {
				progress(i+1, len(ts), name)
				return load()
			}
		}
	}
	if format == "safetensors" {
		return checkpoint.WriteSafetensors(outPath, ts)
	}
	return checkpoint.WritePth(outPath, ts)
}

// QuantizedTensors lists the tensors of the quantised checkpoint in the
// input's order (pickle order for a .pth), each produced lazily by Load.
func QuantizedTensors(in checkpoint.File) ([]checkpoint.Tensor, error) {
	names := in.Names()
	if o, ok := in.(interface{ Order() []string }); ok {
		names = o.Order()
	}
	var out []checkpoint.Tensor
	quantized := 0
	for _, name := range names {
		info, ok := in.Info(name)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q listed but not found", in.Path(), name)
		}
		if strings.HasSuffix(name, ".int8_weight") {
			return nil, fmt.Errorf("%s: already quantised (has %q)", in.Path(), name)
		}
		if !IsQuantizedLinear(info) {
			out = append(out, checkpoint.Tensor{Name: name, DType: info.DType, Shape: info.Shape,
				Load: func() ([]byte, error) { return in.Raw(name) }})
			continue
		}
		quantized++
		base := strings.TrimSuffix(name, ".weight")
		n, k := info.Shape[0], info.Shape[1]
		sr, sc := ScaleShape(n, k)
		lw := &lazyWeight{in: in, name: name, n: n, k: k}
		out = append(out,
			checkpoint.Tensor{Name: base + ".int8_weight", DType: tensor.I8, Shape: []int{n, k}, Load: lw.codes},
			checkpoint.Tensor{Name: base + ".scale", DType: tensor.F32, Shape: []int{sr, sc}, Load: lw.scales})
	}
	if quantized == 0 {
		return nil, fmt.Errorf("%s: no Linear weight under blocks.* to quantise (is this a Wan DiT checkpoint?)", in.Path())
	}
	return out, nil
}

// lazyWeight quantises one Linear weight on first use and hands out its
// codes and scales once each, so the writer holds one layer at a time.
type lazyWeight struct {
	in   checkpoint.File
	name string
	n, k int
	once sync.Once
	q, s []byte
	err  error
}

func (w *lazyWeight) run() {
	w.once.Do(func() {
		x, err := w.in.Float32(w.name)
		if err != nil {
			w.err = err
			return
		}
		q, s, err := Quantize(x, w.n, w.k)
		if err != nil {
			w.err = fmt.Errorf("%s: %w", w.name, err)
			return
		}
		w.q = make([]byte, len(q))
		for i, v := range q {
			w.q[i] = byte(v)
		}
		w.s = make([]byte, 4*len(s))
		for i, v := range s {
			binary.LittleEndian.PutUint32(w.s[4*i:], math.Float32bits(v))
		}
	})
}

func (w *lazyWeight) codes() ([]byte, error) {
	w.run()
	q := w.q
	w.q = nil
	if q == nil && w.err == nil {
		return nil, fmt.Errorf("%s: int8 codes requested twice", w.name)
	}
	return q, w.err
}

func (w *lazyWeight) scales() ([]byte, error) {
	w.run()
	s := w.s
	w.s = nil
	if s == nil && w.err == nil {
		return nil, fmt.Errorf("%s: scales requested twice", w.name)
	}
	return s, w.err
}
