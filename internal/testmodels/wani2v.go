package testmodels

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
)

// WriteWanI2V writes a random bf16 Wan2.2-I2V-style DiT expert (36 input
// channels: 16 latent + 4 mask + 16 image latent; 16 out) with one head of
// 128, one block, FFN 256, frequency width 64 and the given text width,
// under TurboWan key names including the SLA proj_l weights. Linear weights
// are scaled by 1/√fan-in so activations stay in range.
func WriteWanI2V(path string, textDim int, seed int64) error {
	return writeWan(path, 36, textDim, seed)
}

// WriteWanT2V is WriteWanI2V with 16 input channels (a text-to-video DiT).
func WriteWanT2V(path string, textDim int, seed int64) error {
	return writeWan(path, 16, textDim, seed)
}

func writeWan(path string, inDim, textDim int, seed int64) error {
	w := &bf16Tensors{r: rand.New(rand.NewSource(seed))}
	const dim, ffn, freq, out = 128, 256, 64, 16
	add := w.add
	lin := func(name string, o, i int) {
		add(name+".weight", []int{o, i}, 1/math.Sqrt(float64(i)), 0)
		add(name+".bias", []int{o}, 0.02, 0)
	}
	lin("patch_embedding", dim, inDim*4)
	lin("text_embedding.0", dim, textDim)
	lin("text_embedding.2", dim, dim)
	lin("time_embedding.0", dim, freq)
	lin("time_embedding.2", dim, dim)
	lin("time_projection.1", 6*dim, dim)
	lin("head.head", 4*out, dim)
	add("head.modulation", []int{1, 2, dim}, 0.02, 0)
	p := "blocks.0."
	add(p+"modulation", []int{1, 6, dim}, 0.02, 0)
	for _, l := range []string{"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o"} {
		lin(p+l, dim, dim)
	}
	lin(p+"ffn.0", ffn, dim)
	lin(p+"ffn.2", dim, ffn)
	for _, n := range []string{"self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k", "norm3"} {
		add(p+n+".weight", []int{dim}, 0.02, 1)
	}
	add(p+"norm3.bias", []int{dim}, 0.02, 0)
	lin(p+"self_attn.attn_op.local_attn.proj_l", 128, 128)
	if err := checkpoint.WriteSafetensors(path, w.ts); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}
