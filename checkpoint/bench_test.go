package checkpoint

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// BenchmarkFloat32BF16 measures the bf16 -> float32 conversion every model
// load goes through (bytes/s of bf16 input).
func BenchmarkFloat32BF16(b *testing.B) {
	raw := make([]byte, 1<<24)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := convertFloat32("x", "t", tensor.BF16, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenPth measures opening a .pth with 1000 tensors: zip directory
// and pickle only, no tensor data is touched.
func BenchmarkOpenPth(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	var ts []Tensor
	for i := range 1000 {
		t := sampleTensors(rng)[i%10]
		t.Name = t.Name + string(rune('a'+i%26)) + string(rune('a'+i/26))
		ts = append(ts, t)
	}
	path := filepath.Join(b.TempDir(), "m.pth")
	if err := WritePth(path, ts); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
