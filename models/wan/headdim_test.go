package wan

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestHeadDim64Block: a DiT whose width splits into heads of 64 (dim 128,
// 2 heads; the head width read from its proj_l weights, as for a
// conformance set of that layout) computes block 0 as an independent
// float64 transcription of the block (docs/NUMERICS.md §3.5) does,
// from the same block input, time projection and text context. Dense
// attention in the float32 model is compared tightly; SLA with every key
// block kept (so its sparse branch is full attention) adds the linear
// branch over 64 channels and proj_l [64 64], with SLA's bf16 casts, so it
// gets the bf16 bound.
func TestHeadDim64Block(t *testing.T) {
	c := base("", T2V, 128, 256, 2, 1, 16)
	c.FreqDim, c.TextDim = 32, 64
	f := testmodels.NewRandom("hd64.safetensors", Tensors(c), 64)
	T, H, W := 3, 10, 10 // 3·5·5 = 75 tokens: ragged 128- and 64-blocks
	const rows = 7
	x := randomValues(c.InDim*T*H*W, 1)
	text := randomValues(rows*c.TextDim, 2)
	for _, tc := range []struct {
		name string
		opt  Options
		tol  float64
	}{
		{"fp32_dense", Options{DType: tensor.F32, Norm: backend.NormDefault}, 1e-5},
		{"fp32_sla_all_blocks", Options{DType: tensor.F32, Norm: backend.NormDefault, Attention: backend.SLA, TopK: 1}, 1e-2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(cpuDiT(t), f, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			if m.Config.Heads != 2 || m.Config.HeadDim != 64 || m.Info.HeadDimFrom != HeadDimFromProjL {
				t.Fatalf("loaded as %v (head dim from %s), want 2 heads of 64 from proj_l", m.Config, m.Info.HeadDimFrom)
			}
			got := map[string][]float32{}
			m.Hook = func(name string, x backend.Tensor) {
				switch name {
				case "patch_embedding", "time_projection", "text_embedding", "blocks.0":
					got[name] = m.be.Download(x)
				}
			}
			txt, err := m.EmbedText(text, rows)
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Free()
			if _, err := m.Forward(x, []int{c.InDim, T, H, W}, 500, txt); err != nil {
				t.Fatal(err)
			}
			want := refBlock64(t, f, c, tc.opt.Attention == backend.SLA, got["patch_embedding"], got["time_projection"], got["text_embedding"], T, H/2, W/2)
			golden.Compare(t, "blocks.0 vs float64 block", got["blocks.0"], want, tc.tol)
		})
	}
}

func randomValues(n int, seed uint64) []float32 {
	s := seed*0x9E3779B97F4A7C15 + 1
	out := make([]float32, n)
	for i := range out {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		out[i] = float32(int64(s>>40)-(1<<23)) / (1 << 23)
	}
	return out
}

// refBlock64 is Wan block 0 in float64, written from the reference's
// description and sharing no code with the model: x [L, D] block input,
// e0 [6D] time projection, ctx [TextLen, D] embedded text; sla selects the
// SLA attention with every key block kept (full softmax plus the linear
// branch through proj_l).
func refBlock64(t *testing.T, f *testmodels.Random, c Config, sla bool, x32, e032, ctx32 []float32, T, Hp, Wp int) []float32 {
	t.Helper()
	w := func(name string) []float64 {
		v, err := f.Float32("blocks.0." + name)
		if err != nil {
			t.Fatal(err)
		}
		return f64(v)
	}
	D, N, d := c.Dim, c.Heads, c.HeadDim
	L := len(x32) / D
	eps := float64(c.Eps)
	x, ctx := f64(x32), f64(ctx32)
	mod := w("modulation")
	m := make([][]float64, 6)
	for k := range m {
		m[k] = make([]float64, D)
		for j := range m[k] {
			m[k][j] = mod[k*D+j] + float64(e032[k*D+j])
		}
	}
	linear := func(x []float64, name string, in, out int) []float64 {
		wt, b := w(name+".weight"), w(name+".bias")
		rows := len(x) / in
		y := make([]float64, rows*out)
		for r := 0; r < rows; r++ {
			for o := 0; o < out; o++ {
				s := b[o]
				for i := 0; i < in; i++ {
					s += x[r*in+i] * wt[o*in+i]
				}
				y[r*out+o] = s
			}
		}
		return y
	}
	layerNorm := func(x, g, b []float64) []float64 {
		y := make([]float64, len(x))
		for r := 0; r < len(x)/D; r++ {
			row := x[r*D : (r+1)*D]
			mu, v := 0.0, 0.0
			for _, a := range row {
				mu += a
			}
			mu /= float64(D)
			for _, a := range row {
				v += (a - mu) * (a - mu)
			}
			rs := 1 / math.Sqrt(v/float64(D)+eps)
			for j, a := range row {
				y[r*D+j] = (a - mu) * rs
				if g != nil {
					y[r*D+j] = y[r*D+j]*g[j] + b[j]
				}
			}
		}
		return y
	}
	modulate := func(n, shift, scale []float64) []float64 {
		for i := range n {
			n[i] = n[i]*(1+scale[i%D]) + shift[i%D]
		}
		return n
	}
	rmsNorm := func(x, g []float64) []float64 {
		for r := 0; r < len(x)/D; r++ {
			row := x[r*D : (r+1)*D]
			ms := 0.0
			for _, a := range row {
				ms += a * a
			}
			rs := 1 / math.Sqrt(ms/float64(D)+eps)
			for j := range row {
				row[j] *= rs * g[j]
			}
		}
		return x
	}
	// 3D RoPE, interleaved pairs: d/2 pairs split into temporal, height and
	// width groups of d/2−2⌊d/6⌋, ⌊d/6⌋, ⌊d/6⌋ pairs; ω_j = 10000^(−2j/dim)
	// over each group's dim = 2·pairs; positions (t, hp, wp) of token l.
	rope := func(x []float64) []float64 {
		ph := d / 6
		groups := []int{d/2 - 2*ph, ph, ph}
		for l := 0; l < L; l++ {
			pos := []int{l / (Hp * Wp), l / Wp % Hp, l % Wp}
			for h := 0; h < N; h++ {
				p := 0
				for g, n := range groups {
					for j := 0; j < n; j++ {
						a := float64(pos[g]) * math.Pow(10000, -float64(2*j)/float64(2*n))
						i := l*D + h*d + 2*p
						re, im := x[i], x[i+1]
						x[i], x[i+1] = re*math.Cos(a)-im*math.Sin(a), re*math.Sin(a)+im*math.Cos(a)
						p++
					}
				}
			}
		}
		return x
	}
	attention := func(q, k, v []float64) []float64 {
		lq, lk := len(q)/D, len(k)/D
		o := make([]float64, len(q))
		s := make([]float64, lk)
		for h := 0; h < N; h++ {
			for i := 0; i < lq; i++ {
				mx := math.Inf(-1)
				for j := 0; j < lk; j++ {
					dot := 0.0
					for e := 0; e < d; e++ {
						dot += q[i*D+h*d+e] * k[j*D+h*d+e]
					}
					s[j] = dot / math.Sqrt(float64(d))
					mx = math.Max(mx, s[j])
				}
				sum := 0.0
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for j := range s {
					for e := 0; e < d; e++ {
						o[i*D+h*d+e] += s[j] / sum * v[j*D+h*d+e]
					}
				}
			}
		}
		return o
	}
	// SLA's linear branch: φ = softmax over each head's d channels,
	// o_l = φ(q)·(φ(k)ᵀv) / (1e-5 + φ(q)·Σ_L φ(k)), then proj_l per head.
	linearBranch := func(q, k, v []float64) []float64 {
		phi := func(x []float64) []float64 {
			y := make([]float64, len(x))
			for r := 0; r < len(x)/d; r++ {
				row, mx, sum := x[r*d:(r+1)*d], math.Inf(-1), 0.0
				for _, a := range row {
					mx = math.Max(mx, a)
				}
				for j, a := range row {
					y[r*d+j] = math.Exp(a - mx)
					sum += y[r*d+j]
				}
				for j := range row {
					y[r*d+j] /= sum
				}
			}
			return y
		}
		fq, fk := phi(q), phi(k)
		pw, pb := w(projLPrefix+".weight"), w(projLPrefix+".bias")
		out := make([]float64, len(q))
		for h := 0; h < N; h++ {
			kv := make([]float64, d*d)
			ks := make([]float64, d)
			for j := 0; j < L; j++ {
				for a := 0; a < d; a++ {
					ks[a] += fk[j*D+h*d+a]
					for b := 0; b < d; b++ {
						kv[a*d+b] += fk[j*D+h*d+a] * v[j*D+h*d+b]
					}
				}
			}
			ol := make([]float64, d)
			for i := 0; i < L; i++ {
				den := 1e-5
				for a := 0; a < d; a++ {
					den += fq[i*D+h*d+a] * ks[a]
				}
				for b := 0; b < d; b++ {
					s := 0.0
					for a := 0; a < d; a++ {
						s += fq[i*D+h*d+a] * kv[a*d+b]
					}
					ol[b] = s / den
				}
				for o := 0; o < d; o++ {
					s := pb[o]
					for e := 0; e < d; e++ {
						s += ol[e] * pw[o*d+e]
					}
					out[i*D+h*d+o] = s
				}
			}
		}
		return out
	}

	a := modulate(layerNorm(x, nil, nil), m[0], m[1])
	q := rope(rmsNorm(linear(a, "self_attn.q", D, D), w("self_attn.norm_q.weight")))
	k := rope(rmsNorm(linear(a, "self_attn.k", D, D), w("self_attn.norm_k.weight")))
	v := linear(a, "self_attn.v", D, D)
	o := attention(q, k, v)
	if sla {
		for i, e := range linearBranch(q, k, v) {
			o[i] += e
		}
	}
	y := linear(o, "self_attn.o", D, D)
	for i := range x {
		x[i] += y[i] * m[2][i%D]
	}
	x3 := layerNorm(x, w("norm3.weight"), w("norm3.bias"))
	cq := rmsNorm(linear(x3, "cross_attn.q", D, D), w("cross_attn.norm_q.weight"))
	ck := rmsNorm(linear(ctx, "cross_attn.k", D, D), w("cross_attn.norm_k.weight"))
	cv := linear(ctx, "cross_attn.v", D, D)
	co := linear(attention(cq, ck, cv), "cross_attn.o", D, D)
	for i := range x {
		x[i] += co[i]
	}
	fin := modulate(layerNorm(x, nil, nil), m[3], m[4])
	h := linear(fin, "ffn.0", D, c.FFNDim)
	for i, u := range h {
		h[i] = 0.5 * u * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(u+0.044715*u*u*u)))
	}
	h2 := linear(h, "ffn.2", c.FFNDim, D)
	out := make([]float32, len(x))
	for i := range x {
		out[i] = float32(x[i] + h2[i]*m[5][i%D])
	}
	return out
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, a := range v {
		out[i] = float64(a)
	}
	return out
}
