// Package testmodels makes random checkpoints: small ones written to disk
// for tests that need a model no conformance set ships (e.g. a umT5 encoder
// whose vocabulary covers the golden tokenizer and whose width is the DiT's
// text_dim), and in-memory ones at real shapes for benchmarks (Random).
package testmodels

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
)

// WriteUMT5 writes a random bf16 umT5 encoder (2 layers, attention width 64
// in 2 heads, FFN 128, 32 buckets) with the given vocabulary and model width,
// under Wan's key names. Weights are scaled like a trained model's so
// activations stay in range.
func WriteUMT5(path string, vocab, dim int, seed int64) error {
	w := &bf16Tensors{r: rand.New(rand.NewSource(seed))}
	const attn, heads, ffn, layers, buckets = 64, 2, 128, 2, 32
	add := w.add
	inv := func(n int) float64 { return 1 / math.Sqrt(float64(n)) }
	add("token_embedding.weight", []int{vocab, dim}, 1, 0)
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		add(p+"norm1.weight", []int{dim}, 0.01, 1)
		add(p+"attn.q.weight", []int{attn, dim}, inv(dim*attn/heads), 0)
		add(p+"attn.k.weight", []int{attn, dim}, inv(dim), 0)
		add(p+"attn.v.weight", []int{attn, dim}, inv(dim), 0)
		add(p+"attn.o.weight", []int{dim, attn}, inv(attn), 0)
		add(p+"norm2.weight", []int{dim}, 0.01, 1)
		add(p+"ffn.gate.0.weight", []int{ffn, dim}, inv(dim), 0)
		add(p+"ffn.fc1.weight", []int{ffn, dim}, inv(dim), 0)
		add(p+"ffn.fc2.weight", []int{dim, ffn}, inv(ffn), 0)
		add(p+"pos_embedding.embedding.weight", []int{buckets, heads}, 0.25, 0)
	}
	add("norm.weight", []int{dim}, 0.01, 1)
	return checkpoint.WriteSafetensors(path, w.ts)
}
