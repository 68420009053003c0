package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// goldenDiT is the tiny DiT of the conformance set (heads, eps, text
// length and layers from the manifest's configs.dit), run op by op on this backend as TD's
// rcm/networks/wan2pt1.py does with --default_norm and SDPA attention.
type goldenDiT struct {
	t     *testing.T
	be    *Backend
	dt    tensor.DType
	w     checkpoint.File
	ref   checkpoint.File
	in    checkpoint.File
	name  string // variant prefix, e.g. "bf16_original"
	heads int
	eps   float32
}

// newGoldenDiT opens the set's DiT files for one variant and reads the
// configuration the op-by-op model needs from the manifest.
func newGoldenDiT(t *testing.T, name, file string, dt tensor.DType) (*goldenDiT, golden.Manifest) {
	man := golden.LoadManifest(t)
	return &goldenDiT{t: t, be: New(), dt: dt, name: name,
		heads: man.Int(t, "configs", "dit", "num_heads"), eps: float32(man.Number(t, "configs", "dit", "eps")),
		w: golden.Open(t, "dit_weights.safetensors"), ref: golden.Open(t, file), in: golden.Open(t, "dit_inputs.safetensors")}, man
}

// weight uploads a checkpoint weight in the model's dtype (all weights are
// bf16-exact, so the fp32 model sees the same values).
func (g *goldenDiT) weight(key string) backend.Tensor {
	v, shape := golden.Tensor(g.t, g.w, key)
	return g.be.Upload(g.dt, shape, v)
}

// refT uploads a reference tensor with its stored dtype's precision.
func (g *goldenDiT) refT(key string, dt tensor.DType) backend.Tensor {
	v, shape := golden.Tensor(g.t, g.ref, g.name+"."+key)
	return g.be.Upload(dt, shape, v)
}

func (g *goldenDiT) linear(x backend.Tensor, key string) backend.Tensor {
	return g.be.Linear(x, g.weight(key+".weight"), g.weight(key+".bias"))
}

// modulation returns the six [D] vectors modulation + e0, in float32.
func (g *goldenDiT) modulation(block string) []backend.Tensor {
	mv, _ := golden.Tensor(g.t, g.w, block+".modulation")
	e0, _ := golden.Tensor(g.t, g.ref, g.name+".time_projection")
	d := len(mv) / 6
	out := make([]backend.Tensor, 6)
	for i := range out {
		s := make([]float32, d)
		for j := range s {
			s[j] = mv[i*d+j] + e0[i*d+j]
		}
		out[i] = g.be.Upload(tensor.F32, []int{d}, s)
	}
	return out
}

// attention runs q/k/v projections, the full-dim RMSNorms, optional RoPE,
// dense attention and the output projection.
func (g *goldenDiT) attention(prefix string, x, ctx, angles backend.Tensor) backend.Tensor {
	be := g.be
	q := be.RMSNorm(g.linear(x, prefix+".q"), g.weight(prefix+".norm_q.weight"), g.eps, backend.NormDefault)
	k := be.RMSNorm(g.linear(ctx, prefix+".k"), g.weight(prefix+".norm_k.weight"), g.eps, backend.NormDefault)
	v := g.linear(ctx, prefix+".v")
	if angles != nil {
		q, k = be.RoPE(q, angles, g.heads), be.RoPE(k, angles, g.heads)
	}
	d := q.Shape()[len(q.Shape())-1] / g.heads
	o := be.Attention(q, k, v, g.heads, float32(1/math.Sqrt(float64(d))))
	return g.linear(o, prefix+".o")
}

// goldenDiTRuns are the set's original-model runs the block and embedding
// tests check, with the set's tolerances (float32 1e-4, bf16 2e-2).
var goldenDiTRuns = []struct {
	name, file string
	dt         tensor.DType
	tol        float64
}{
	{"fp32_original", "dit_fp32.safetensors", tensor.F32, 1e-4},
	{"bf16_original", "dit_bf16.safetensors", tensor.BF16, 2e-2},
}

// TestGoldenBlock runs transformer block 0 of the reference DiT from the
// reference's own block input (patch_embedding), time projection and text
// context, and compares the self-attention output and the block output.
// It pins down the rounding of every DiT op this backend provides.
func TestGoldenBlock(t *testing.T) {
	for _, c := range goldenDiTRuns {
		t.Run(c.name, func(t *testing.T) {
			g, _ := newGoldenDiT(t, c.name, c.file, c.dt)
			be := g.be
			x := g.refT("patch_embedding", c.dt)
			ctx := g.refT("text_embedding", c.dt)
			av, ashape := golden.Tensor(t, g.in, "rope_freqs")
			angles := be.Upload(tensor.F32, ashape, av)
			m := g.modulation("blocks.0")

			a := be.Modulate(be.LayerNorm(x, nil, nil, g.eps, c.dt), m[0], m[1])
			y := g.attention("blocks.0.self_attn", a, a, angles)
			want, _ := golden.Tensor(t, g.ref, c.name+".blocks.0.self_attn")
			golden.Compare(t, c.name+" blocks.0.self_attn", be.Download(y), want, c.tol)

			x = be.GatedAdd(x, y, m[2])
			n3 := be.LayerNorm(x, g.weight("blocks.0.norm3.weight"), g.weight("blocks.0.norm3.bias"), g.eps, c.dt)
			x = be.Add(x, g.attention("blocks.0.cross_attn", n3, ctx, nil))
			f := be.Modulate(be.LayerNorm(x, nil, nil, g.eps, c.dt), m[3], m[4])
			ffn := g.linear(be.GELUTanh(g.linear(f, "blocks.0.ffn.0")), "blocks.0.ffn.2")
			x = be.GatedAdd(x, ffn, m[5])
			want, _ = golden.Tensor(t, g.ref, c.name+".blocks.0")
			golden.Compare(t, c.name+" blocks.0", be.Download(x), want, c.tol)
		})
	}
}

// TestGoldenEmbeddingsAndHead checks the float32 time projection, the bf16
// text embedding MLP and the float32 head from the reference's inputs.
func TestGoldenEmbeddingsAndHead(t *testing.T) {
	for _, c := range goldenDiTRuns {
		t.Run(c.name, func(t *testing.T) {
			g, man := newGoldenDiT(t, c.name, c.file, c.dt)
			be := g.be
			f32w := func(key string) backend.Tensor { // fp32 autocast regions upcast the weights
				v, shape := golden.Tensor(t, g.w, key)
				return be.Upload(tensor.F32, shape, v)
			}
			// time projection: e0 = Wp·SiLU(e)+bp in float32
			e := g.refT("time_embedding", tensor.F32)
			e0 := be.Linear(be.SiLU(e), f32w("time_projection.1.weight"), f32w("time_projection.1.bias"))
			want, _ := golden.Tensor(t, g.ref, c.name+".time_projection")
			golden.Compare(t, c.name+" time_projection", be.Download(e0), want, 1e-4)

			// text embedding: W2·GELU_tanh(W1·txt+b1)+b2 on the valid rows
			// padded with zero rows to text_len
			tv, tshape := golden.Tensor(t, g.in, "text_valid")
			textLen := man.Int(t, "configs", "dit", "text_len")
			if len(tshape) != 3 || tshape[1] > textLen {
				t.Fatalf("text_valid has shape %v, want [1, rows <= %d, text_dim]", tshape, textLen)
			}
			txt := make([]float32, textLen*tshape[2])
			copy(txt, tv)
			ctx := g.linear(be.GELUTanh(g.linear(be.Upload(c.dt, []int{1, textLen, tshape[2]}, txt), "text_embedding.0")), "text_embedding.2")
			want, _ = golden.Tensor(t, g.ref, c.name+".text_embedding")
			golden.Compare(t, c.name+" text_embedding", be.Download(ctx), want, c.tol)

			// head: W_h·(float32(LN(x)) ·(1+scale) + shift) + b_h in float32
			// from the reference's last block output.
			x := g.refT(fmt.Sprintf("blocks.%d", man.Int(t, "configs", "dit", "num_layers")-1), c.dt)
			mv, _ := golden.Tensor(t, g.w, "head.modulation")
			ev := be.Download(e)
			d := len(ev)
			shift, scale := make([]float32, d), make([]float32, d)
			for j := range ev {
				shift[j], scale[j] = mv[j]+ev[j], mv[d+j]+ev[j]
			}
			n := be.Cast(be.LayerNorm(x, nil, nil, g.eps, c.dt), tensor.F32)
			h := be.Modulate(n, be.Upload(tensor.F32, []int{d}, shift), be.Upload(tensor.F32, []int{d}, scale))
			out := be.Linear(h, f32w("head.head.weight"), f32w("head.head.bias"))
			want, _ = golden.Tensor(t, g.ref, c.name+".head")
			golden.Compare(t, c.name+" head", be.Download(out), want, 1e-4)
		})
	}
}
