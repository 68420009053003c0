package pipeline

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// writeTinyLoRA writes a kohya-named LoRA over the tiny test DiTs (dim 128,
// FFN 256) that changes their output visibly.
func writeTinyLoRA(t *testing.T, dir string) string {
	t.Helper()
	r := rand.New(rand.NewSource(9))
	const D, F, rank = 128, 256, 4
	var ts []checkpoint.Tensor
	add := func(name string, shape ...int) {
		n := tensor.NumElements(shape)
		b := make([]byte, 0, 4*n)
		for i := 0; i < n; i++ {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(r.NormFloat64()*0.5)))
		}
		ts = append(ts, checkpoint.Tensor{Name: name, DType: tensor.F32, Shape: shape, Data: b})
	}
	for _, m := range []struct {
		name    string
		out, in int
	}{{"blocks_0_self_attn_v", D, D}, {"blocks_0_ffn_2", D, F}, {"head_head", 64, D}} {
		add("lora_unet_"+m.name+".lora_down.weight", rank, m.in)
		add("lora_unet_"+m.name+".lora_up.weight", m.out, rank)
	}
	path := filepath.Join(dir, "style.safetensors")
	if err := checkpoint.WriteSafetensors(path, ts); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRequestLoRA: a request's LoRA changes the result, equals merging the
// same LoRA at load, and is gone when the request ends (the next request
// without it gives the first result again, bit for bit); for image-to-video
// both resident experts are restored.
func TestRequestLoRA(t *testing.T) {
	fx := newI2VFixture(t)
	loraPath := writeTinyLoRA(t, fx.dir)
	t2v := fx.files
	t2v.DiT = filepath.Join(fx.dir, "t2v.safetensors")
	if err := testmodels.WriteWanT2V(t2v.DiT, 64, 5); err != nil {
		t.Fatal(err)
	}
	spec := lora.Spec{Path: loraPath, Scale: 0.7}
	newEngine := func(files Files, keep bool, specs ...lora.Spec) *Engine {
		be := cpu.New()
		eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}, KeepExperts: keep, LoRA: specs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		return eng
	}
	for _, c := range []struct {
		name  string
		files Files
		req   Request
	}{
		{"t2v", t2v, Request{Prompt: "a fox", Steps: 2, SigmaMax: 80, Size: Size{32, 32}, Frames: 5, Seed: 3, Samples: 1}},
		{"i2v", fx.files, Request{Prompt: "a fox", Image: fx.image, Steps: 4, SigmaMax: 200, Size: Size{32, 32}, Frames: 1, Seed: 3, Samples: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			eng := newEngine(c.files, true)
			gen := func(r Request) *Result {
				t.Helper()
				res, err := eng.Generate(context.Background(), r)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			plain := gen(c.req).Latents[0]
			withLoRA := c.req
			withLoRA.LoRA = []lora.Spec{spec}
			res := gen(withLoRA)
			merged := res.Latents[0]
			if slices.Equal(plain, merged) {
				t.Fatal("the request's LoRA changed nothing")
			}
			if again := gen(c.req).Latents[0]; !slices.Equal(again, plain) {
				t.Fatal("after the LoRA request the model gives another result: weights not restored")
			}
			atLoad := newEngine(c.files, true, spec)
			res2, err := atLoad.Generate(context.Background(), c.req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res2.Latents[0], merged) {
				t.Error("merging at load and per request give different results")
			}
		})
	}
	// A request LoRA that matches nothing fails the request and leaves the
	// engine usable.
	bad := filepath.Join(fx.dir, "bad.safetensors")
	if err := checkpoint.WriteSafetensors(bad, []checkpoint.Tensor{{Name: "lora_unet_blocks_9_ffn_0.alpha", DType: tensor.F32, Shape: []int{}, Data: make([]byte, 4)}}); err != nil {
		t.Fatal(err)
	}
	eng := newEngine(t2v, false)
	req := Request{Prompt: "a fox", Steps: 1, SigmaMax: 80, Size: Size{32, 32}, Frames: 1, Seed: 3, Samples: 1, LoRA: []lora.Spec{{Path: bad, Scale: 1}}}
	if _, err := eng.Generate(context.Background(), req); err == nil || !strings.Contains(err.Error(), "alpha") {
		t.Errorf("a bad request LoRA: %v", err)
	}
	req.LoRA = nil
	if _, err := eng.Generate(context.Background(), req); err != nil {
		t.Errorf("the engine after a bad request LoRA: %v", err)
	}
	if _, err := New(cpu.New(), nil, Options{Files: t2v, LoRA: []lora.Spec{{Path: filepath.Join(fx.dir, "none.safetensors"), Scale: 1}}}); err == nil {
		t.Error("New accepted a missing LoRA file")
	}
}
