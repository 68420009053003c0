// Package umt5 is the umT5-XXL text encoder of Wan and TurboDiffusion
// (docs/NUMERICS.md §9), written against the backend so it runs on the CPU and
// on CUDA. It maps token ids to the [text_len, 4096] context the DiT
// cross-attends to. Tokenisation lives in package tokenizer; a disk cache
// of encoded prompts (cache.go) lets a repeated prompt skip the 11 GB
// encoder entirely:
//
//	key, _ := umt5.NewCacheKey(ids, n, encPath, tensor.BF16)
//	if e, ok, err := cache.Get(key); ok && err == nil {
//		ctx = e.Context // the encoder is never opened
//	} else {
//		f, _ := checkpoint.Open(encPath)
//		enc, _ := umt5.Load(backend, f, umt5.Options{DType: tensor.BF16})
//		ctx, _ = enc.Encode(ids, n)
//		cache.Put(key, ctx, len(ids), n, enc.Config().Dim, tensor.BF16)
//		enc.Close(); f.Close()
//	}
package umt5

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// eps is T5LayerNorm's epsilon.
const eps = 1e-6

// Encoder is a loaded umT5 encoder. It is not safe for concurrent use.
type Encoder struct {
	cfg    Config
	b      backend.Text
	dt     tensor.DType
	path   string
	emb    []byte       // token table bytes, copied so the file may be closed
	embDT  tensor.DType // their dtype
	blocks []block
	norm   backend.Tensor
	pos    [][]float32 // relative-position tables [buckets·heads] per block (one if shared), rounded to dt
}

type block struct {
	norm1, norm2, q, k, v, o, gate, fc1, fc2 backend.Tensor
}

// Options are the choices of a loaded encoder.
type Options struct {
	// DType is the compute dtype: BF16 (the default, as the reference runs
	// it) or F32.
	DType tensor.DType
}

// Load reads an encoder checkpoint (Wan's models_t5_umt5-xxl-enc-bf16.pth,
// or any file whose keys carry the same names under one prefix) onto
// backend b, computing in opt.DType. The geometry is detected from the
// tensor shapes. The token table stays on the host (only the prompt's rows
// are uploaded); f may be closed once Load returns.
func Load(b backend.Text, f checkpoint.File, opt Options) (enc *Encoder, err error) {
	dt := opt.DType
	if dt == tensor.Invalid {
		dt = tensor.BF16
	}
	if dt != tensor.F32 && dt != tensor.BF16 {
		return nil, fmt.Errorf("umt5: compute dtype must be float32 or bfloat16, got %v", dt)
	}
	cfg, prefix, err := DetectConfig(f)
	if err != nil {
		return nil, err
	}
	k := tensorKeys{prefix}
	e := &Encoder{cfg: cfg, b: b, dt: dt, path: f.Path()}
	defer func() {
		if err != nil {
			e.Close()
			enc = nil
		}
	}()
	defer backend.Recover(&err)

	info, _ := f.Info(k.embedding())
	if !bind.StdFloat.Accepts(info.DType) {
		return nil, fmt.Errorf("%s: tensor %q: want %s, got %v", f.Path(), k.embedding(), bind.StdFloat, info.DType)
	}
	raw, err := f.Raw(k.embedding())
	if err != nil {
		return nil, err
	}
	if want := cfg.Vocab * cfg.Dim * info.DType.Size(); len(raw) != want {
		return nil, fmt.Errorf("%s: tensor %q holds %d bytes, want %d", f.Path(), k.embedding(), len(raw), want)
	}
	e.emb, e.embDT = append([]byte(nil), raw...), info.DType

	// DetectConfig has checked every shape; the binder checks them again
	// as it reads.
	wb := &bind.Binder{File: f, To: b, DType: dt, What: "umT5 encoder"}
	shapes := map[string][]int{}
	for _, t := range cfg.tensors(k) {
		shapes[t.Name] = t.Shape
	}
	upload := func(key string) backend.Tensor { return wb.Tensor(key, shapes[key], nil) }
	for i := 0; i < cfg.Layers; i++ {
		e.blocks = append(e.blocks, block{}) // appended first so Close frees a half-loaded block
		bl := &e.blocks[i]
		for _, w := range []struct {
			dst *backend.Tensor
			key string
		}{
			{&bl.norm1, "norm1.weight"}, {&bl.norm2, "norm2.weight"},
			{&bl.q, "attn.q.weight"}, {&bl.k, "attn.k.weight"}, {&bl.v, "attn.v.weight"}, {&bl.o, "attn.o.weight"},
			{&bl.gate, "ffn.gate.0.weight"}, {&bl.fc1, "ffn.fc1.weight"}, {&bl.fc2, "ffn.fc2.weight"},
		} {
			*w.dst = upload(k.block(i, w.key))
		}
		if !cfg.SharedPos {
			key := k.block(i, "pos_embedding.embedding.weight")
			e.pos = append(e.pos, wb.Host(key, shapes[key]))
		}
	}
	if cfg.SharedPos {
		e.pos = append(e.pos, wb.Host(k.sharedPos(), shapes[k.sharedPos()]))
	}
	e.norm = upload(k.norm())
	if err := wb.Err(); err != nil {
		return nil, err
	}
	return e, nil
}

// Config returns the detected geometry.
func (e *Encoder) Config() Config { return e.cfg }

// DType returns the compute dtype.
func (e *Encoder) DType() tensor.DType { return e.dt }

// Close frees the weights on the backend; the encoder is unusable after.
func (e *Encoder) Close() error {
	if e == nil || e.b == nil {
		return nil
	}
	free := func(t backend.Tensor) {
		if t != nil {
			e.b.Free(t)
		}
	}
	for _, bl := range e.blocks {
		for _, t := range []backend.Tensor{bl.norm1, bl.norm2, bl.q, bl.k, bl.v, bl.o, bl.gate, bl.fc1, bl.fc2} {
			free(t)
		}
	}
	free(e.norm)
	e.blocks, e.norm, e.pos, e.emb, e.b = nil, nil, nil, nil, nil
	return nil
}

// Encode returns the context for a padded id sequence, as TurboDiffusion's
// UMT5EncoderModel returns it: [len(ids), Dim] row-major, rows ≥ length
// zero. length is the number of valid tokens (the attention mask's ones,
// </s> included). Only the valid rows are computed: keys ≥ length are
// masked in every layer and all other ops are row-wise, so padded rows
// never influence valid ones and the reference zeroes them at the end.
func (e *Encoder) Encode(ids []int32, length int) ([]float32, error) {
	if e == nil || e.b == nil {
		return nil, fmt.Errorf("umt5: encoder is closed")
	}
	if length < 1 || length > len(ids) {
		return nil, fmt.Errorf("umt5: length %d outside [1, %d] (the number of ids)", length, len(ids))
	}
	h, err := e.forward(ids[:length], length)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(ids)*e.cfg.Dim)
	copy(out, h)
	return out, nil
}

// forward runs the encoder on all of ids with keys ≥ keyLen masked and
// returns the final-norm output [len(ids), Dim] (padded rows included).
func (e *Encoder) forward(ids []int32, keyLen int) (out []float32, err error) {
	defer backend.Recover(&err)
	c, b := e.cfg, e.b
	l := len(ids)
	if keyLen < 1 || keyLen > l {
		return nil, fmt.Errorf("umt5: key length %d outside [1, %d]", keyLen, l)
	}
	rows, err := e.embed(ids)
	if err != nil {
		return nil, err
	}
	sc := b.Begin()
	defer sc.End()
	x := b.Upload(e.dt, []int{l, c.Dim}, rows)
	for i := range e.blocks {
		// Each layer's activations live in its own scope; the residual
		// stream is loop-carried, so the old one goes when the new exists.
		nx := backend.Scoped(b, func() backend.Tensor { return e.layer(i, x, keyLen) })
		b.Free(x)
		x = nx
	}
	return b.Download(b.RMSNorm(x, e.norm, eps, backend.NormDefault)), nil
}

// layer is encoder block i on the residual stream x [l, Dim], keys ≥
// keyLen masked.
func (e *Encoder) layer(i int, x backend.Tensor, keyLen int) backend.Tensor {
	c, b, bl := e.cfg, e.b, e.blocks[i]
	l := x.Shape()[0]
	table := e.pos[0]
	if !c.SharedPos {
		table = e.pos[i]
	}
	bias := b.Upload(e.dt, []int{c.Heads, 2*l - 1}, relBias(table, c.Buckets, c.Heads, c.MaxDist, l))
	n := b.RMSNorm(x, bl.norm1, eps, backend.NormDefault)
	q, k, v := b.Linear(n, bl.q, nil), b.Linear(n, bl.k, nil), b.Linear(n, bl.v, nil)
	x = b.Add(x, b.Linear(b.RelPosAttention(q, k, v, bias, c.Heads, keyLen), bl.o, nil))

	n = b.RMSNorm(x, bl.norm2, eps, backend.NormDefault)
	g := b.GELUTanhSteps(b.Linear(n, bl.gate, nil))
	return b.Add(x, b.Linear(b.Mul(b.Linear(n, bl.fc1, nil), g), bl.fc2, nil))
}

// embed gathers the token rows on the host as float32.
func (e *Encoder) embed(ids []int32) ([]float32, error) {
	d := e.cfg.Dim
	size := e.embDT.Size()
	out := make([]float32, len(ids)*d)
	for r, id := range ids {
		if id < 0 || int(id) >= e.cfg.Vocab {
			return nil, fmt.Errorf("umt5: token id %d at position %d outside the vocabulary [0, %d) of %s", id, r, e.cfg.Vocab, e.path)
		}
		src := e.emb[int(id)*d*size : (int(id)+1)*d*size]
		dst := out[r*d : (r+1)*d]
		for j := range dst {
			switch e.embDT {
			case tensor.F32:
				dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*j:]))
			case tensor.BF16:
				dst[j] = tensor.F32FromBF16(binary.LittleEndian.Uint16(src[2*j:]))
			case tensor.F16:
				dst[j] = tensor.F32FromF16(binary.LittleEndian.Uint16(src[2*j:]))
			}
		}
	}
	return out, nil
}
