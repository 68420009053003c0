package wan

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// tensorKind says which dtypes a checkpoint tensor may have.
type tensorKind = bind.Kind

const (
	kindFloat = bind.StdFloat // bf16, fp32 or fp16
	kindInt8  = bind.Int8     // Int8Linear codes
	kindScale = bind.F32      // Int8Linear per-128×128-tile scales
)

// tensorSpec is one tensor a DiT checkpoint must hold.
type tensorSpec struct {
	name  string
	shape []int
	kind  tensorKind
}

// specs is the list as the binder takes it.
func specs(ts []tensorSpec) []bind.Spec {
	out := make([]bind.Spec, len(ts))
	for i, t := range ts {
		out[i] = bind.Spec{Name: t.name, Shape: t.shape, Kind: t.kind}
	}
	return out
}

// layout is how a checkpoint stores a given architecture.
type layout struct {
	quantized bool // block Linears as int8_weight + scale (TurboDiffusion -quant)
	projL     bool // SLA proj_l weights present
	convPatch bool // patch_embedding.weight as Conv3d [D, Cin, kt, kh, kw]
}

// layout is the file's.
func (fi FileInfo) layout() layout {
	return layout{quantized: fi.Quantized, projL: fi.ProjL, convPatch: fi.ConvPatch}
}

// blockLinears are the Linear layers inside a block; TurboDiffusion's -quant
// files store exactly these as Int8Linear (docs/NUMERICS.md §4.3).
var blockLinears = []string{
	"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
	"cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
	"ffn.0", "ffn.2",
}

// projLPrefix is where an SLA module keeps its linear-branch projection.
const projLPrefix = "self_attn.attn_op.local_attn.proj_l"

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// linearShape is the [out, in] shape of a block Linear.
func (c Config) linearShape(name string) (out, in int) {
	switch name {
	case "ffn.0":
		return c.FFNDim, c.Dim
	case "ffn.2":
		return c.Dim, c.FFNDim
	}
	return c.Dim, c.Dim
}

// expectedTensors lists every tensor a checkpoint of architecture c stored
// with layout l holds (docs/NUMERICS.md §4.2–4.3).
func expectedTensors(c Config, l layout) []tensorSpec {
	D := c.Dim
	var s []tensorSpec
	add := func(name string, shape ...int) { s = append(s, tensorSpec{name: name, shape: shape, kind: kindFloat}) }
	if l.convPatch {
		add("patch_embedding.weight", D, c.InDim, c.Patch[0], c.Patch[1], c.Patch[2])
	} else {
		add("patch_embedding.weight", D, c.PatchDim())
	}
	add("patch_embedding.bias", D)
	add("text_embedding.0.weight", D, c.TextDim)
	add("text_embedding.0.bias", D)
	add("text_embedding.2.weight", D, D)
	add("text_embedding.2.bias", D)
	add("time_embedding.0.weight", D, c.FreqDim)
	add("time_embedding.0.bias", D)
	add("time_embedding.2.weight", D, D)
	add("time_embedding.2.bias", D)
	add("time_projection.1.weight", 6*D, D)
	add("time_projection.1.bias", 6*D)
	add("head.head.weight", c.HeadOut(), D)
	add("head.head.bias", c.HeadOut())
	add("head.modulation", 1, 2, D)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		add(p+"modulation", 1, 6, D)
		for _, lin := range blockLinears {
			out, in := c.linearShape(lin)
			if l.quantized {
				s = append(s,
					tensorSpec{name: p + lin + ".int8_weight", shape: []int{out, in}, kind: kindInt8},
					tensorSpec{name: p + lin + ".scale", shape: []int{ceilDiv(out, 128), ceilDiv(in, 128)}, kind: kindScale})
			} else {
				add(p+lin+".weight", out, in)
			}
			add(p+lin+".bias", out)
		}
		add(p+"self_attn.norm_q.weight", D)
		add(p+"self_attn.norm_k.weight", D)
		add(p+"cross_attn.norm_q.weight", D)
		add(p+"cross_attn.norm_k.weight", D)
		add(p+"norm3.weight", D)
		add(p+"norm3.bias", D)
		if l.projL {
			add(p+projLPrefix+".weight", c.HeadDim, c.HeadDim)
			add(p+projLPrefix+".bias", c.HeadDim)
		}
	}
	return s
}

// Tensors lists the float tensors (name and shape) of a TurboWan checkpoint
// of architecture c in bf16 with SLA proj_l weights, as released: what
// benchmarks and tests build random stand-ins from.
func Tensors(c Config) []checkpoint.Info {
	var out []checkpoint.Info
	for _, s := range expectedTensors(c, layout{projL: true}) {
		out = append(out, checkpoint.Info{Name: s.name, DType: tensor.BF16, Shape: s.shape})
	}
	return out
}
