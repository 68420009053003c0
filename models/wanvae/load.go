package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// VAE is a loaded Wan2.1 VAE. Decode and Encode keep their chunk caches per
// call, so a VAE may serve several calls one after another; it is not safe
// for concurrent calls on a backend that is not.
type VAE struct {
	b   backend.VAE
	dt  tensor.DType
	cfg Config

	encConv1 *conv
	encDown  []layer
	encMid   []layer
	encHeadG backend.Tensor
	encHead  *conv
	quant    *conv // "conv1": 1x1x1 on the encoder output (2·z channels)

	postQuant *conv // "conv2": 1x1x1 on the latent
	decConv1  *conv
	decMid    []layer
	decUp     []layer
	decHeadG  backend.Tensor
	decHead   *conv

	weights []backend.Tensor // everything uploaded, for Free
	rgb     *RGBMap          // FitRGB's result, once fitted
	tile    int              // SetTiling's tile size in latent pixels; 0: untiled
}

// Free releases the weights on the backend; the VAE is unusable afterwards.
func (v *VAE) Free() {
	for _, t := range v.weights {
		v.b.Free(t)
	}
	v.weights = nil
}

// Config returns the architecture read from the checkpoint.
func (v *VAE) Config() Config { return v.cfg }

// DType is the compute dtype (F32, or BF16 as TurboDiffusion runs it).
func (v *VAE) DType() tensor.DType { return v.dt }

// conv is a convolution weight [Cout,Cin,kt,kh,kw] (2-D convs stored with
// kt=1) and its bias.
type conv struct {
	w, b backend.Tensor
}

// layer is one entry of a stage: *resBlock, *attnBlock or *resample.
type layer any

type resBlock struct {
	g1, g2   backend.Tensor
	c1, c2   *conv
	shortcut *conv // nil when Cin == Cout
}

type attnBlock struct {
	g         backend.Tensor
	qkv, proj *conv
}

type resampleMode int

const (
	up2d resampleMode = iota
	up3d
	down2d
	down3d
)

type resample struct {
	mode resampleMode
	conv *conv // spatial 3x3 conv
	time *conv // temporal (3,1,1) conv of the 3d modes
}

// loader builds the module tree from a bind.Binder, which checks every
// tensor's shape and dtype and collects absent keys so a wrong file is
// reported with all of them at once (with Binder.Specs set it lists the
// state dict instead, Tensors).
type loader struct {
	*bind.Binder
}

func (l *loader) conv3(key string, cout, cin, k int) *conv {
	return &conv{
		w: l.Tensor(key+".weight", []int{cout, cin, k, k, k}, []int{cout, cin, k, k, k}),
		b: l.Tensor(key+".bias", []int{cout}, []int{cout}),
	}
}

func (l *loader) conv2(key string, cout, cin, k int) *conv {
	return &conv{
		w: l.Tensor(key+".weight", []int{cout, cin, k, k}, []int{cout, cin, 1, k, k}),
		b: l.Tensor(key+".bias", []int{cout}, []int{cout}),
	}
}

func (l *loader) timeConv(key string, cout, cin int) *conv {
	return &conv{
		w: l.Tensor(key+".weight", []int{cout, cin, 3, 1, 1}, []int{cout, cin, 3, 1, 1}),
		b: l.Tensor(key+".bias", []int{cout}, []int{cout}),
	}
}

// gamma reads an RMS_norm scale stored [C,1,1,1] (3-D) or [C,1,1] (2-D).
func (l *loader) gamma(key string, c int, images bool) backend.Tensor {
	want := []int{c, 1, 1, 1}
	if images {
		want = []int{c, 1, 1}
	}
	return l.Tensor(key+".gamma", want, []int{c})
}

func (l *loader) res(key string, cin, cout int) *resBlock {
	r := &resBlock{
		g1: l.gamma(key+".residual.0", cin, false),
		c1: l.conv3(key+".residual.2", cout, cin, 3),
		g2: l.gamma(key+".residual.3", cout, false),
		c2: l.conv3(key+".residual.6", cout, cout, 3),
	}
	if cin != cout {
		r.shortcut = l.conv3(key+".shortcut", cout, cin, 1)
	}
	return r
}

func (l *loader) attn(key string, c int) *attnBlock {
	return &attnBlock{
		g:    l.gamma(key+".norm", c, true),
		qkv:  l.conv2(key+".to_qkv", 3*c, c, 1),
		proj: l.conv2(key+".proj", c, c, 1),
	}
}

func (l *loader) resample(key string, c int, mode resampleMode) *resample {
	r := &resample{mode: mode}
	switch mode {
	case up2d, up3d:
		r.conv = l.conv2(key+".resample.1", c/2, c, 3)
		if mode == up3d {
			r.time = l.timeConv(key+".time_conv", 2*c, c)
		}
	case down2d, down3d:
		r.conv = l.conv2(key+".resample.1", c, c, 3)
		if mode == down3d {
			r.time = l.timeConv(key+".time_conv", c, c)
		}
	}
	return r
}

// Options are the choices of a loaded VAE.
type Options struct {
	// DType is the compute dtype: BF16 (the default; TurboDiffusion casts
	// the whole VAE to bf16) or F32 (the original Wan).
	DType tensor.DType
}

// Load reads a Wan2.1 VAE state dict (Wan2.1_VAE.pth, or any file whose keys
// carry a common prefix) onto b in opt.DType. The architecture is detected
// from tensor shapes; a file that is not a Wan2.1 VAE is an error naming
// the missing keys.
func Load(b backend.VAE, f checkpoint.File, opt Options) (v *VAE, err error) {
	dt := opt.DType
	if dt == tensor.Invalid {
		dt = tensor.BF16
	}
	if dt != tensor.F32 && dt != tensor.BF16 {
		return nil, fmt.Errorf("wanvae: compute dtype must be float32 or bfloat16, got %v", dt)
	}
	l := newLoader(f, dt)
	l.To = b
	defer func() {
		if err != nil {
			l.Free()
			v = nil
		}
	}()
	defer backend.Recover(&err)
	return load(l, b)
}

// newLoader binds f's VAE tensors in dtype dt; with no Binder.To set, it
// only checks them.
func newLoader(f checkpoint.File, dt tensor.DType) *loader {
	return &loader{&bind.Binder{File: f, DType: dt, What: "Wan2.1 VAE"}}
}

// load builds the model from l's file; with no l.To it only checks names,
// shapes and dtypes (b may then be nil).
func load(l *loader, b backend.VAE) (*VAE, error) {
	prefix, cfg, err := detect(l.File)
	if err != nil {
		return nil, err
	}
	l.Prefix = prefix
	return build(l, b, cfg)
}

// Tensors lists the state-dict entries (name and shape, float32 as
// Wan2.1_VAE.pth stores them) of a Wan2.1 VAE of configuration cfg: what
// benchmarks and tests build random stand-ins from.
func Tensors(cfg Config) []checkpoint.Info {
	var specs []checkpoint.Info
	build(&loader{&bind.Binder{Specs: &specs}}, nil, cfg)
	return specs
}

// build makes the module tree of cfg on b from l (or only lists it,
// l.Specs).
func build(l *loader, b backend.VAE, cfg Config) (*VAE, error) {
	dt := l.DType
	var v *VAE
	d, z := cfg.Dim, cfg.ZDim
	v = &VAE{b: b, dt: dt, cfg: cfg}

	// Encoder: stages of dims d, 2d, 4d, 4d; downsampling after the first
	// three (spatial only, then spatial+temporal twice).
	v.encConv1 = l.conv3("encoder.conv1", d, 3, 3)
	dims := []int{d, d, 2 * d, 4 * d, 4 * d}
	modes := []resampleMode{down2d, down3d, down3d}
	idx := 0
	for s := 0; s < 4; s++ {
		in, out := dims[s], dims[s+1]
		for r := 0; r < 2; r++ {
			v.encDown = append(v.encDown, l.res(fmt.Sprintf("encoder.downsamples.%d", idx), in, out))
			in = out
			idx++
		}
		if s < 3 {
			v.encDown = append(v.encDown, l.resample(fmt.Sprintf("encoder.downsamples.%d", idx), out, modes[s]))
			idx++
		}
	}
	c := 4 * d
	v.encMid = []layer{l.res("encoder.middle.0", c, c), l.attn("encoder.middle.1", c), l.res("encoder.middle.2", c, c)}
	v.encHeadG = l.gamma("encoder.head.0", c, false)
	v.encHead = l.conv3("encoder.head.2", 2*z, c, 3)
	v.quant = l.conv3("conv1", 2*z, 2*z, 1)

	// Decoder: stages of dims 4d, 4d, 2d, d with three residual blocks each;
	// every upsampling halves the channels, so a stage after one starts at
	// half the previous width.
	v.postQuant = l.conv3("conv2", z, z, 1)
	v.decConv1 = l.conv3("decoder.conv1", c, z, 3)
	v.decMid = []layer{l.res("decoder.middle.0", c, c), l.attn("decoder.middle.1", c), l.res("decoder.middle.2", c, c)}
	udims := []int{4 * d, 4 * d, 4 * d, 2 * d, d}
	umodes := []resampleMode{up3d, up3d, up2d}
	idx = 0
	for s := 0; s < 4; s++ {
		in, out := udims[s], udims[s+1]
		if s > 0 {
			in /= 2
		}
		for r := 0; r < 3; r++ {
			v.decUp = append(v.decUp, l.res(fmt.Sprintf("decoder.upsamples.%d", idx), in, out))
			in = out
			idx++
		}
		if s < 3 {
			v.decUp = append(v.decUp, l.resample(fmt.Sprintf("decoder.upsamples.%d", idx), out, umodes[s]))
			idx++
		}
	}
	v.decHeadG = l.gamma("decoder.head.0", d, false)
	v.decHead = l.conv3("decoder.head.2", 3, d, 3)
	if l.Specs != nil {
		return nil, nil
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	v.weights = l.Uploaded()
	return v, nil
}
