package wan

import (
	"fmt"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// LinearMode chooses how block Linears run.
type LinearMode int

const (
	// LinearAuto follows the checkpoint: Int8Linear for a -quant file, float
	// otherwise.
	LinearAuto LinearMode = iota
	// LinearFloat requires float weights.
	LinearFloat
	// LinearInt8 requires an int8-quantised checkpoint (TurboDiffusion's
	// --quant_linear).
	LinearInt8
)

// Options are the run-time choices of a loaded model.
type Options struct {
	// DType is the model dtype: BF16 (TurboDiffusion inference; the default)
	// or F32 (every weight upcast, the precise reference).
	DType tensor.DType
	// Attention is the self-attention kind (cross-attention is always dense).
	Attention backend.AttentionKind
	// TopK is the SLA fraction of key blocks kept (default 0.1, TD's default).
	TopK float64
	// BlockQ, BlockK are SLA block sizes; 0 picks the kind's default
	// (SLA 128/64, SageSLA 64/128 as on sm90).
	BlockQ, BlockK int
	// Norm selects the in-block RMSNorm rounding: NormFast is TD's inference
	// default, NormDefault is --default_norm.
	Norm backend.NormMode
	// Linear selects float or Int8 block Linears.
	Linear LinearMode
	// HeadDim is the attention head width of a checkpoint without SLA
	// proj_l weights (0: DefaultHeadDim, 128, as every released Wan). A
	// file with proj_l carries its head width; a different value is an
	// error.
	HeadDim int
	// ExactRounding rounds every intermediate where the reference does, and
	// so turns off fusions that skip a bf16 rounding (today: the FFN's GELU
	// applied to the GEMM's float32 result, on backends with LinearGELU).
	ExactRounding bool
	// LoRA adapters are merged into the weights at load (lora.go); they
	// must stay open while the model may merge again (SetLoRA).
	LoRA []*lora.Adapter
	// LoRALenient skips LoRA keys that match no parameter (listed in
	// Model.LoRAWarnings) instead of failing.
	LoRALenient bool
	// Offload keeps the blocks' Linear weights in host memory and streams
	// them to the device one block ahead of use (offload.go).
	Offload bool
}

// linear is one Linear layer's weights; scale is non-nil for Int8Linear.
type linear struct{ w, b, scale backend.Tensor }

// block holds one transformer block's weights.
type block struct {
	mod            backend.Tensor // F32 [6, D]
	sq, sk, sv, so linear
	sNormQ, sNormK backend.Tensor // F32 [D]
	projW, projB   backend.Tensor // SLA proj_l, nil in dense mode
	norm3W, norm3B backend.Tensor // F32 [D]
	cq, ck, cv, co linear
	cNormQ, cNormK backend.Tensor // F32 [D]
	ffn0, ffn2     linear
}

// Model is a loaded Wan DiT on one backend.
type Model struct {
	Config Config
	Info   FileInfo
	Opt    Options

	// Hook, when set, sees named intermediate activations during EmbedText
	// and Forward (see the names in forward.go). The tensor is valid only
	// during the call. For tests and debugging.
	Hook func(name string, t backend.Tensor)
	// BlockMaps, when set, overrides the SLA block selection of a layer
	// (layout of backend.SLAConfig.BlockMap). For tests against the oracle.
	BlockMaps map[int][]int8
	// LoRAWarnings lists LoRA keys skipped under Options.LoRALenient.
	LoRAWarnings []string

	base  *lora.Set // Options.LoRA, bound to this model
	extra *lora.Set // merged by SetLoRA on top of base
	off   *offload  // Options.Offload's streamed weights, nil without

	be                  backend.DiT
	patch               linear
	text0, text2        linear
	time0, time2, tproj linear
	head                linear
	headMod             backend.Tensor // F32 [2, D]
	blocks              []block
	rope                backend.Tensor // cached RoPE angles for grid ropeKey
	ropeKey             [3]int
}

// withDefaults fills zero options and checks them against the file.
func (o Options) withDefaults(fi FileInfo) (Options, error) {
	if o.DType == tensor.Invalid {
		o.DType = tensor.BF16
	}
	if o.DType != tensor.BF16 && o.DType != tensor.F32 {
		return o, fmt.Errorf("wan: model dtype must be bfloat16 or float32, got %v", o.DType)
	}
	switch o.Attention {
	case backend.Dense:
	case backend.SLA, backend.SageSLA:
		if o.TopK == 0 {
			o.TopK = 0.1
		}
		if !(o.TopK > 0 && o.TopK <= 1) {
			return o, fmt.Errorf("wan: SLA top-k fraction %g must be in (0, 1]", o.TopK)
		}
		dq, dk := 128, 64
		if o.Attention == backend.SageSLA {
			dq, dk = 64, 128
		}
		if o.BlockQ == 0 {
			o.BlockQ = dq
		}
		if o.BlockK == 0 {
			o.BlockK = dk
		}
		if o.BlockQ <= 0 || o.BlockK <= 0 {
			return o, fmt.Errorf("wan: SLA block sizes %d×%d must be positive", o.BlockQ, o.BlockK)
		}
		if !fi.ProjL {
			return o, fmt.Errorf("%s attention needs the SLA proj_l weights (blocks.N.%s.*), which this checkpoint does not have; use dense attention", o.Attention, projLPrefix)
		}
	default:
		return o, fmt.Errorf("wan: unknown attention kind %d", o.Attention)
	}
	if o.Norm != backend.NormFast && o.Norm != backend.NormDefault {
		return o, fmt.Errorf("wan: unknown norm mode %d", o.Norm)
	}
	switch o.Linear {
	case LinearAuto:
	case LinearFloat:
		if fi.Quantized {
			return o, fmt.Errorf("float linears requested, but the checkpoint is int8-quantised (a -quant file); use its non-quantised release")
		}
	case LinearInt8:
		if !fi.Quantized {
			return o, fmt.Errorf("int8 linears requested, but the checkpoint is not quantised (no *.int8_weight tensors); use a -quant checkpoint")
		}
	default:
		return o, fmt.Errorf("wan: unknown linear mode %d", o.Linear)
	}
	if fi.Quantized && o.DType != tensor.BF16 {
		return o, fmt.Errorf("an int8-quantised checkpoint runs only in bfloat16 (Int8Linear takes bf16 activations), not %v", o.DType)
	}
	return o, nil
}

// Load detects the checkpoint's architecture, validates it and uploads its
// weights to be one tensor at a time (the host copy of each is dropped once
// uploaded). Linear weights get the model dtype; norm weights and
// modulation vectors are kept in float32, as TurboDiffusion's fp32 norm
// buffers and fp32 modulation arithmetic need. opt.LoRA is merged into the
// weights on the way (lora.go).
func Load(be backend.DiT, f checkpoint.File, opt Options) (m *Model, err error) {
	fi, err := DetectConfigWith(f, DetectOptions{HeadDim: opt.HeadDim})
	if err != nil {
		return nil, err
	}
	opt, err = opt.withDefaults(fi)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	m = &Model{Config: fi.Config, Info: fi, Opt: opt, be: be}
	m.blocks = make([]block, fi.Config.Layers)
	if opt.Offload {
		st, err := checkOffload(be)
		if err != nil {
			return nil, err
		}
		m.off = &offload{st: st, host: make([][numLinears][2]backend.HostTensor, fi.Config.Layers)}
	}
	ps := m.params()
	if m.base, m.LoRAWarnings, err = m.bindLoRA(f, ps, opt.LoRA); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Free()
			m = nil
		}
	}()
	defer backend.Recover(&err)
	ld := m.loader(be, f, m.base)
	for _, p := range ps {
		if i, l, ok := m.streamed(p); ok {
			m.off.host[i][l][0], m.off.host[i][l][1] = ld.loadHost(m.off.st, p)
			continue
		}
		ld.load(p)
	}
	if m.off != nil {
		m.allocSlots()
	}
	return m, nil
}

// param is one weight of the model: the checkpoint tensor it comes from,
// where it goes and how it is stored on the backend.
type param struct {
	// name is the checkpoint tensor; for an int8-quantised Linear weight it
	// is <prefix>.weight, stored in the file as <prefix>.int8_weight and
	// <prefix>.scale.
	name  string
	dst   *backend.Tensor
	scale *backend.Tensor // the scales of a quantised Linear weight, else nil
	dt    tensor.DType
	shape []int // upload shape; nil keeps the file's
}

// params lists every weight Load uploads, in load order.
func (m *Model) params() []param {
	c, dt := m.Config, m.Opt.DType
	var ps []param
	add := func(name string, dst *backend.Tensor, dt tensor.DType, shape ...int) {
		ps = append(ps, param{name: name, dst: dst, dt: dt, shape: shape})
	}
	lin := func(prefix string, l *linear) {
		add(prefix+".weight", &l.w, dt)
		add(prefix+".bias", &l.b, dt)
	}
	add("patch_embedding.weight", &m.patch.w, dt, c.Dim, c.PatchDim())
	add("patch_embedding.bias", &m.patch.b, dt)
	lin("text_embedding.0", &m.text0)
	lin("text_embedding.2", &m.text2)
	lin("time_embedding.0", &m.time0)
	lin("time_embedding.2", &m.time2)
	lin("time_projection.1", &m.tproj)
	lin("head.head", &m.head)
	add("head.modulation", &m.headMod, tensor.F32, 2, c.Dim)
	for i := range m.blocks {
		p := fmt.Sprintf("blocks.%d.", i)
		b := &m.blocks[i]
		add(p+"modulation", &b.mod, tensor.F32, 6, c.Dim)
		for _, bl := range []struct {
			name string
			l    *linear
		}{
			{"self_attn.q", &b.sq}, {"self_attn.k", &b.sk}, {"self_attn.v", &b.sv}, {"self_attn.o", &b.so},
			{"cross_attn.q", &b.cq}, {"cross_attn.k", &b.ck}, {"cross_attn.v", &b.cv}, {"cross_attn.o", &b.co},
			{"ffn.0", &b.ffn0}, {"ffn.2", &b.ffn2},
		} {
			if m.Info.Quantized {
				ps = append(ps, param{name: p + bl.name + ".weight", dst: &bl.l.w, scale: &bl.l.scale, dt: tensor.I8})
				add(p+bl.name+".bias", &bl.l.b, tensor.BF16)
			} else {
				lin(p+bl.name, bl.l)
			}
		}
		add(p+"self_attn.norm_q.weight", &b.sNormQ, tensor.F32)
		add(p+"self_attn.norm_k.weight", &b.sNormK, tensor.F32)
		add(p+"cross_attn.norm_q.weight", &b.cNormQ, tensor.F32)
		add(p+"cross_attn.norm_k.weight", &b.cNormK, tensor.F32)
		add(p+"norm3.weight", &b.norm3W, tensor.F32)
		add(p+"norm3.bias", &b.norm3B, tensor.F32)
		if m.Opt.Attention != backend.Dense {
			// proj_l runs under bf16 autocast in the reference, also in the fp32 model.
			add(p+projLPrefix+".weight", &b.projW, tensor.BF16)
			add(p+projLPrefix+".bias", &b.projB, tensor.BF16)
		}
	}
	return ps
}

// loader uploads checkpoint tensors through a bind.Binder, merging LoRA
// deltas, failing with backend.Fail on errors. file holds every tensor's
// stored shape (DetectConfig has checked them against the file).
type loader struct {
	be   backend.DiT
	f    checkpoint.File
	lora *lora.Set
	file map[string][]int
}

// loader binds m's weights from f onto be, merging ls.
func (m *Model) loader(be backend.DiT, f checkpoint.File, ls *lora.Set) *loader {
	file := map[string][]int{}
	for _, s := range expectedTensors(m.Config, m.Info.layout()) {
		file[s.name] = s.shape
	}
	return &loader{be: be, f: f, lora: ls, file: file}
}

// binder reads from l's file onto to.
func (l *loader) binder(to bind.Uploader) *bind.Binder {
	return &bind.Binder{File: l.f, To: to, What: "Wan DiT"}
}

// must fails with b's error, if any.
func must(b *bind.Binder) {
	if err := b.Err(); err != nil {
		backend.FailErr(err)
	}
}

// load uploads one parameter into *p.dst (and *p.scale).
func (l *loader) load(p param) {
	if p.scale != nil {
		*p.dst, *p.scale = l.quantized(l.be, p.name)
		return
	}
	*p.dst = l.float(l.be, p.name, p.dt, p.shape...)
}

// loadHost is load into the streamer's host memory (a quantised weight:
// codes and scales).
func (l *loader) loadHost(st backend.Streamer, p param) (w, scale backend.HostTensor) {
	hb := &hostLoader{DiT: l.be, st: st}
	if p.scale != nil {
		l.quantized(hb, p.name)
		return hb.out[0], hb.out[1]
	}
	l.float(hb, p.name, p.dt, p.shape...)
	return hb.out[0], nil
}

// hostLoader is a backend whose uploads go to a streamer's host memory
// (and are collected in out), so loadHost shares float and quantized.
type hostLoader struct {
	backend.DiT
	st  backend.Streamer
	out []backend.HostTensor
}

func (h *hostLoader) Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	h.out = append(h.out, h.st.HostUpload(dt, shape, data))
	return nil
}

func (h *hostLoader) UploadInt8(shape []int, data []int8) backend.Tensor {
	h.out = append(h.out, h.st.HostUploadInt8(shape, data))
	return nil
}

// float uploads a float tensor to `to` as dtype dt, with shape (default:
// the file's), after adding its LoRA delta in float32: the upload rounds
// the merged value once to dt.
func (l *loader) float(to bind.Uploader, name string, dt tensor.DType, shape ...int) backend.Tensor {
	b := l.binder(to)
	stored := l.file[name]
	data := b.ReadKind(name, stored, kindFloat)
	must(b)
	if len(shape) == 0 {
		shape = stored
	}
	if _, err := l.lora.Merge(name, stored, data); err != nil {
		backend.FailErr(err)
	}
	t := b.UploadAs(dt, shape, data)
	must(b)
	return t
}

// quantized uploads an Int8Linear weight (<prefix>.weight = the file's
// <prefix>.int8_weight and .scale) to `to` as int8 codes and float32
// scales. A LoRA delta is merged as the reference's tools would:
// dequantised (code·scale in float32), delta added in float32, rounded
// once to bf16 (the merged bf16 weight), quantised again by
// quant.Quantize.
func (l *loader) quantized(to bind.Uploader, name string) (w, scale backend.Tensor) {
	b := l.binder(to)
	prefix := strings.TrimSuffix(name, ".weight")
	shape, sshape := l.file[prefix+".int8_weight"], l.file[prefix+".scale"]
	codes := b.ReadInt8(prefix+".int8_weight", shape)
	scales := b.ReadKind(prefix+".scale", sshape, kindScale)
	must(b)
	if l.lora.Touches(name) {
		n, k := shape[0], shape[1]
		wf := Dequantize(codes, scales, n, k)
		if _, err := l.lora.Merge(name, shape, wf); err != nil {
			backend.FailErr(err)
		}
		tensor.RoundBF16Slice(wf)
		var err error
		if codes, scales, err = quant.Quantize(wf, n, k); err != nil {
			backend.FailErr(err)
		}
	}
	w, scale = b.UploadInt8(shape, codes), b.UploadAs(tensor.F32, sshape, scales)
	must(b)
	return w, scale
}

// Dequantize returns the float32 weight an Int8Linear computes with:
// code · scale of its 128×128 tile, for codes [n, k] and scales
// [ceil(n/128), ceil(k/128)].
func Dequantize(codes []int8, scales []float32, n, k int) []float32 {
	_, sc := quant.ScaleShape(n, k)
	w := make([]float32, n*k)
	for r := 0; r < n; r++ {
		srow := scales[(r/quant.Block)*sc:]
		row := w[r*k : (r+1)*k]
		for c, q := range codes[r*k : (r+1)*k] {
			row[c] = float32(q) * srow[c/quant.Block]
		}
	}
	return w
}

// Free releases every weight; the model is unusable afterwards.
func (m *Model) Free() {
	if m == nil || m.be == nil {
		return
	}
	free := func(ts ...backend.Tensor) {
		for _, t := range ts {
			if t != nil {
				m.be.Free(t)
			}
		}
	}
	lin := func(ls ...linear) {
		for _, l := range ls {
			free(l.w, l.b, l.scale)
		}
	}
	if m.off != nil {
		m.off.free(m.be)
		m.off = nil
	}
	lin(m.patch, m.text0, m.text2, m.time0, m.time2, m.tproj, m.head)
	free(m.headMod, m.rope)
	for _, b := range m.blocks {
		free(b.mod, b.sNormQ, b.sNormK, b.projW, b.projB, b.norm3W, b.norm3B, b.cNormQ, b.cNormK)
		lin(b.sq, b.sk, b.sv, b.so, b.cq, b.ck, b.cv, b.co, b.ffn0, b.ffn2)
	}
	m.blocks = nil
	m.be = nil
}

// SetAttention changes the self-attention kind and SLA top-k fraction
// between forwards (a server applies each request's choice); the SLA block
// sizes return to the kind's defaults when the kind changes. A model loaded
// for dense attention has no proj_l weights, so it can only stay dense.
func (m *Model) SetAttention(kind backend.AttentionKind, topK float64) error {
	o := m.Opt
	if kind == o.Attention && (kind == backend.Dense || topK == o.TopK) {
		return nil
	}
	if kind != backend.Dense && len(m.blocks) > 0 && m.blocks[0].projW == nil {
		return fmt.Errorf("%s attention needs the SLA proj_l weights, which were not loaded (the model was loaded for dense attention)", kind)
	}
	if kind != o.Attention {
		o.BlockQ, o.BlockK = 0, 0
	}
	o.Attention, o.TopK = kind, topK
	o, err := o.withDefaults(m.Info)
	if err != nil {
		return err
	}
	m.Opt = o
	return nil
}
