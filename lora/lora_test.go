package lora

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// tt is one tensor of a synthetic LoRA file.
type tt struct {
	name  string
	shape []int
	v     []float32
	dt    tensor.DType // F32 (default) or BF16 (values rounded)
}

func encode(t tt) checkpoint.Tensor {
	dt := t.dt
	if dt == tensor.Invalid {
		dt = tensor.F32
	}
	var b []byte
	for _, x := range t.v {
		if dt == tensor.BF16 {
			b = binary.LittleEndian.AppendUint16(b, tensor.BF16FromF32(x))
		} else {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return checkpoint.Tensor{Name: t.name, DType: dt, Shape: t.shape, Data: b}
}

// writeLoRA writes ts as a .safetensors (or, for a .pth name, a torch.save
// zip) file and returns its path.
func writeLoRA(t *testing.T, name string, ts []tt) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	var cts []checkpoint.Tensor
	for _, x := range ts {
		cts = append(cts, encode(x))
	}
	var err error
	if strings.HasSuffix(name, ".pth") {
		err = checkpoint.WritePth(path, cts)
	} else {
		err = checkpoint.WriteSafetensors(path, cts)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func randn(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in    string
		path  string
		scale float64
		bad   bool
	}{
		{"a.safetensors", "a.safetensors", 1, false},
		{"a.safetensors:0.8", "a.safetensors", 0.8, false},
		{"dir/a.pth:-1.5", "dir/a.pth", -1.5, false},
		{"C:/loras/x.safetensors", "C:/loras/x.safetensors", 1, false},
		{"C:/loras/x.safetensors:2", "C:/loras/x.safetensors", 2, false},
		{"weird:name.safetensors", "weird:name.safetensors", 1, false},
		{"a.safetensors:", "a.safetensors:", 1, false},
		{":0.5", ":0.5", 1, false},
		{"a:NaN", "", 0, true},
		{"", "", 0, true},
	} {
		s, err := ParseSpec(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: want an error, got %+v", c.in, s)
			}
			continue
		}
		if err != nil || s.Path != c.path || s.Scale != c.scale {
			t.Errorf("%q: got %+v, %v; want %s scale %g", c.in, s, err, c.path, c.scale)
		}
	}
}

// TestKeyNamings resolves one key of every naming to its Wan parameter.
func TestKeyNamings(t *testing.T) {
	table := newModuleTable(40)
	for _, c := range []struct {
		key, module string
		r           role
	}{
		{"diffusion_model.blocks.3.self_attn.q.lora_A.weight", "blocks.3.self_attn.q", roleDown},
		{"blocks.3.self_attn.q.lora_B.weight", "blocks.3.self_attn.q", roleUp},
		{"transformer.blocks.3.self_attn.q.lora_A.weight", "blocks.3.self_attn.q", roleDown},
		{"base_model.model.blocks.0.ffn.2.lora_A.default.weight", "blocks.0.ffn.2", roleDown},
		{"diffusion_model.blocks.39.cross_attn.o.alpha", "blocks.39.cross_attn.o", roleAlpha},
		{"lora_unet_blocks_12_self_attn_q.lora_down.weight", "blocks.12.self_attn.q", roleDown},
		{"lora_unet_blocks_12_cross_attn_v.lora_up.weight", "blocks.12.cross_attn.v", roleUp},
		{"lora_unet_blocks_12_ffn_0.alpha", "blocks.12.ffn.0", roleAlpha},
		{"lora_unet_text_embedding_2.lora_down.weight", "text_embedding.2", roleDown},
		{"lora_transformer_blocks_1_attn1_to_out_0.lora_up.weight", "blocks.1.self_attn.o", roleUp},
		{"transformer.blocks.5.attn1.to_q.lora_A.weight", "blocks.5.self_attn.q", roleDown},
		{"transformer.blocks.5.attn1.to_out.0.lora_B.weight", "blocks.5.self_attn.o", roleUp},
		{"transformer.blocks.5.attn2.to_k.lora_A.weight", "blocks.5.cross_attn.k", roleDown},
		{"transformer.blocks.5.ffn.net.0.proj.lora_A.weight", "blocks.5.ffn.0", roleDown},
		{"transformer.blocks.5.ffn.net.2.lora_B.bias", "blocks.5.ffn.2", roleDiffB},
		{"transformer.blocks.5.norm2.diff", "blocks.5.norm3", roleDiff},
		{"transformer.blocks.5.scale_shift_table.diff", "blocks.5.modulation", roleDiff},
		{"transformer.condition_embedder.time_proj.lora_A.weight", "time_projection.1", roleDown},
		{"transformer.condition_embedder.text_embedder.linear_1.lora_B.weight", "text_embedding.0", roleUp},
		{"transformer.condition_embedder.time_embedder.linear_2.lora_A.weight", "time_embedding.2", roleDown},
		{"transformer.proj_out.lora_A.weight", "head.head", roleDown},
		{"diffusion_model.head.head.diff_b", "head.head", roleDiffB},
		{"diffusion_model.blocks.0.norm3.diff", "blocks.0.norm3", roleDiff},
		{"diffusion_model.blocks.0.self_attn.norm_q.diff", "blocks.0.self_attn.norm_q", roleDiff},
		{"diffusion_model.blocks.0.modulation.diff", "blocks.0.modulation", roleDiff},
		{"diffusion_model.patch_embedding.diff", "patch_embedding", roleDiff},
		{"diffusion_model.blocks.2.self_attn.attn_op.local_attn.proj_l.lora_A.weight", "blocks.2.self_attn.attn_op.local_attn.proj_l", roleDown},
	} {
		spelling, r, kohya, ok := splitKey(c.key)
		if !ok {
			t.Errorf("%s: no role", c.key)
			continue
		}
		got, ok := table.resolve(spelling, kohya)
		if !ok || got != c.module || r != c.r {
			t.Errorf("%s: module %q (found %v) role %v; want %q role %v", c.key, got, ok, r, c.module, c.r)
		}
	}
	for _, key := range []string{
		"diffusion_model.blocks.3.self_attn.q.weight",          // a model weight, not a LoRA key
		"transformer.blocks.5.attn2.add_k_proj.lora_A.weight",  // Wan2.1 I2V image projection
		"diffusion_model.img_emb.proj.1.lora_A.weight",         // idem
		"lora_unet_blocks_3_self_attn_q_proj.lora_down.weight", // not a Wan module
	} {
		spelling, _, kohya, ok := splitKey(key)
		if ok {
			if m, found := table.resolve(spelling, kohya); found {
				t.Errorf("%s: resolved to %q, want no module", key, m)
			}
		}
	}
}

// tinyTarget is a small Wan-like parameter table.
func tinyTarget() Target {
	return Target{
		"blocks.0.self_attn.q.weight": {8, 8},
		"blocks.0.self_attn.q.bias":   {8},
		"blocks.0.ffn.0.weight":       {16, 8},
		"blocks.0.ffn.0.bias":         {16},
		"blocks.0.norm3.weight":       {8},
		"blocks.0.norm3.bias":         {8},
		"blocks.0.modulation":         {1, 6, 8},
		"patch_embedding.weight":      {8, 4 * 3},
		"head.head.weight":            {4, 8},
	}
}

// TestMergeMatchesFloat64: every naming's delta, merged in float32, is
// within float32 rounding of the float64 sum W + Σ s·B·A + s·diff.
func TestMergeMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const rank = 4
	A, B := randn(r, rank*8, 0.5), randn(r, 8*rank, 0.5)
	A2, B2 := randn(r, rank*8, 0.5), randn(r, 16*rank, 0.5)
	diffB := randn(r, 16, 0.1)
	norm := randn(r, 8, 0.1)
	mod := randn(r, 6*8, 0.1)
	patch := randn(r, 8*3*4, 0.1)
	type want struct {
		param string
		exact func(w []float64, s float64)
	}
	lowRank := func(A, B []float32, out, in int, k float64) func(w []float64, s float64) {
		return func(w []float64, s float64) {
			for o := 0; o < out; o++ {
				for i := 0; i < in; i++ {
					var d float64
					for j := 0; j < rank; j++ {
						d += float64(B[o*rank+j]) * float64(A[j*in+i])
					}
					w[o*in+i] += s * k * d
				}
			}
		}
	}
	add := func(d []float32) func(w []float64, s float64) {
		return func(w []float64, s float64) {
			for i, v := range d {
				w[i] += s * float64(v)
			}
		}
	}
	for _, c := range []struct {
		name  string
		file  string
		ts    []tt
		wants []want
	}{
		{"peft", "peft.safetensors", []tt{
			{name: "diffusion_model.blocks.0.self_attn.q.lora_A.weight", shape: []int{rank, 8}, v: A},
			{name: "diffusion_model.blocks.0.self_attn.q.lora_B.weight", shape: []int{8, rank}, v: B},
			{name: "diffusion_model.blocks.0.ffn.0.lora_A.weight", shape: []int{rank, 8}, v: A2},
			{name: "diffusion_model.blocks.0.ffn.0.lora_B.weight", shape: []int{16, rank}, v: B2},
			{name: "diffusion_model.blocks.0.ffn.0.diff_b", shape: []int{16}, v: diffB},
		}, []want{{"blocks.0.self_attn.q.weight", lowRank(A, B, 8, 8, 1)}, {"blocks.0.ffn.0.weight", lowRank(A2, B2, 16, 8, 1)}, {"blocks.0.ffn.0.bias", add(diffB)}}},
		{"peft with alpha, no prefix, .pth", "peft.pth", []tt{
			{name: "blocks.0.self_attn.q.lora_A.weight", shape: []int{rank, 8}, v: A},
			{name: "blocks.0.self_attn.q.lora_B.weight", shape: []int{8, rank}, v: B},
			{name: "blocks.0.self_attn.q.alpha", shape: []int{}, v: []float32{2}},
		}, []want{{"blocks.0.self_attn.q.weight", lowRank(A, B, 8, 8, 2.0/rank)}}},
		{"kohya", "kohya.safetensors", []tt{
			{name: "lora_unet_blocks_0_self_attn_q.lora_down.weight", shape: []int{rank, 8}, v: A, dt: tensor.BF16},
			{name: "lora_unet_blocks_0_self_attn_q.lora_up.weight", shape: []int{8, rank}, v: B, dt: tensor.BF16},
			{name: "lora_unet_blocks_0_self_attn_q.alpha", shape: []int{}, v: []float32{8}},
			{name: "lora_unet_blocks_0_ffn_0.lora_down.weight", shape: []int{rank, 8}, v: A2},
			{name: "lora_unet_blocks_0_ffn_0.lora_up.weight", shape: []int{16, rank}, v: B2},
		}, []want{{"blocks.0.self_attn.q.weight", lowRank(bf(A), bf(B), 8, 8, 8.0/rank)}, {"blocks.0.ffn.0.weight", lowRank(A2, B2, 16, 8, 1)}}},
		{"diffusers", "diffusers.safetensors", []tt{
			{name: "transformer.blocks.0.attn1.to_q.lora_A.weight", shape: []int{rank, 8}, v: A},
			{name: "transformer.blocks.0.attn1.to_q.lora_B.weight", shape: []int{8, rank}, v: B},
			{name: "transformer.blocks.0.ffn.net.0.proj.lora_A.weight", shape: []int{rank, 8}, v: A2},
			{name: "transformer.blocks.0.ffn.net.0.proj.lora_B.weight", shape: []int{16, rank}, v: B2},
			{name: "transformer.blocks.0.ffn.net.0.proj.lora_B.bias", shape: []int{16}, v: diffB},
			{name: "transformer.blocks.0.norm2.diff", shape: []int{8}, v: norm},
			{name: "transformer.blocks.0.scale_shift_table.diff", shape: []int{1, 6, 8}, v: mod},
		}, []want{{"blocks.0.self_attn.q.weight", lowRank(A, B, 8, 8, 1)}, {"blocks.0.ffn.0.weight", lowRank(A2, B2, 16, 8, 1)},
			{"blocks.0.ffn.0.bias", add(diffB)}, {"blocks.0.norm3.weight", add(norm)}, {"blocks.0.modulation", add(mod)}}},
		{"diff", "diff.safetensors", []tt{
			{name: "diffusion_model.patch_embedding.diff", shape: []int{8, 3, 1, 2, 2}, v: patch}, // Conv3d form
			{name: "diffusion_model.blocks.0.norm3.diff_b", shape: []int{8}, v: norm},
			{name: "diffusion_model.blocks.0.modulation.diff", shape: []int{1, 6, 8}, v: mod},
		}, []want{{"patch_embedding.weight", add(patch)}, {"blocks.0.norm3.bias", add(norm)}, {"blocks.0.modulation", add(mod)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			const strength = 0.75
			a, err := Open(Spec{Path: writeLoRA(t, c.file, c.ts), Scale: strength})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			target := tinyTarget()
			set, warn, err := Bind(target, []*Adapter{a}, false)
			if err != nil || len(warn) != 0 {
				t.Fatalf("bind: %v %v", err, warn)
			}
			var params []string
			for _, w := range c.wants {
				params = append(params, w.param)
			}
			slices.Sort(params)
			if got := set.Params(); !slices.Equal(got, params) {
				t.Fatalf("params %v, want %v", got, params)
			}
			for _, w := range c.wants {
				shape := target[w.param]
				base := randn(r, tensor.NumElements(shape), 1)
				tensor.RoundBF16Slice(base)
				got := append([]float32(nil), base...)
				if ok, err := set.Merge(w.param, shape, got); !ok || err != nil {
					t.Fatalf("%s: merge %v %v", w.param, ok, err)
				}
				exact := make([]float64, len(base))
				for i, v := range base {
					exact[i] = float64(v)
				}
				w.exact(exact, strength)
				worst := 0.0
				for i := range got {
					worst = max(worst, math.Abs(float64(got[i])-exact[i])/(1+math.Abs(exact[i])))
				}
				if !(worst <= 1e-6) { // NaN fails too
					t.Errorf("%s: worst relative error %.3g vs float64", w.param, worst)
				}
			}
		})
	}
}

func bf(v []float32) []float32 {
	out := append([]float32(nil), v...)
	tensor.RoundBF16Slice(out)
	return out
}

// TestUnknownKeys: keys that match nothing are an error naming each of
// them, or warnings with lenient; the rest still merges.
func TestUnknownKeys(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	path := writeLoRA(t, "mixed.safetensors", []tt{
		{name: "diffusion_model.blocks.0.self_attn.q.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)},
		{name: "diffusion_model.blocks.0.self_attn.q.lora_B.weight", shape: []int{8, 2}, v: randn(r, 16, 1)},
		{name: "diffusion_model.blocks.7.self_attn.q.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)}, // no block 7
		{name: "diffusion_model.blocks.7.self_attn.q.lora_B.weight", shape: []int{8, 2}, v: randn(r, 16, 1)},
		{name: "diffusion_model.img_emb.proj.1.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)}, // no such module
		{name: "text_encoder.layer.0.q.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)},
	})
	a, err := Open(Spec{Path: path, Scale: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, _, err = Bind(tinyTarget(), []*Adapter{a}, false)
	var uk *UnknownKeysError
	if !errors.As(err, &uk) {
		t.Fatalf("want an UnknownKeysError, got %v", err)
	}
	for _, k := range []string{"blocks.7.self_attn.q.lora_A.weight", "blocks.7.self_attn.q.lora_B.weight", "img_emb.proj.1.lora_A.weight", "text_encoder.layer.0.q.lora_A.weight"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error does not name %s: %v", k, err)
		}
	}
	if len(uk.Keys) != 4 {
		t.Errorf("%d unknown keys, want 4: %v", len(uk.Keys), uk.Keys)
	}
	set, warn, err := Bind(tinyTarget(), []*Adapter{a}, true)
	if err != nil || len(warn) != 1 || !strings.Contains(warn[0], "img_emb") {
		t.Fatalf("lenient: %v %v", warn, err)
	}
	if got := set.Params(); !slices.Equal(got, []string{"blocks.0.self_attn.q.weight"}) {
		t.Errorf("lenient merges %v", got)
	}
}

// TestBadLoRAs: shape mismatches, half pairs and other adapter kinds fail
// with messages that say what is wrong.
func TestBadLoRAs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		name, want string
		ts         []tt
		atOpen     bool
	}{
		{"shape", "another size", []tt{
			{name: "blocks.0.self_attn.q.lora_A.weight", shape: []int{2, 16}, v: randn(r, 32, 1)},
			{name: "blocks.0.self_attn.q.lora_B.weight", shape: []int{16, 2}, v: randn(r, 32, 1)},
		}, false},
		{"rank", "another size", []tt{
			{name: "blocks.0.self_attn.q.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)},
			{name: "blocks.0.self_attn.q.lora_B.weight", shape: []int{8, 3}, v: randn(r, 24, 1)},
		}, false},
		{"half", "no up/B matrix", []tt{
			{name: "blocks.0.self_attn.q.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)},
		}, true},
		{"dora", "DoRA", []tt{
			{name: "blocks.0.self_attn.q.lora_A.weight", shape: []int{2, 8}, v: randn(r, 16, 1)},
			{name: "blocks.0.self_attn.q.lora_B.weight", shape: []int{8, 2}, v: randn(r, 16, 1)},
			{name: "blocks.0.self_attn.q.dora_scale", shape: []int{8, 1}, v: randn(r, 8, 1)},
		}, true},
		{"diff shape", "the model's blocks.0.norm3.weight", []tt{
			{name: "blocks.0.norm3.diff", shape: []int{9}, v: randn(r, 9, 1)},
		}, false},
	} {
		a, err := Open(Spec{Path: writeLoRA(t, c.name+".safetensors", c.ts), Scale: 1})
		if err == nil {
			_, _, err = Bind(tinyTarget(), []*Adapter{a}, true)
			a.Close()
			if c.atOpen {
				t.Errorf("%s: Open accepted the file", c.name)
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error with %q, got %v", c.name, c.want, err)
		}
	}
	if _, err := Open(Spec{Path: filepath.Join(t.TempDir(), "missing.safetensors"), Scale: 1}); err == nil {
		t.Error("a missing file opened")
	}
}

// TestJoinOrder: two adapters on one parameter sum their deltas.
func TestJoinOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	d1, d2 := randn(r, 8, 1), randn(r, 8, 1)
	a1, _ := Open(Spec{Path: writeLoRA(t, "a.safetensors", []tt{{name: "blocks.0.norm3.diff", shape: []int{8}, v: d1}}), Scale: 2})
	a2, _ := Open(Spec{Path: writeLoRA(t, "b.safetensors", []tt{{name: "blocks.0.norm3.diff", shape: []int{8}, v: d2}}), Scale: -1})
	defer a1.Close()
	defer a2.Close()
	s1, _, err := Bind(tinyTarget(), []*Adapter{a1}, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, _, err := Bind(tinyTarget(), []*Adapter{a2}, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Join(nil, s1, nil, s2).Delta("blocks.0.norm3.weight", []int{8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if want := 2*d1[i] + -1*d2[i]; got[i] != want {
			t.Fatalf("delta[%d] = %v, want %v", i, got[i], want)
		}
	}
	if Join(nil, nil) != nil {
		t.Error("Join of nothing is not nil")
	}
	var none *Set
	if ok, err := none.Merge("x", []int{1}, []float32{1}); ok || err != nil {
		t.Error("a nil set merged something")
	}
}
