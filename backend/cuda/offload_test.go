package cuda

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestDiTOffloadMatchesResident: a DiT whose blocks' Linear weights are
// streamed from pinned host memory on the copy stream (wan.Options.Offload)
// gives bit-for-bit the resident model's text embedding and forward on the
// GPU (same kernels, same weights: only the copies and the events that
// order them differ), for SLA, SageSLA and dense attention, over several forwards
// (slots reused across blocks and calls), and holds less device memory.
func TestDiTOffloadMatchesResident(t *testing.T) {
	g := gpu(t)
	c := wan.Config{Type: wan.T2V, Dim: 256, FFNDim: 512, Heads: 2, HeadDim: 128, Layers: 5, InDim: 16, OutDim: 16,
		Patch: [3]int{1, 2, 2}, FreqDim: 256, TextDim: 128, TextLen: 512, Eps: 1e-6}
	r := rand.New(rand.NewPCG(3, 4))
	normal := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	ctx := normal(20 * c.TextDim)
	shape := []int{16, 3, 16, 24}
	x := normal(tensor.NumElements(shape))
	rnd := testmodels.NewRandom("random:offload", wan.Tensors(c), 7)
	var ck checkpoint.File
	run := func(opt wan.Options) (outs [][]float32, weights int64) {
		before, _, _ := g.MemStats()
		m, err := wan.Load(g, ck, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		after, _, _ := g.MemStats()
		txt, err := m.EmbedText(ctx, 20)
		if err != nil {
			t.Fatal(err)
		}
		defer txt.Free()
		for step := 0; step < 3; step++ {
			out, err := m.Forward(x, shape, float32(900-200*step), txt)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, out)
		}
		return outs, after - before
	}
	// The -quant layout (int8 codes and scales streamed together).
	qpath := filepath.Join(t.TempDir(), "offload-quant.safetensors")
	if err := quant.QuantizeCheckpoint(rnd, qpath); err != nil {
		t.Fatal(err)
	}
	qck, err := checkpoint.Open(qpath)
	if err != nil {
		t.Fatal(err)
	}
	defer qck.Close()
	for _, c := range []struct {
		f   checkpoint.File
		opt wan.Options
	}{
		{rnd, wan.Options{Attention: backend.SLA, TopK: 0.5}},
		{rnd, wan.Options{Attention: backend.SageSLA, TopK: 0.5}},
		{rnd, wan.Options{Attention: backend.Dense, ExactRounding: true}},
		{qck, wan.Options{Attention: backend.SageSLA, TopK: 0.5}},
		{qck, wan.Options{Attention: backend.Dense}},
	} {
		ck = c.f
		opt := c.opt
		want, wRes := run(opt)
		opt.Offload = true
		got, wOff := run(opt)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%s %v: forward %d with offload differs from the resident model", ck.Path(), opt.Attention, i)
			}
		}
		t.Logf("%s %v: weights on the device %d bytes resident, %d with offload", ck.Path(), opt.Attention, wRes, wOff)
		if wOff >= wRes {
			t.Errorf("%s %v: offload holds %d bytes of weights, resident %d", ck.Path(), opt.Attention, wOff, wRes)
		}
	}
}

// TestDiTOffloadRequestLoRA: a LoRA merged into a loaded offloaded DiT
// (wan.Model.SetLoRA, as a server request does: into the pinned host copies
// the slots stream from) gives bit-for-bit the resident model's forward
// with the same LoRA, and SetLoRA(nil) gives the plain forward back, for
// the bf16 and -quant layouts.
func TestDiTOffloadRequestLoRA(t *testing.T) {
	g := gpu(t)
	c := wan.Config{Type: wan.T2V, Dim: 256, FFNDim: 512, Heads: 2, HeadDim: 128, Layers: 5, InDim: 16, OutDim: 16,
		Patch: [3]int{1, 2, 2}, FreqDim: 256, TextDim: 128, TextLen: 512, Eps: 1e-6}
	r := rand.New(rand.NewPCG(5, 6))
	normal := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * std)
		}
		return v
	}
	var lts []checkpoint.Tensor
	add := func(name string, shape []int, v []float32) {
		b := make([]byte, 0, 4*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		lts = append(lts, checkpoint.Tensor{Name: name, DType: tensor.F32, Shape: shape, Data: b})
	}
	const rank = 4
	for _, m := range []struct {
		name    string
		out, in int
	}{{"blocks.0.self_attn.q", 256, 256}, {"blocks.3.ffn.0", 512, 256}, {"blocks.4.cross_attn.v", 256, 256}, {"head.head", 64, 256}} {
		add("diffusion_model."+m.name+".lora_A.weight", []int{rank, m.in}, normal(rank*m.in, 0.3))
		add("diffusion_model."+m.name+".lora_B.weight", []int{m.out, rank}, normal(m.out*rank, 0.15))
	}
	dir := t.TempDir()
	lpath := filepath.Join(dir, "lora.safetensors")
	if err := checkpoint.WriteSafetensors(lpath, lts); err != nil {
		t.Fatal(err)
	}
	a, err := lora.Open(lora.Spec{Path: lpath, Scale: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := normal(20*c.TextDim, 1)
	shape := []int{16, 3, 16, 24}
	x := normal(tensor.NumElements(shape), 1)
	rnd := testmodels.NewRandom("random:offload-lora", wan.Tensors(c), 8)
	qpath := filepath.Join(dir, "quant.safetensors")
	if err := quant.QuantizeCheckpoint(rnd, qpath); err != nil {
		t.Fatal(err)
	}
	qck, err := checkpoint.Open(qpath)
	if err != nil {
		t.Fatal(err)
	}
	defer qck.Close()
	forward := func(m *wan.Model) []float32 {
		txt, err := m.EmbedText(ctx, 20)
		if err != nil {
			t.Fatal(err)
		}
		defer txt.Free()
		out, err := m.Forward(x, shape, 700, txt)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, ck := range []checkpoint.File{rnd, qck} {
		opt := wan.Options{Attention: backend.SageSLA, TopK: 0.5}
		res, err := wan.Load(g, ck, opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := res.SetLoRA(ck, []*lora.Adapter{a}); err != nil {
			t.Fatal(err)
		}
		want := forward(res)
		res.Free()
		opt.Offload = true
		m, err := wan.Load(g, ck, opt)
		if err != nil {
			t.Fatal(err)
		}
		plain := forward(m)
		if _, err := m.SetLoRA(ck, []*lora.Adapter{a}); err != nil {
			t.Fatal(err)
		}
		if got := forward(m); !slices.Equal(got, want) {
			t.Errorf("%s: the offloaded model with the LoRA differs from the resident one with it", ck.Path())
		}
		if slices.Equal(plain, want) {
			t.Errorf("%s: the LoRA changes nothing", ck.Path())
		}
		if _, err := m.SetLoRA(ck, nil); err != nil {
			t.Fatal(err)
		}
		if got := forward(m); !slices.Equal(got, plain) {
			t.Errorf("%s: the offloaded forward is not restored after SetLoRA(nil)", ck.Path())
		}
		m.Free()
	}
}
