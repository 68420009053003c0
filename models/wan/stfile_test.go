package wan

import (
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// stTensor is one tensor of an in-memory safetensors image; data is zeros.
type stTensor struct {
	name  string
	dt    tensor.DType
	shape []int
}

var stNames = map[tensor.DType]string{tensor.F32: "F32", tensor.BF16: "BF16", tensor.F16: "F16", tensor.I8: "I8", tensor.I64: "I64"}

// buildFile assembles a safetensors image in memory and parses it.
func buildFile(t *testing.T, name string, ts []stTensor) checkpoint.File {
	t.Helper()
	header := map[string]any{}
	off := 0
	for _, s := range ts {
		n := tensor.NumElements(s.shape) * s.dt.Size()
		header[s.name] = map[string]any{"dtype": stNames[s.dt], "shape": s.shape, "data_offsets": []int{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8+len(h)+off)
	binary.LittleEndian.PutUint64(buf, uint64(len(h)))
	copy(buf[8:], h)
	f, err := checkpoint.ParseSafetensors(name, buf)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tinyConfig is a small architecture for key/shape tests (not runnable
// against golden data; only its tensor list matters).
func tinyConfig() Config {
	c := base("", T2V, 128, 256, 1, 2, 16)
	c.FreqDim, c.TextDim = 32, 64
	return c
}

// specFile turns expectedTensors into an in-memory file, bf16 floats.
func specFile(t *testing.T, c Config, l layout, edit func([]stTensor) []stTensor) checkpoint.File {
	t.Helper()
	var ts []stTensor
	for _, s := range expectedTensors(c, l) {
		dt := tensor.BF16
		switch s.kind {
		case kindInt8:
			dt = tensor.I8
		case kindScale:
			dt = tensor.F32
		}
		ts = append(ts, stTensor{s.name, dt, s.shape})
	}
	if edit != nil {
		ts = edit(ts)
	}
	return buildFile(t, "mem.safetensors", ts)
}
