package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
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
	t2v := fx.t2vFiles(t)
	spec := lora.Spec{Path: loraPath, Scale: 0.7}
	var newEngineOff func(files Files, keep, offload bool, specs ...lora.Spec) *Engine
	newEngine := func(files Files, keep bool, specs ...lora.Spec) *Engine {
		return newEngineOff(files, keep, false, specs...)
	}
	newEngineOff = func(files Files, keep, offload bool, specs ...lora.Spec) *Engine {
		be := cpu.New()
		eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense, Offload: offload}, KeepExperts: keep, LoRA: specs})
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
			// Offloaded (the LoRA merged into the host copies the blocks
			// stream from): the same results, restored after the request.
			off := newEngineOff(c.files, true, true)
			if got := gen2(t, off, withLoRA); !slices.Equal(got, merged) {
				t.Error("with offload, the request's LoRA gives another result than without")
			}
			if got := gen2(t, off, c.req); !slices.Equal(got, plain) {
				t.Error("with offload, the model gives another result after the LoRA request: weights not restored")
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

// gen2 is the first latent of eng's result for r.
func gen2(t *testing.T, eng *Engine, r Request) []float32 {
	t.Helper()
	res, err := eng.Generate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return res.Latents[0]
}

// TestRequestLoRAKept: a request may leave its LoRAs merged (KeepLoRA);
// the next one with the same list runs on them without merging again and
// gives the same result as the first, and a request with another list, or
// none, or ReleaseLoRA, restores the weights first (the plain result again,
// bit for bit).
func TestRequestLoRAKept(t *testing.T) {
	fx := newI2VFixture(t)
	loraPath := writeTinyLoRA(t, fx.dir)
	files := fx.t2vFiles(t)
	be := cpu.New()
	eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	base := Request{Prompt: "a fox", Steps: 2, SigmaMax: 80, Size: Size{32, 32}, Frames: 5, Seed: 3, Samples: 1}
	keep := true
	withLoRA := func(scale float64) Request {
		r := base
		r.LoRA = []lora.Spec{{Path: loraPath, Scale: scale}}
		r.KeepLoRA = func() bool { return keep }
		return r
	}
	gen := func(r Request) ([]float32, bool) {
		t.Helper()
		res, err := eng.Generate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		merged := false
		for _, tm := range res.Timings {
			merged = merged || tm.Stage == "merge LoRA"
		}
		return res.Latents[0], merged
	}
	plain, _ := gen(base)
	first, merged := gen(withLoRA(0.7))
	if !merged || slices.Equal(first, plain) {
		t.Fatalf("the first LoRA request: merged %v, changed the result %v", merged, !slices.Equal(first, plain))
	}
	second, merged := gen(withLoRA(0.7))
	if merged {
		t.Error("the same LoRA list again was merged again")
	}
	if !slices.Equal(second, first) {
		t.Error("the kept LoRA gives another result than the first merge")
	}
	other, merged := gen(withLoRA(0.3)) // another scale: restored, merged anew
	if !merged || slices.Equal(other, first) || slices.Equal(other, plain) {
		t.Errorf("another scale: merged %v, same as 0.7 %v, same as none %v", merged, slices.Equal(other, first), slices.Equal(other, plain))
	}
	if again, _ := gen(base); !slices.Equal(again, plain) {
		t.Error("a request without LoRA after a kept one: weights not restored")
	}
	gen(withLoRA(0.7))
	if err := eng.ReleaseLoRA(); err != nil {
		t.Fatal(err)
	}
	if eng.kept != nil {
		t.Error("ReleaseLoRA left the LoRA kept")
	}
	if again, merged := gen(withLoRA(0.7)); !merged || !slices.Equal(again, first) {
		t.Errorf("after ReleaseLoRA: merged %v, same result %v", merged, slices.Equal(again, first))
	}
	keep = false
	gen(withLoRA(0.7)) // reuses the kept merge, then restores
	if eng.kept != nil {
		t.Error("KeepLoRA false left the LoRA merged")
	}
	if again, _ := gen(base); !slices.Equal(again, plain) {
		t.Error("after a request with KeepLoRA false: weights not restored")
	}
}

// TestCheckLoRA: a request's LoRAs are checked against the DiT from the
// headers, before anything loads, with errors naming the field, the file,
// the key and the shapes.
func TestCheckLoRA(t *testing.T) {
	fx := newI2VFixture(t)
	good := writeTinyLoRA(t, fx.dir)
	files := fx.t2vFiles(t)
	f32 := func(name string, shape ...int) checkpoint.Tensor {
		return checkpoint.Tensor{Name: name, DType: tensor.F32, Shape: shape, Data: make([]byte, 4*tensor.NumElements(shape))}
	}
	write := func(name string, ts ...checkpoint.Tensor) string {
		p := filepath.Join(fx.dir, name)
		if err := checkpoint.WriteSafetensors(p, ts); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write("unknown.safetensors", f32("lora_unet_blocks_0_self_attn_q.lora_down.weight", 4, 128), f32("lora_unet_blocks_0_self_attn_q.lora_up.weight", 128, 4),
		f32("lora_unet_blocks_7_ffn_0.lora_down.weight", 4, 128), f32("lora_unet_blocks_7_ffn_0.lora_up.weight", 256, 4))
	shape := write("shape.safetensors", f32("diffusion_model.blocks.0.ffn.2.lora_A.weight", 4, 96), f32("diffusion_model.blocks.0.ffn.2.lora_B.weight", 128, 4))
	notLoRA := write("dit.safetensors", f32("blocks.0.self_attn.q.weight", 128, 128))
	be := cpu.New()
	off, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense, Offload: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	// Offload merges into the streamed host copies: checked as without.
	if err := off.CheckLoRA([]lora.Spec{{Path: good, Scale: 1}}, false); err != nil {
		t.Errorf("a fitting request LoRA on an offloading engine: %v", err)
	}
	if err := off.CheckLoRA([]lora.Spec{{Path: shape, Scale: 1}}, false); err == nil || !strings.Contains(err.Error(), "blocks.0.ffn.2") {
		t.Errorf("a misfitting request LoRA on an offloading engine: %v", err)
	}
	for _, lenient := range []bool{false, true} {
		eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense, LoRALenient: lenient}})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		if err := eng.CheckLoRA([]lora.Spec{{Path: good, Scale: 0.5}}, false); err != nil {
			t.Errorf("a fitting LoRA: %v", err)
		}
		for _, c := range []struct {
			path string
			want []string // in the message
			ok   bool     // accepted under LoRALenient
		}{
			{unknown, []string{"blocks.7.ffn.0", "lora_unet_blocks_7_ffn_0.lora_down.weight"}, true},
			{shape, []string{"blocks.0.ffn.2", "[4 96]", "[128 4]", "[128 256]"}, false},
			{notLoRA, []string{"not a LoRA"}, false},
			{filepath.Join(fx.dir, "none.safetensors"), []string{"none.safetensors"}, false},
		} {
			err := eng.CheckLoRA([]lora.Spec{{Path: good, Scale: 1}, {Path: c.path, Scale: 1}}, false)
			if lenient && c.ok {
				if err != nil {
					t.Errorf("lenient: %s: %v", filepath.Base(c.path), err)
				}
				continue
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != FieldLoRA || fe.Value != strconv.Quote(filepath.Base(c.path)) {
				t.Errorf("%s: %v, want a FieldError of %s naming the file", filepath.Base(c.path), err, FieldLoRA)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %q does not say %q", filepath.Base(c.path), err, w)
				}
			}
		}
	}
}
