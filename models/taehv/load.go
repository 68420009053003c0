// Package taehv is the tiny video autoencoder TAEHV (madebyollin/taehv, MIT)
// in its TAEW2.1 layout: a small convolutional decoder from Wan2.1's
// 16-channel latents to RGB in [0, 1] (8x space, 4x time), and its encoder.
// It decodes the DiT's latent as it is, without the Wan VAE's mean/std
// un-normalisation, at a small fraction of the Wan VAE's cost: the quality
// of a preview or a fast draft, not of the Wan VAE.
//
// The network is a chain of 3x3 convolutions, ReLUs and "memory blocks"
// that also see their input's previous frame. Decode runs it over all
// frames at once (TAEHV's parallel mode); Stream runs it one latent frame
// at a time (the sequential mode, for previews), carrying each memory
// block's last input frame; both give the same frames.
package taehv

import (
	"fmt"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Released weight files (huggingface.co/madebyollin/taehv; the repository
// github.com/madebyollin/taehv holds the same files).
const (
	WeightsFile            = "taew2_1.pth"
	WeightsFileSafetensors = "taew2_1.safetensors"
	Source                 = "https://huggingface.co/madebyollin/taehv"
)

// Architecture of the TAEW2.1 layout (taehv.py's TAEHV defaults with
// latent_channels 16 and patch_size 1).
const (
	ImageChannels = 3
	// SpatialFactor and TemporalFactor: a latent [16,T,H,W] decodes to
	// 4T−FramesToTrim frames of 8H×8W.
	SpatialFactor  = 8
	TemporalFactor = 4
	// FramesToTrim leading frames of the decoder's output are dropped (they
	// align TAEHV's causal output with the Wan VAE's 1+4(T−1) frames).
	FramesToTrim = TemporalFactor - 1
	encWidth     = 64
)

// decWidths are the decoder's widths: the first three stages' MemBlocks
// and the last conv's input.
var decWidths = [4]int{256, 128, 64, 64}

// decTimeGrow and encTimePool are the temporal strides of the decoder's
// TGrow and the encoder's TPool layers per stage ((F,T,T) and (T,T,F)).
var (
	decTimeGrow = [3]int{1, 2, 2}
	encTimePool = [3]int{2, 2, 1}
)

// Config is what a checkpoint's shapes say.
type Config struct {
	LatentChannels int // 16 for Wan2.1
}

// conv is one convolution, weight [Cout,Cin,kt,kh,kw] (2-D convs kt = 1)
// and bias (nil for none).
type conv struct {
	w, b backend.Tensor
}

// memBlock is TAEHV's MemBlock with n_in = n_out (an identity skip, as in
// every TAEW2.1 block): relu(c3(relu(c2(relu(c1(x ‖ past))))) + x), c1
// stored as a kt = 2 convolution over (past, x).
type memBlock struct {
	c1, c2, c3 *conv
}

// Model is a loaded TAEHV. Calls are not safe for concurrent use on a
// backend that is not.
type Model struct {
	b   backend.TinyVAE
	dt  tensor.DType
	cfg Config

	// Decoder: conv in, three stages of three MemBlocks, each stage then a
	// TGrow (1x1 conv to grow·C channels) and a 3x3 conv on the upsampled,
	// grown frames; the head conv.
	decIn   *conv
	decMem  [3][3]*memBlock
	decGrow [3]*conv
	decUp   [3]*conv
	decOut  *conv

	// Encoder (nil when the file has none): conv in, three stages of TPool
	// (as a kt = stride, stride-t conv), a stride-2 conv and three
	// MemBlocks; the conv to the latent.
	enc *encoder

	weights []backend.Tensor
}

type encoder struct {
	in    *conv
	pool  [3]*conv
	down  [3]*conv
	mem   [3][3]*memBlock
	out   *conv
	pools [3]int
}

// Config returns the configuration read from the checkpoint.
func (m *Model) Config() Config { return m.cfg }

// DType is the compute dtype.
func (m *Model) DType() tensor.DType { return m.dt }

// HasEncoder tells whether the checkpoint held the encoder.
func (m *Model) HasEncoder() bool { return m.enc != nil }

// Free releases the weights; the model is unusable afterwards.
func (m *Model) Free() {
	for _, t := range m.weights {
		m.b.Free(t)
	}
	m.weights = nil
}

// anchor identifies a TAEHV checkpoint (and its key prefix, if any).
const anchor = "decoder.1.weight"

// Detect tells whether f looks like a TAEHV checkpoint (the decoder's key
// layout, with 3-channel output), without reading any tensor.
func Detect(f checkpoint.File) bool {
	p, ok := prefixOf(f)
	if !ok {
		return false
	}
	head, ok1 := f.Info(p + "decoder.22.weight")
	mem, ok2 := f.Info(p + "decoder.3.conv.0.weight")
	return ok1 && ok2 && len(head.Shape) == 4 && head.Shape[0] == ImageChannels && len(mem.Shape) == 4
}

// prefixOf finds the shortest prefix under which the anchor key exists.
func prefixOf(f checkpoint.File) (string, bool) {
	prefix, found := "", false
	for _, n := range f.Names() {
		if strings.HasSuffix(n, anchor) {
			p := strings.TrimSuffix(n, anchor)
			if !found || len(p) < len(prefix) {
				prefix, found = p, true
			}
		}
	}
	return prefix, found
}

// loader builds the module tree from a bind.Binder (which checks every
// tensor's shape and dtype and collects the absent keys).
type loader struct {
	*bind.Binder
}

// conv2 reads a 2-D conv key.weight [cout,cin,k,k] (and key.bias when bias)
// as a kt = 1 convolution.
func (l *loader) conv2(key string, cout, cin, k int, bias bool) *conv {
	c := &conv{w: l.Tensor(key+".weight", []int{cout, cin, k, k}, []int{cout, cin, 1, k, k})}
	if bias {
		c.b = l.Tensor(key+".bias", []int{cout}, nil)
	}
	return c
}

// mem reads a MemBlock key (n_in = n_out = c: identity skip, as in every
// TAEW2.1 block). conv.0's input is (x, past) along channels; it becomes a
// kt = 2 convolution whose first tap reads the past frame.
func (l *loader) mem(key string, c int) *memBlock {
	w := l.Read(key+".conv.0.weight", []int{c, 2 * c, 3, 3})
	var w3 []float32
	if w != nil {
		w3 = make([]float32, len(w))
		for co := 0; co < c; co++ {
			for ci := 0; ci < c; ci++ {
				cur := w[(co*2*c+ci)*9 : (co*2*c+ci+1)*9]
				past := w[(co*2*c+c+ci)*9 : (co*2*c+c+ci+1)*9]
				dst := w3[(co*c+ci)*18:]
				copy(dst[:9], past)
				copy(dst[9:18], cur)
			}
		}
	}
	return &memBlock{
		c1: &conv{w: l.Upload([]int{c, c, 2, 3, 3}, w3), b: l.Tensor(key+".conv.0.bias", []int{c}, nil)},
		c2: l.conv2(key+".conv.2", c, c, 3, true),
		c3: l.conv2(key+".conv.4", c, c, 3, true),
	}
}

// grow reads a TGrow key.conv.weight [stride·c, c, 1, 1]. A file made for
// a model with more time upscaling may hold more output channels; as the
// reference (patch_tgrow_layers) the last stride·c are the ones used.
func (l *loader) grow(key string, c, stride int) *conv {
	name := key + ".conv.weight"
	want := []int{stride * c, c, 1, 1}
	if info, ok := l.Info(name); ok && len(info.Shape) == 4 && info.Shape[0] > stride*c &&
		info.Shape[0]%c == 0 && info.Shape[1] == c && info.Shape[2] == 1 && info.Shape[3] == 1 {
		all := l.Read(name, info.Shape)
		if all == nil {
			return &conv{}
		}
		// all's last stride·c rows
		return &conv{w: l.Upload([]int{stride * c, c, 1, 1, 1}, all[len(all)-stride*c*c:])}
	}
	return &conv{w: l.Tensor(name, want, []int{stride * c, c, 1, 1, 1})}
}

// pool reads a TPool key.conv.weight [c, stride·c, 1, 1] as a kt = stride
// convolution with time stride: input frame stride·t+a is channel block a.
func (l *loader) pool(key string, c, stride int) *conv {
	w := l.Read(key+".conv.weight", []int{c, stride * c, 1, 1})
	var w3 []float32
	if w != nil {
		w3 = make([]float32, len(w))
		for co := 0; co < c; co++ {
			for a := 0; a < stride; a++ {
				for ci := 0; ci < c; ci++ {
					w3[(co*c+ci)*stride+a] = w[co*stride*c+a*c+ci]
				}
			}
		}
	}
	return &conv{w: l.Upload([]int{c, c, stride, 1, 1}, w3)}
}

// Options are the choices of a loaded TAEHV.
type Options struct {
	// DType is the compute dtype: BF16 (the default, as the pipeline runs
	// it) or F32.
	DType tensor.DType
}

// Load reads a TAEW2.1 checkpoint (taew2_1.pth or .safetensors, any float
// dtype; the released one is float16) onto b in opt.DType. A file of
// another layout is an error naming the offending key with the expected
// and actual shape, or the missing keys. The encoder is loaded when the
// file has it.
func Load(b backend.TinyVAE, f checkpoint.File, opt Options) (m *Model, err error) {
	dt := opt.DType
	if dt == tensor.Invalid {
		dt = tensor.BF16
	}
	if dt != tensor.F32 && dt != tensor.BF16 {
		return nil, fmt.Errorf("taehv: compute dtype must be float32 or bfloat16, got %v", dt)
	}
	l := newLoader(f, dt)
	l.To = b
	defer func() {
		if err != nil {
			l.Free()
			m = nil
		}
	}()
	defer backend.Recover(&err)
	return load(l, b)
}

// Check validates f as Load does (every name and shape) without reading or
// uploading any tensor, and returns its configuration and whether it holds
// the encoder.
func Check(f checkpoint.File) (cfg Config, encoder bool, err error) {
	m, err := load(newLoader(f, tensor.Invalid), nil)
	if err != nil {
		return Config{}, false, err
	}
	return m.cfg, m.enc != nil, nil
}

// newLoader binds f's TAEW2.1 tensors in dtype dt; with no Binder.To set,
// it only checks them.
func newLoader(f checkpoint.File, dt tensor.DType) *loader {
	return &loader{&bind.Binder{File: f, DType: dt, What: "TAEW2.1",
		Hint: fmt.Sprintf("expected the layout of %s, %s", WeightsFile, Source)}}
}

// load builds the model from l's file (with no l.To, only checks it).
func load(l *loader, b backend.TinyVAE) (m *Model, err error) {
	f, dt := l.File, l.DType
	prefix, ok := prefixOf(f)
	if !ok {
		return nil, fmt.Errorf("%s: not a TAEHV checkpoint (no tensor %q; want %s from %s)", f.Path(), anchor, WeightsFile, Source)
	}
	info, _ := f.Info(prefix + anchor)
	if len(info.Shape) != 4 || info.Shape[0] != decWidths[0] || info.Shape[2] != 3 || info.Shape[3] != 3 || info.Shape[1] < 1 {
		return nil, fmt.Errorf("%s: tensor %q: want shape [%d Z 3 3] (Z latent channels), got %v (is this a TAEW2.1 checkpoint?)",
			f.Path(), prefix+anchor, decWidths[0], info.Shape)
	}
	l.Prefix = prefix
	m = &Model{b: b, dt: dt, cfg: Config{LatentChannels: info.Shape[1]}}
	z := m.cfg.LatentChannels

	// Decoder: Clamp(0) conv(1) ReLU(2) MemBlock×3 Upsample TGrow conv, ×3
	// stages (indices 3..20), ReLU(21) conv(22).
	m.decIn = l.conv2("decoder.1", decWidths[0], z, 3, true)
	idx := 3
	for s := 0; s < 3; s++ {
		c := decWidths[s]
		for k := 0; k < 3; k++ {
			m.decMem[s][k] = l.mem(fmt.Sprintf("decoder.%d", idx), c)
			idx++
		}
		idx++ // Upsample
		m.decGrow[s] = l.grow(fmt.Sprintf("decoder.%d", idx), c, decTimeGrow[s])
		idx++
		m.decUp[s] = l.conv2(fmt.Sprintf("decoder.%d", idx), decWidths[s+1], c, 3, false)
		idx++
	}
	m.decOut = l.conv2(fmt.Sprintf("decoder.%d", idx+1), ImageChannels, decWidths[3], 3, true)

	// Encoder, when present: conv(0) ReLU(1), then per stage TPool, a
	// stride-2 conv and MemBlock×3 (indices 2..16), conv(17).
	if _, ok := f.Info(prefix + "encoder.0.weight"); ok {
		e := &encoder{pools: encTimePool}
		e.in = l.conv2("encoder.0", encWidth, ImageChannels, 3, true)
		idx = 2
		for s := 0; s < 3; s++ {
			e.pool[s] = l.pool(fmt.Sprintf("encoder.%d", idx), encWidth, encTimePool[s])
			e.down[s] = l.conv2(fmt.Sprintf("encoder.%d", idx+1), encWidth, encWidth, 3, false)
			idx += 2
			for k := 0; k < 3; k++ {
				e.mem[s][k] = l.mem(fmt.Sprintf("encoder.%d", idx), encWidth)
				idx++
			}
		}
		e.out = l.conv2(fmt.Sprintf("encoder.%d", idx), z, encWidth, 3, true)
		m.enc = e
	}

	if err := l.Err(); err != nil {
		return nil, err
	}
	m.weights = l.Uploaded()
	return m, nil
}

// Describe is a one-line summary of a TAEHV checkpoint for inspect.
func Describe(cfg Config, encoder bool) string {
	parts := "decoder"
	if encoder {
		parts = "encoder and decoder"
	}
	return fmt.Sprintf("TAEHV tiny video autoencoder, TAEW2.1 layout (%d latent channels, %s; %s, use with --vae tiny)",
		cfg.LatentChannels, parts, Source)
}

// Tensors lists the state-dict entries (name, float16 and shape, as the
// released taew2_1.pth stores them) of a TAEW2.1 model with z latent
// channels, encoder included: what tests and benchmarks build random
// stand-ins from.
func Tensors(z int) []checkpoint.Info {
	var out []checkpoint.Info
	add := func(name string, shape ...int) {
		out = append(out, checkpoint.Info{Name: name, DType: tensor.F16, Shape: shape})
	}
	conv := func(key string, cout, cin int, bias bool) {
		add(key+".weight", cout, cin, 3, 3)
		if bias {
			add(key+".bias", cout)
		}
	}
	mem := func(key string, c int) {
		conv(key+".conv.0", c, 2*c, true)
		conv(key+".conv.2", c, c, true)
		conv(key+".conv.4", c, c, true)
	}
	conv("decoder.1", decWidths[0], z, true)
	idx := 3
	for s := 0; s < 3; s++ {
		c := decWidths[s]
		for k := 0; k < 3; k++ {
			mem(fmt.Sprintf("decoder.%d", idx), c)
			idx++
		}
		add(fmt.Sprintf("decoder.%d.conv.weight", idx+1), decTimeGrow[s]*c, c, 1, 1)
		conv(fmt.Sprintf("decoder.%d", idx+2), decWidths[s+1], c, false)
		idx += 3
	}
	conv(fmt.Sprintf("decoder.%d", idx+1), ImageChannels, decWidths[3], true)
	conv("encoder.0", encWidth, ImageChannels, true)
	idx = 2
	for s := 0; s < 3; s++ {
		add(fmt.Sprintf("encoder.%d.conv.weight", idx), encWidth, encTimePool[s]*encWidth, 1, 1)
		conv(fmt.Sprintf("encoder.%d", idx+1), encWidth, encWidth, false)
		idx += 2
		for k := 0; k < 3; k++ {
			mem(fmt.Sprintf("encoder.%d", idx), encWidth)
			idx++
		}
	}
	conv(fmt.Sprintf("encoder.%d", idx), z, encWidth, true)
	return out
}
