package wanvae

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
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

// loader reads and checks tensors, collecting absent keys so a wrong file is
// reported with all of them at once.
type loader struct {
	f       checkpoint.File
	b       backend.VAE
	dt      tensor.DType
	prefix  string
	missing []string
	err     error
	// dry checks names and shapes only (no reads, no uploads).
	dry bool
	// used records every name read, so tests can check nothing is ignored.
	used map[string]bool
	// uploaded lists the tensors made, to free them with the VAE or on error.
	uploaded []backend.Tensor
	// specs, when set, collects every tensor's name and stored shape instead
	// of reading anything (Tensors).
	specs *[]checkpoint.Info
}

// tensor reads key, checks its element layout against want and uploads it
// with shape up (the shape the ops use).
func (l *loader) tensor(key string, want []int, up []int) backend.Tensor {
	if l.err != nil {
		return nil
	}
	name := l.prefix + key
	if l.specs != nil {
		*l.specs = append(*l.specs, checkpoint.Info{Name: name, DType: tensor.F32, Shape: want})
		return nil
	}
	if l.used != nil {
		l.used[name] = true
	}
	info, ok := l.f.Info(name)
	if !ok {
		l.missing = append(l.missing, name)
		return nil
	}
	if !backend.SameShape(info.Shape, want) {
		l.err = fmt.Errorf("%s: tensor %q: want shape %v, got %v", l.f.Path(), name, want, info.Shape)
		return nil
	}
	if l.dry {
		return nil
	}
	data, err := l.f.Float32(name)
	if err != nil {
		l.err = err
		return nil
	}
	if len(l.missing) > 0 {
		return nil // the load fails anyway; do not upload
	}
	t := l.b.Upload(l.dt, up, data)
	l.uploaded = append(l.uploaded, t)
	return t
}

func (l *loader) conv3(key string, cout, cin, k int) *conv {
	return &conv{
		w: l.tensor(key+".weight", []int{cout, cin, k, k, k}, []int{cout, cin, k, k, k}),
		b: l.tensor(key+".bias", []int{cout}, []int{cout}),
	}
}

func (l *loader) conv2(key string, cout, cin, k int) *conv {
	return &conv{
		w: l.tensor(key+".weight", []int{cout, cin, k, k}, []int{cout, cin, 1, k, k}),
		b: l.tensor(key+".bias", []int{cout}, []int{cout}),
	}
}

func (l *loader) timeConv(key string, cout, cin int) *conv {
	return &conv{
		w: l.tensor(key+".weight", []int{cout, cin, 3, 1, 1}, []int{cout, cin, 3, 1, 1}),
		b: l.tensor(key+".bias", []int{cout}, []int{cout}),
	}
}

// gamma reads an RMS_norm scale stored [C,1,1,1] (3-D) or [C,1,1] (2-D).
func (l *loader) gamma(key string, c int, images bool) backend.Tensor {
	want := []int{c, 1, 1, 1}
	if images {
		want = []int{c, 1, 1}
	}
	return l.tensor(key+".gamma", want, []int{c})
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

// Load reads a Wan2.1 VAE state dict (Wan2.1_VAE.pth, or any file whose keys
// carry a common prefix) onto b in dtype dt: F32 (the original Wan) or BF16
// (TurboDiffusion casts the whole VAE to bf16). The architecture is detected
// from tensor shapes; a file that is not a Wan2.1 VAE is an error naming the
// missing keys.
func Load(f checkpoint.File, b backend.VAE, dt tensor.DType) (v *VAE, err error) {
	defer backend.Recover(&err)
	if dt != tensor.F32 && dt != tensor.BF16 {
		return nil, fmt.Errorf("wanvae: compute dtype must be float32 or bfloat16, got %v", dt)
	}
	return load(&loader{f: f, b: b, dt: dt})
}

// load builds the model from l's file; with l.dry it only checks names and
// shapes (l.b may then be nil).
func load(l *loader) (*VAE, error) {
	prefix, cfg, err := detect(l.f)
	if err != nil {
		return nil, err
	}
	l.prefix = prefix
	return build(l, cfg)
}

// Tensors lists the state-dict entries (name and shape, float32 as
// Wan2.1_VAE.pth stores them) of a Wan2.1 VAE of configuration cfg: what
// benchmarks and tests build random stand-ins from.
func Tensors(cfg Config) []checkpoint.Info {
	var specs []checkpoint.Info
	build(&loader{specs: &specs}, cfg)
	return specs
}

// build makes the module tree of cfg from l (or only lists it, l.specs).
func build(l *loader, cfg Config) (*VAE, error) {
	f, b, dt := l.f, l.b, l.dt
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
	if l.specs != nil {
		return nil, nil
	}

	if l.err == nil && len(l.missing) > 0 {
		l.err = missingError(f.Path(), l.missing)
	}
	if l.err != nil {
		for _, t := range l.uploaded {
			b.Free(t)
		}
		return nil, l.err
	}
	v.weights = l.uploaded
	return v, nil
}
