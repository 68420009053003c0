package wan

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Hook names (Model.Hook), following the reference module paths:
//
//	text_embedding        context [TextLen, D]            (EmbedText)
//	patch_embedding       tokens [L, D]
//	time_embedding        e [1, D] F32
//	time_projection       e0 [1, 6D] F32
//	blocks.<i>.self_attn.q, .k   query/key after RMSNorm and RoPE [L, D]
//	blocks.<i>.self_attn  self-attention output after o, before gating [L, D]
//	blocks.<i>            block output [L, D]
//	head                  head output before unpatchify [L, 4·OutDim] F32

// Text is an embedded text context, computed once per prompt by EmbedText
// and reused by every Forward call: the text_embedding output and each
// block's cross-attention keys and values (which depend on nothing else).
type Text struct {
	m     *Model
	ctx   backend.Tensor   // [TextLen, D]
	k, v  []backend.Tensor // per block [TextLen, D]
	freed bool
}

// Free releases the context's tensors.
func (t *Text) Free() {
	if t == nil || t.freed {
		return
	}
	t.freed = true
	be := t.m.be
	if be == nil {
		return
	}
	be.Free(t.ctx)
	for i := range t.k {
		be.Free(t.k[i])
		be.Free(t.v[i])
	}
}

func (m *Model) hook(name string, t backend.Tensor) {
	if m.Hook != nil {
		m.Hook(name, t)
	}
}

// apply runs a Linear (Int8Linear when the layer is quantised).
func (m *Model) apply(l linear, x backend.Tensor) backend.Tensor {
	if l.scale != nil {
		return m.be.Int8Linear(x, l.w, l.scale, l.b)
	}
	return m.be.Linear(x, l.w, l.b)
}

// EmbedText embeds umT5 output rows [rows, TextDim] (rows ≤ TextLen; the
// rest are zero rows, as the reference pads, and are attended to like any
// other row: docs/NUMERICS.md §3.4).
func (m *Model) EmbedText(context []float32, rows int) (txt *Text, err error) {
	if m == nil || m.be == nil {
		return nil, fmt.Errorf("wan: EmbedText on a freed or nil model")
	}
	c := m.Config
	if rows < 0 || rows > c.TextLen {
		return nil, fmt.Errorf("wan: text context has %d rows, want 0..%d", rows, c.TextLen)
	}
	if len(context) != rows*c.TextDim {
		return nil, fmt.Errorf("wan: text context: want %d×%d = %d values, got %d", rows, c.TextDim, rows*c.TextDim, len(context))
	}
	defer backend.Recover(&err)
	be, dt := m.be, m.Opt.DType
	sc := be.Begin() // on failure its End drops a half-built context
	defer sc.End()
	padded := make([]float32, c.TextLen*c.TextDim)
	copy(padded, context)
	in := be.Upload(dt, []int{c.TextLen, c.TextDim}, padded)
	t := &Text{m: m, ctx: m.apply(m.text2, be.GELUTanh(m.apply(m.text0, in)))}
	m.hook("text_embedding", t.ctx)
	fetch := m.newFetcher(linCK, linCV) // offload: only these two weights
	fetch.start()
	for i := range m.blocks {
		fetch.wait(i)
		b := m.blk(i)
		t.k = append(t.k, backend.Scoped(be, func() backend.Tensor { return be.RMSNorm(m.apply(b.ck, t.ctx), b.cNormK, c.Eps, m.Opt.Norm) }))
		t.v = append(t.v, m.apply(b.cv, t.ctx))
		fetch.next(i)
	}
	// The context outlives this call: it lives until Text.Free.
	be.Persist(t.ctx)
	be.Persist(t.k...)
	be.Persist(t.v...)
	return t, nil
}

// Forward predicts the flow velocity for one latent x [InDim, T, H, W]
// (batch 1) at timestep t (already ×1000, as the sampler feeds it; the bf16
// model rounds it to bf16) with text context txt. I2V callers pass the
// noisy latent followed by the condition y (channels concatenated:
// append(x, y...), 16+20 = 36). The result is [OutDim, T, H, W] float32.
func (m *Model) Forward(x []float32, shape []int, t float32, txt *Text) (out []float32, err error) {
	if err := m.checkForward(shape, t, txt); err != nil {
		return nil, err
	}
	c := m.Config
	if n := tensor.NumElements(shape); len(x) != n {
		return nil, fmt.Errorf("wan: latent %v holds %d values, got %d", shape, n, len(x))
	}
	defer backend.Recover(&err)
	be := m.be
	sc := be.Begin() // every activation of the pass lives in it
	defer sc.End()
	T, H, W := shape[1], shape[2], shape[3]
	L := T * (H / 2) * (W / 2)
	y := m.forward(be.Upload(m.Opt.DType, []int{L, c.PatchDim()}, patchify(x, c.InDim, T, H, W)), T, H, W, t, txt)
	return unpatchify(be.Download(y), c.OutDim, T, H, W), nil
}

// ForwardDevice is Forward on a latent already on the backend: x [InDim,
// T, H, W] (F32 or BF16, rounded to the model dtype) stays where it is and
// the velocity [OutDim, T, H, W] F32 comes back on it, owned by the
// caller's scope (with none open, live until the caller frees it). The patch layout changes on the device
// (the same permutation as patchify/unpatchify), so the result equals
// Forward's bit for bit, and a sampler that keeps its latent on the GPU
// moves none of it across the bus.
func (m *Model) ForwardDevice(x backend.Tensor, t float32, txt *Text) (out backend.Tensor, err error) {
	if x == nil {
		return nil, fmt.Errorf("wan: ForwardDevice: nil latent")
	}
	shape := x.Shape()
	if err := m.checkForward(shape, t, txt); err != nil {
		return nil, err
	}
	if dt := x.DType(); dt != tensor.F32 && dt != tensor.BF16 {
		return nil, fmt.Errorf("wan: latent dtype %v: want float32 or bfloat16", dt)
	}
	defer backend.Recover(&err)
	be, c, dt := m.be, m.Config, m.Opt.DType
	sc := be.Begin()
	defer sc.End()
	C, T, H, W := shape[0], shape[1], shape[2], shape[3]
	Hp, Wp := H/2, W/2
	// patchify: (c, t, hp, kh, wp, kw) → token (t, hp, wp), feature (c, kh, kw).
	p := be.Reshape(be.Permute(be.Reshape(x, C, T, Hp, 2, Wp, 2), 1, 2, 4, 0, 3, 5), T*Hp*Wp, c.PatchDim())
	if p.DType() != dt {
		p = be.Cast(p, dt)
	}
	y := m.forward(p, T, H, W, t, txt)
	// unpatchify: token (t, hp, wp), feature (kh, kw, c) → (c, t, hp, kh, wp, kw).
	out = be.Reshape(be.Permute(be.Reshape(y, T, Hp, Wp, 2, 2, c.OutDim), 5, 0, 1, 3, 2, 4), c.OutDim, T, H, W)
	sc.Keep(out)
	return out, nil
}

// checkForward checks a forward's latent shape, timestep and text context.
func (m *Model) checkForward(shape []int, t float32, txt *Text) error {
	if m == nil || m.be == nil {
		return fmt.Errorf("wan: Forward on a freed or nil model")
	}
	c := m.Config
	if len(shape) != 4 || shape[0] != c.InDim || shape[1] <= 0 || shape[2] <= 0 || shape[3] <= 0 || shape[2]%2 != 0 || shape[3]%2 != 0 {
		return fmt.Errorf("wan: latent shape %v: want [%d, T, H, W] with T ≥ 1 and H, W positive and even", shape, c.InDim)
	}
	if txt == nil || txt.m != m || txt.freed {
		return fmt.Errorf("wan: text context missing, freed, or embedded by another model")
	}
	if math.IsNaN(float64(t)) || math.IsInf(float64(t), 0) {
		return fmt.Errorf("wan: timestep %v is not finite", t)
	}
	return nil
}

// forward runs the network on patchified tokens p [T·H/2·W/2, PatchDim]
// in the model dtype and returns the head output [L, 4·OutDim] F32, in the
// caller's scope.
func (m *Model) forward(p backend.Tensor, T, H, W int, t float32, txt *Text) backend.Tensor {
	be, dt, c, D := m.be, m.Opt.DType, m.Config, m.Config.Dim
	Hp, Wp := H/2, W/2
	xs := m.apply(m.patch, p)
	m.hook("patch_embedding", xs)

	e, e0 := m.timeEmbedding(t)
	e06 := be.Reshape(e0, 6, D)
	ang := m.angles(T, Hp, Wp)
	// Each block also returns the next block's modulated input norm, so the
	// residual update and that norm run as one fused op where the backend
	// has it (addNorm).
	v := m.blockMods(0, e06)
	s := &stream{x: xs, a: m.normAct(xs, v[0], v[1], dt)}
	fetch := m.newFetcher() // offload: every block's Linear weights, one block ahead
	fetch.start()
	for i := range m.blocks {
		var nv []backend.Tensor
		if i+1 < len(m.blocks) {
			nv = m.blockMods(i+1, e06)
		}
		fetch.wait(i)
		m.block(i, s, v, nv, ang, txt)
		fetch.next(i)
		v = nv
		m.hook(fmt.Sprintf("blocks.%d", i), s.x)
	}
	xs = s.x

	// Head (fp32 region): LN output in the model dtype, then modulation and
	// the Linear in float32.
	mh := be.Add(m.headMod, be.Reshape(e, D)) // [2, D]
	shift, scale := be.Reshape(be.Slice(mh, 0, 0, 1), D), be.Reshape(be.Slice(mh, 0, 1, 2), D)
	n := be.LayerNorm(xs, nil, nil, c.Eps, dt)
	if dt != tensor.F32 {
		n = be.Cast(n, tensor.F32)
	}
	y := m.apply(m.head, be.Modulate(n, shift, scale))
	m.hook("head", y)
	return y
}

// angles returns the RoPE angle table of a token grid, uploaded once per
// grid shape: a sampler calls Forward with the same shape every step.
func (m *Model) angles(T, Hp, Wp int) backend.Tensor {
	key := [3]int{T, Hp, Wp}
	if m.rope == nil || m.ropeKey != key {
		if m.rope != nil {
			m.be.Free(m.rope)
			m.rope = nil
		}
		m.rope = m.be.Upload(tensor.F32, []int{T * Hp * Wp, m.Config.HeadDim / 2}, ropeAngles(T, Hp, Wp, m.Config.HeadDim))
		m.be.Persist(m.rope) // a cache across calls, freed with the model
		m.ropeKey = key
	}
	return m.rope
}

// timeEmbedding returns e [1, D] and e0 [1, 6D], both float32.
func (m *Model) timeEmbedding(t float32) (e, e0 backend.Tensor) {
	be, c := m.be, m.Config
	sin := be.Upload(tensor.F32, []int{1, c.FreqDim}, timestepSinusoid(modelTimestep(t, m.Opt.DType), c.FreqDim))
	e = m.apply(m.time2, be.SiLU(m.apply(m.time0, sin)))
	m.hook("time_embedding", e)
	p := m.apply(m.tproj, be.SiLU(e))
	m.hook("time_projection", p)
	return e, p
}

// blockMods returns block i's six modulation vectors [D] (F32: the time
// projection e0 [6, D] plus the block's modulation).
func (m *Model) blockMods(i int, e0 backend.Tensor) []backend.Tensor {
	be, D := m.be, m.Config.Dim
	mod := be.Add(e0, m.blocks[i].mod) // [6, D] F32
	v := make([]backend.Tensor, 6)
	for k := range v {
		v[k] = be.Reshape(be.Slice(mod, 0, k, k+1), D)
	}
	return v
}

// stream is the state the blocks carry: the residual stream x and its
// normed activation a, the input of the next sublayer.
type stream struct {
	x backend.Tensor
	a act
}

// advance replaces s by f(s), run in a scope of its own: what f allocates
// besides its result is freed when it returns, and so is the old state
// (loop-carried, so no scope can own it). The peak is thus one sublayer's
// activations.
func (m *Model) advance(s *stream, f func(x backend.Tensor, a act) (backend.Tensor, act)) {
	x, a := func() (x backend.Tensor, a act) {
		sc := m.be.Begin()
		defer func() { sc.End(x, a.t, a.q, a.s) }()
		return f(s.x, s.a)
	}()
	m.be.Free(s.x)
	m.freeAct(s.a)
	s.x, s.a = x, a
}

// block runs transformer block i (docs/NUMERICS.md §3.5) on s, whose a is the
// block's modulated norm of x, given its modulation vectors v. When next
// (the next block's modulation vectors) is non-nil, it leaves that block's
// a in s.
func (m *Model) block(i int, s *stream, v, next []backend.Tensor, ang backend.Tensor, txt *Text) {
	be, c, dt, b := m.be, m.Config, m.Opt.DType, m.blk(i)

	// x1 = x + self_attn(a)·gate, x3 = norm3(x1).
	m.advance(s, func(x backend.Tensor, a act) (backend.Tensor, act) {
		y := m.selfAttention(i, b, a, ang)
		m.hook(fmt.Sprintf("blocks.%d.self_attn", i), y)
		return m.addNormAct(x, y, v[2], b.norm3W, b.norm3B, nil, nil, dt)
	})
	// x2 = x1 + cross_attn(x3) over the text context (dense, unmasked),
	// f = modulated LN(x2).
	m.advance(s, func(x1 backend.Tensor, x3 act) (backend.Tensor, act) {
		co := backend.Scoped(be, func() backend.Tensor {
			q := be.RMSNorm(m.applyAct(b.cq, x3), b.cNormQ, c.Eps, m.Opt.Norm)
			return m.apply(b.co, be.Attention(q, txt.k[i], txt.v[i], c.Heads, attnScale(c)))
		})
		return m.addNormAct(x1, co, nil, nil, nil, v[3], v[4], dt)
	})
	// out = x2 + ffn(f)·gate, and the next block's normed input.
	m.advance(s, func(x2 backend.Tensor, f act) (backend.Tensor, act) {
		h2 := backend.Scoped(be, func() backend.Tensor { return m.applyAct(b.ffn2, m.linearGELUAct(b.ffn0, f)) })
		if next != nil {
			return m.addNormAct(x2, h2, v[5], nil, nil, next[0], next[1], dt)
		}
		return be.GatedAdd(x2, h2, v[5]), act{}
	})
}

func attnScale(c Config) float32 { return float32(1 / math.Sqrt(float64(c.HeadDim))) }

// selfAttention is q/k/v projection, full-width RMSNorm of q and k, 3D RoPE,
// the configured attention op and the output projection.
func (m *Model) selfAttention(i int, b *block, a act, ang backend.Tensor) backend.Tensor {
	// q, k, v go as soon as the attention op has read them.
	o := backend.Scoped(m.be, func() backend.Tensor { return m.attention(i, b, a, ang) })
	return m.apply(b.so, o)
}

// qk is a query or key projection with its full-width RMSNorm and RoPE.
func (m *Model) qk(a act, l linear, norm, ang backend.Tensor) backend.Tensor {
	be, c := m.be, m.Config
	return backend.Scoped(be, func() backend.Tensor {
		p := m.applyAct(l, a)
		if f, ok := be.(rmsNormRoPEer); ok {
			return f.RMSNormRoPE(p, norm, c.Eps, m.Opt.Norm, ang, c.Heads)
		}
		return be.RoPE(be.RMSNorm(p, norm, c.Eps, m.Opt.Norm), ang, c.Heads)
	})
}

// attention is the self-attention core: q, k, v and the configured
// attention op.
func (m *Model) attention(i int, b *block, a act, ang backend.Tensor) backend.Tensor {
	be, c := m.be, m.Config
	q, k := m.qk(a, b.sq, b.sNormQ, ang), m.qk(a, b.sk, b.sNormK, ang)
	v := m.applyAct(b.sv, a)
	m.hook(fmt.Sprintf("blocks.%d.self_attn.q", i), q)
	m.hook(fmt.Sprintf("blocks.%d.self_attn.k", i), k)
	var o backend.Tensor
	if m.Opt.Attention == backend.Dense {
		o = be.Attention(q, k, v, c.Heads, attnScale(c))
	} else {
		cfg := backend.SLAConfig{Kind: m.Opt.Attention, TopK: m.Opt.TopK, BlockQ: m.Opt.BlockQ, BlockK: m.Opt.BlockK}
		if bm, ok := m.BlockMaps[i]; ok {
			cfg.BlockMap = bm
		}
		o = be.SparseLinearAttention(q, k, v, c.Heads, cfg, b.projW, b.projB)
	}
	return o
}

// linearGELUer is an optional fused op: GELU(tanh) applied to a Linear's
// float32 result before its one rounding (the CUDA backend has it, in
// cuBLASLt's epilogue).
type linearGELUer interface {
	LinearGELU(x, w, bias backend.Tensor) backend.Tensor
}

// linearGELU is GELU_tanh(l(x)), fused where the backend can and the options
// allow: the fusion skips the reference's bf16 rounding of l(x), a
// difference at the level of the GEMM's own summation order (golden test:
// same tolerance), for one less pass over the largest activation.
func (m *Model) linearGELU(l linear, x backend.Tensor) backend.Tensor {
	if f, ok := m.be.(linearGELUer); ok && l.scale == nil && !m.Opt.ExactRounding && x.DType() == tensor.BF16 {
		return f.LinearGELU(x, l.w, l.b)
	}
	return m.be.GELUTanh(m.apply(l, x))
}

// rmsNormRoPEer is an optional fused op: RoPE(RMSNorm(x)) with the same
// roundings as the two ops (the CUDA backend has it).
type rmsNormRoPEer interface {
	RMSNormRoPE(x, w backend.Tensor, eps float32, mode backend.NormMode, angles backend.Tensor, heads int) backend.Tensor
}

// addLayerNormer is an optional fused op: a residual update and the
// LayerNorm that reads it in one pass, equal to the separate ops (the CUDA
// backend has it).
type addLayerNormer interface {
	AddLayerNorm(x, y, gate, w, bias, shift, scale backend.Tensor, eps float32) (sum, normed backend.Tensor)
}

// addNorm returns sum = x + y (x + y·gate with the reference's roundings
// when gate is non-nil) and normed = LayerNorm(sum, w, bias) in dt, or, with
// shift and scale, the modulated LayerNorm of normModulate.
func (m *Model) addNorm(x, y, gate, w, bias, shift, scale backend.Tensor, dt tensor.DType) (sum, normed backend.Tensor) {
	if f, ok := m.be.(addLayerNormer); ok && x.DType() == dt {
		return f.AddLayerNorm(x, y, gate, w, bias, shift, scale, m.Config.Eps)
	}
	if gate != nil {
		sum = m.be.GatedAdd(x, y, gate)
	} else {
		sum = m.be.Add(x, y)
	}
	if shift != nil {
		return sum, m.normModulate(sum, shift, scale, dt)
	}
	return sum, m.be.LayerNorm(sum, w, bias, m.Config.Eps, dt)
}

// layerNormModulator is an optional fused op: LayerNorm without affine
// rounded to x's dtype, then Modulate, in one pass (the CUDA backend has it).
type layerNormModulator interface {
	LayerNormModulate(x, shift, scale backend.Tensor, eps float32) backend.Tensor
}

// normModulate is bf16(LN(x))·(1+scale)+shift, fused where the backend can.
func (m *Model) normModulate(x, shift, scale backend.Tensor, dt tensor.DType) backend.Tensor {
	if f, ok := m.be.(layerNormModulator); ok && x.DType() == dt {
		return f.LayerNormModulate(x, shift, scale, m.Config.Eps)
	}
	return m.be.Modulate(m.be.LayerNorm(x, nil, nil, m.Config.Eps, dt), shift, scale)
}

// int8ActOps are the optional W8A8 ops whose activations travel quantised
// (the CUDA backend has them): the modulated LayerNorm, with or without
// the residual update, returning int8 codes and 128×128 tile scales;
// Int8Linear on such codes; and Int8Linear → GELU → quantiser in one op.
// Each equals the unfused ops bit for bit, so the model's output does not
// depend on whether they are used.
type int8ActOps interface {
	AddLayerNormInt8(x, y, gate, w, bias, shift, scale backend.Tensor, eps float32) (sum, q, s backend.Tensor)
	Int8LinearQ(q, s, w, scale, bias backend.Tensor) backend.Tensor
	Int8LinearGELUQ(q, s, w, scale, bias backend.Tensor) (q2, s2 backend.Tensor)
}

// act is a normed activation that feeds block Linears: bf16 rows t, or,
// with int8ActOps and an int8 checkpoint, their int8 codes q and scales s.
type act struct{ t, q, s backend.Tensor }

func (m *Model) freeAct(a act) {
	for _, t := range []backend.Tensor{a.t, a.q, a.s} {
		if t != nil {
			m.be.Free(t)
		}
	}
}

// int8Acts returns the backend's int8ActOps when the block activations
// should travel quantised: every block Linear is an Int8Linear (an int8
// checkpoint) and the model runs in bf16.
func (m *Model) int8Acts() (int8ActOps, bool) {
	f, ok := m.be.(int8ActOps)
	return f, ok && m.Info.Quantized && m.Opt.DType == tensor.BF16
}

// applyAct runs a block Linear on a normed activation.
func (m *Model) applyAct(l linear, a act) backend.Tensor {
	if a.q != nil {
		if l.scale == nil {
			backend.Fail("wan: a quantised activation reached a float Linear")
		}
		return m.be.(int8ActOps).Int8LinearQ(a.q, a.s, l.w, l.scale, l.b)
	}
	return m.apply(l, a.t)
}

// linearGELUAct is GELU(l(x)) as the input of the FFN's second Linear.
func (m *Model) linearGELUAct(l linear, a act) act {
	if a.q != nil {
		q, s := m.be.(int8ActOps).Int8LinearGELUQ(a.q, a.s, l.w, l.scale, l.b)
		return act{q: q, s: s}
	}
	return act{t: m.linearGELU(l, a.t)}
}

// normAct is normModulate, quantised where int8Acts says so.
func (m *Model) normAct(x, shift, scale backend.Tensor, dt tensor.DType) act {
	if f, ok := m.int8Acts(); ok {
		_, q, s := f.AddLayerNormInt8(x, nil, nil, nil, nil, shift, scale, m.Config.Eps)
		return act{q: q, s: s}
	}
	return act{t: m.normModulate(x, shift, scale, dt)}
}

// addNormAct is addNorm, with the normed result quantised where int8Acts
// says so.
func (m *Model) addNormAct(x, y, gate, w, bias, shift, scale backend.Tensor, dt tensor.DType) (backend.Tensor, act) {
	if f, ok := m.int8Acts(); ok {
		sum, q, s := f.AddLayerNormInt8(x, y, gate, w, bias, shift, scale, m.Config.Eps)
		return sum, act{q: q, s: s}
	}
	sum, n := m.addNorm(x, y, gate, w, bias, shift, scale, dt)
	return sum, act{t: n}
}
