package wan

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
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
// buffers and fp32 modulation arithmetic need.
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
	defer func() {
		if err != nil {
			m.Free()
			m = nil
		}
	}()
	defer backend.Recover(&err)
	ld := &loader{be: be, f: f, dt: opt.DType}
	c := fi.Config
	m.patch = linear{w: ld.float("patch_embedding.weight", ld.dt, c.Dim, c.PatchDim()), b: ld.float("patch_embedding.bias", ld.dt)}
	m.text0 = ld.linear("text_embedding.0")
	m.text2 = ld.linear("text_embedding.2")
	m.time0 = ld.linear("time_embedding.0")
	m.time2 = ld.linear("time_embedding.2")
	m.tproj = ld.linear("time_projection.1")
	m.head = ld.linear("head.head")
	m.headMod = ld.float("head.modulation", tensor.F32, 2, c.Dim)
	m.blocks = make([]block, c.Layers)
	for i := range m.blocks {
		p := fmt.Sprintf("blocks.%d.", i)
		b := &m.blocks[i]
		b.mod = ld.float(p+"modulation", tensor.F32, 6, c.Dim)
		bl := func(name string) linear { return ld.blockLinear(p+name, fi.Quantized) }
		b.sq, b.sk, b.sv, b.so = bl("self_attn.q"), bl("self_attn.k"), bl("self_attn.v"), bl("self_attn.o")
		b.cq, b.ck, b.cv, b.co = bl("cross_attn.q"), bl("cross_attn.k"), bl("cross_attn.v"), bl("cross_attn.o")
		b.ffn0, b.ffn2 = bl("ffn.0"), bl("ffn.2")
		b.sNormQ = ld.float(p+"self_attn.norm_q.weight", tensor.F32)
		b.sNormK = ld.float(p+"self_attn.norm_k.weight", tensor.F32)
		b.cNormQ = ld.float(p+"cross_attn.norm_q.weight", tensor.F32)
		b.cNormK = ld.float(p+"cross_attn.norm_k.weight", tensor.F32)
		b.norm3W = ld.float(p+"norm3.weight", tensor.F32)
		b.norm3B = ld.float(p+"norm3.bias", tensor.F32)
		if opt.Attention != backend.Dense {
			// proj_l runs under bf16 autocast in the reference, also in the fp32 model.
			b.projW = ld.float(p+projLPrefix+".weight", tensor.BF16)
			b.projB = ld.float(p+projLPrefix+".bias", tensor.BF16)
		}
	}
	return m, nil
}

// loader uploads checkpoint tensors, failing with backend.Fail on errors.
type loader struct {
	be backend.DiT
	f  checkpoint.File
	dt tensor.DType
}

// float uploads a float tensor as dtype dt, with shape (default: the file's).
func (l *loader) float(name string, dt tensor.DType, shape ...int) backend.Tensor {
	info, ok := l.f.Info(name)
	if !ok {
		backend.Fail("%s: no tensor %q", l.f.Path(), name)
	}
	if len(shape) == 0 {
		shape = info.Shape
	}
	if tensor.NumElements(shape) != tensor.NumElements(info.Shape) {
		backend.Fail("%s: tensor %q: want %v (%d values), got %v", l.f.Path(), name, shape, tensor.NumElements(shape), info.Shape)
	}
	data, err := l.f.Float32(name)
	if err != nil {
		backend.FailErr(err)
	}
	return l.be.Upload(dt, shape, data)
}

// linear uploads <prefix>.weight/.bias in the model dtype.
func (l *loader) linear(prefix string) linear {
	return linear{w: l.float(prefix+".weight", l.dt), b: l.float(prefix+".bias", l.dt)}
}

// blockLinear uploads a block Linear, as Int8Linear buffers when quantised.
func (l *loader) blockLinear(prefix string, quantized bool) linear {
	if !quantized {
		return l.linear(prefix)
	}
	name := prefix + ".int8_weight"
	info, _ := l.f.Info(name)
	codes, err := l.f.Int8(name)
	if err != nil {
		backend.FailErr(err)
	}
	return linear{
		w:     l.be.UploadInt8(info.Shape, codes),
		scale: l.float(prefix+".scale", tensor.F32),
		b:     l.float(prefix+".bias", tensor.BF16),
	}
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
	lin(m.patch, m.text0, m.text2, m.time0, m.time2, m.tproj, m.head)
	free(m.headMod, m.rope)
	for _, b := range m.blocks {
		free(b.mod, b.sNormQ, b.sNormK, b.projW, b.projB, b.norm3W, b.norm3B, b.cNormQ, b.cNormK)
		lin(b.sq, b.sk, b.sv, b.so, b.cq, b.ck, b.cv, b.co, b.ffn0, b.ffn2)
	}
	m.blocks = nil
	m.be = nil
}
