package umt5

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Config is the encoder geometry, read from the checkpoint's shapes.
type Config struct {
	Vocab     int  // token_embedding rows (256384 for umT5-XXL)
	Dim       int  // model width D (4096)
	DimAttn   int  // q/k/v width (4096)
	Heads     int  // attention heads (64), from the relative-position table
	HeadDim   int  // DimAttn / Heads (64)
	FFN       int  // gated-GELU width (10240)
	Layers    int  // encoder blocks (24)
	Buckets   int  // relative-position buckets (32)
	MaxDist   int  // relative-position max distance (128, fixed in the reference)
	SharedPos bool // one table for all blocks (T5) instead of one per block (umT5)
}

// XXL is umT5-XXL as Wan and TurboDiffusion use it.
var XXL = Config{Vocab: 256384, Dim: 4096, DimAttn: 4096, Heads: 64, HeadDim: 64, FFN: 10240,
	Layers: 24, Buckets: 32, MaxDist: 128}

// maxDist is the reference's T5RelativeEmbedding default.
const maxDist = 128

// tensorKeys are the names of one checkpoint's encoder tensors.
type tensorKeys struct{ prefix string }

func (k tensorKeys) embedding() string { return k.prefix + "token_embedding.weight" }
func (k tensorKeys) norm() string      { return k.prefix + "norm.weight" }
func (k tensorKeys) block(i int, name string) string {
	return k.prefix + "blocks." + strconv.Itoa(i) + "." + name
}
func (k tensorKeys) sharedPos() string { return k.prefix + "pos_embedding.embedding.weight" }

// findPrefix locates the encoder inside a checkpoint: the prefix P with
// both P+"token_embedding.weight" and P+"blocks.0.attn.q.weight" (Wan's
// models_t5_umt5-xxl-enc-bf16.pth has P = ""; a full T5Model has
// "encoder."; the golden set has "weight.").
func findPrefix(f checkpoint.File) (string, error) {
	const emb = "token_embedding.weight"
	var found []string
	for _, n := range f.Names() {
		if p, ok := strings.CutSuffix(n, emb); ok {
			if _, ok := f.Info(p + "blocks.0.attn.q.weight"); ok {
				found = append(found, p)
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		hint := ""
		if _, ok := f.Info("shared.weight"); ok {
			hint = " (this looks like a Hugging Face T5 checkpoint; use Wan's models_t5_umt5-xxl-enc-bf16.pth)"
		}
		return "", fmt.Errorf("%s: not a umT5 encoder checkpoint: no [prefix]token_embedding.weight with [prefix]blocks.0.attn.q.weight%s", f.Path(), hint)
	}
	return "", fmt.Errorf("%s: several umT5 encoders in one checkpoint (prefixes %q)", f.Path(), found)
}

// shape returns a tensor's shape or an error naming the file and key.
func shape(f checkpoint.File, key string) ([]int, error) {
	info, ok := f.Info(key)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %q", f.Path(), key)
	}
	if !bind.Float.Accepts(info.DType) {
		return nil, fmt.Errorf("%s: tensor %q: want %s, got %v", f.Path(), key, bind.Float, info.DType)
	}
	return info.Shape, nil
}

// DetectConfig reads the encoder geometry from a checkpoint and checks
// every tensor the encoder uses; it returns the key prefix too.
func DetectConfig(f checkpoint.File) (Config, string, error) {
	prefix, err := findPrefix(f)
	if err != nil {
		return Config{}, "", err
	}
	k := tensorKeys{prefix}
	var c Config
	es, err := shape(f, k.embedding())
	if err != nil {
		return c, "", err
	}
	if len(es) != 2 || es[0] < 1 || es[1] < 1 {
		return c, "", fmt.Errorf("%s: tensor %q has shape %v, want [vocab, dim]", f.Path(), k.embedding(), es)
	}
	c.Vocab, c.Dim, c.MaxDist = es[0], es[1], maxDist
	qs, err := shape(f, k.block(0, "attn.q.weight"))
	if err != nil {
		return c, "", err
	}
	if len(qs) != 2 || qs[1] != c.Dim || qs[0] < 1 {
		return c, "", fmt.Errorf("%s: tensor %q has shape %v, want [dim_attn, %d]", f.Path(), k.block(0, "attn.q.weight"), qs, c.Dim)
	}
	c.DimAttn = qs[0]
	gs, err := shape(f, k.block(0, "ffn.fc1.weight"))
	if err != nil {
		return c, "", err
	}
	if len(gs) != 2 || gs[1] != c.Dim || gs[0] < 1 {
		return c, "", fmt.Errorf("%s: tensor %q has shape %v, want [dim_ffn, %d]", f.Path(), k.block(0, "ffn.fc1.weight"), gs, c.Dim)
	}
	c.FFN = gs[0]
	posKey := k.block(0, "pos_embedding.embedding.weight")
	if _, ok := f.Info(posKey); !ok {
		if _, ok := f.Info(k.sharedPos()); !ok {
			return c, "", fmt.Errorf("%s: missing relative-position table %q (or shared %q)", f.Path(), posKey, k.sharedPos())
		}
		posKey, c.SharedPos = k.sharedPos(), true
	}
	ps, err := shape(f, posKey)
	if err != nil {
		return c, "", err
	}
	if len(ps) != 2 || ps[0] < 2 || ps[0]%2 != 0 || ps[1] < 1 {
		return c, "", fmt.Errorf("%s: tensor %q has shape %v, want [buckets (even), heads]", f.Path(), posKey, ps)
	}
	c.Buckets, c.Heads = ps[0], ps[1]
	if c.DimAttn%c.Heads != 0 {
		return c, "", fmt.Errorf("%s: attention width %d (%q) does not split into %d heads (%q)", f.Path(), c.DimAttn, k.block(0, "attn.q.weight"), c.Heads, posKey)
	}
	c.HeadDim = c.DimAttn / c.Heads
	for {
		if _, ok := f.Info(k.block(c.Layers, "attn.q.weight")); !ok {
			break
		}
		c.Layers++
	}
	if err := c.check(f, k); err != nil {
		return c, "", err
	}
	return c, prefix, nil
}

// check verifies the shape and dtype of every tensor the encoder reads,
// naming every bad one at once. Other tensors (a full T5Model's decoder)
// are left alone.
func (c Config) check(f checkpoint.File, k tensorKeys) error {
	var want []bind.Spec
	for _, t := range c.tensors(k) {
		want = append(want, bind.Spec{Name: t.Name, Shape: t.Shape, Kind: bind.Float})
	}
	return bind.Check(f, "umT5 encoder", want, false)
}

// tensors lists every tensor the encoder reads besides the token table.
func (c Config) tensors(k tensorKeys) []checkpoint.Info {
	out := []checkpoint.Info{{Name: k.norm(), Shape: []int{c.Dim}}}
	for i := 0; i < c.Layers; i++ {
		for _, t := range []struct {
			name  string
			shape []int
		}{
			{"norm1.weight", []int{c.Dim}},
			{"norm2.weight", []int{c.Dim}},
			{"attn.q.weight", []int{c.DimAttn, c.Dim}},
			{"attn.k.weight", []int{c.DimAttn, c.Dim}},
			{"attn.v.weight", []int{c.DimAttn, c.Dim}},
			{"attn.o.weight", []int{c.Dim, c.DimAttn}},
			{"ffn.gate.0.weight", []int{c.FFN, c.Dim}},
			{"ffn.fc1.weight", []int{c.FFN, c.Dim}},
			{"ffn.fc2.weight", []int{c.Dim, c.FFN}},
		} {
			out = append(out, checkpoint.Info{Name: k.block(i, t.name), Shape: t.shape})
		}
		if !c.SharedPos {
			out = append(out, checkpoint.Info{Name: k.block(i, "pos_embedding.embedding.weight"), Shape: []int{c.Buckets, c.Heads}})
		}
	}
	if c.SharedPos {
		out = append(out, checkpoint.Info{Name: k.sharedPos(), Shape: []int{c.Buckets, c.Heads}})
	}
	return out
}

// Tensors lists every tensor (name, shape; bf16 as Wan's file stores them)
// of an encoder of configuration c: what benchmarks and tests build random
// stand-ins from.
func Tensors(c Config) []checkpoint.Info {
	k := tensorKeys{}
	out := append([]checkpoint.Info{{Name: k.embedding(), Shape: []int{c.Vocab, c.Dim}}}, c.tensors(k)...)
	for i := range out {
		out[i].DType = tensor.BF16
	}
	return out
}
