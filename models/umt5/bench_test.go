package umt5

import (
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// syntheticEncoder writes a random bf16 encoder of the given geometry.
func syntheticEncoder(tb testing.TB, c Config) string {
	r := rand.New(rand.NewPCG(1, 1))
	var ts []checkpoint.Tensor
	add := func(name string, scale float64, shape ...int) {
		n := tensor.NumElements(shape)
		data := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint16(data[2*i:], tensor.BF16FromF32(float32(r.NormFloat64()*scale)))
		}
		ts = append(ts, checkpoint.Tensor{Name: name, DType: tensor.BF16, Shape: shape, Data: data})
	}
	add("token_embedding.weight", 1, c.Vocab, c.Dim)
	add("norm.weight", 0.1, c.Dim)
	for i := 0; i < c.Layers; i++ {
		p := "blocks." + strconv.Itoa(i) + "."
		add(p+"norm1.weight", 0.1, c.Dim)
		add(p+"norm2.weight", 0.1, c.Dim)
		for _, w := range []string{"q", "k", "v"} {
			add(p+"attn."+w+".weight", 0.02, c.DimAttn, c.Dim)
		}
		add(p+"attn.o.weight", 0.02, c.Dim, c.DimAttn)
		add(p+"ffn.gate.0.weight", 0.02, c.FFN, c.Dim)
		add(p+"ffn.fc1.weight", 0.02, c.FFN, c.Dim)
		add(p+"ffn.fc2.weight", 0.02, c.Dim, c.FFN)
		add(p+"pos_embedding.embedding.weight", 0.1, c.Buckets, c.Heads)
	}
	path := filepath.Join(tb.TempDir(), "enc.safetensors")
	if err := checkpoint.WriteSafetensors(path, ts); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkEncode: 64 valid tokens of 512 through two umT5-XXL-wide
// blocks (D 4096, 64 heads, FFN 10240) in bf16 on the CPU backend; the
// full encoder has 24 such blocks.
func BenchmarkEncode(b *testing.B) {
	cfg := Config{Vocab: 1000, Dim: 4096, DimAttn: 4096, Heads: 64, FFN: 10240, Layers: 2, Buckets: 32}
	f, err := checkpoint.OpenSafetensors(syntheticEncoder(b, cfg))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	enc, err := Load(cpu.New(), f, Options{DType: tensor.BF16})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	ids := make([]int32, 512)
	for i := range ids[:64] {
		ids[i] = int32(2 + i)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := enc.Encode(ids, 64); err != nil {
			b.Fatal(err)
		}
	}
}
