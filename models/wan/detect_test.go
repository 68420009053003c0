package wan

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestDetectLayouts(t *testing.T) {
	c := tinyConfig()
	for _, l := range []layout{{}, {convPatch: true}, {quantized: true}, {projL: true}, {quantized: true, projL: true, convPatch: true}} {
		fi, err := DetectConfig(specFile(t, c, l, nil))
		if err != nil {
			t.Fatalf("layout %+v: %v", l, err)
		}
		if fi.Config != c || fi.Quantized != l.quantized || fi.ProjL != l.projL || fi.ConvPatch != l.convPatch {
			t.Errorf("layout %+v: detected %+v, want config %+v", l, fi, c)
		}
		if fi.Params <= 0 {
			t.Errorf("layout %+v: parameter count %d", l, fi.Params)
		}
	}
}

func TestDetectI2VType(t *testing.T) {
	c := base("", I2V, 128, 256, 1, 1, 36)
	c.FreqDim, c.TextDim = 32, 64
	fi, err := DetectConfig(specFile(t, c, layout{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Config.Type != I2V || fi.Config.InDim != 36 || fi.Config.OutDim != 16 {
		t.Errorf("detected %v, want i2v with 36 → 16 channels", fi.Config)
	}
}

func TestDetectParamsCountsScalesOut(t *testing.T) {
	c := tinyConfig()
	plain, err := DetectConfig(specFile(t, c, layout{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	quant, err := DetectConfig(specFile(t, c, layout{quantized: true}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Params != quant.Params {
		t.Errorf("quantised file counts %d parameters, float file %d; int8 codes should count once, scales not at all", quant.Params, plain.Params)
	}
}

// wantErr fails unless err mentions every fragment.
func wantErr(t *testing.T, err error, frags ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error mentioning %q, got none", frags)
	}
	for _, f := range frags {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

func TestDetectMissingKey(t *testing.T) {
	f := specFile(t, tinyConfig(), layout{}, func(ts []stTensor) []stTensor {
		var out []stTensor
		for _, s := range ts {
			if s.name != "blocks.1.cross_attn.norm_k.weight" {
				out = append(out, s)
			}
		}
		return out
	})
	_, err := DetectConfig(f)
	wantErr(t, err, "mem.safetensors", "missing 1 tensor", `"blocks.1.cross_attn.norm_k.weight"`)
}

func TestDetectUnexpectedKey(t *testing.T) {
	f := specFile(t, tinyConfig(), layout{}, func(ts []stTensor) []stTensor {
		return append(ts, stTensor{"blocks.0.self_attn.extra.weight", tensor.BF16, []int{4}})
	})
	_, err := DetectConfig(f)
	wantErr(t, err, "unexpected 1 tensor", `"blocks.0.self_attn.extra.weight"`)
}

func TestDetectWrongShape(t *testing.T) {
	f := specFile(t, tinyConfig(), layout{}, func(ts []stTensor) []stTensor {
		for i := range ts {
			if ts[i].name == "blocks.0.ffn.2.weight" {
				ts[i].shape = []int{128, 255}
			}
		}
		return ts
	})
	_, err := DetectConfig(f)
	wantErr(t, err, "mem.safetensors", `"blocks.0.ffn.2.weight"`, "want shape [128 256]", "got [128 255]")
}

func TestDetectWrongDType(t *testing.T) {
	f := specFile(t, tinyConfig(), layout{quantized: true}, func(ts []stTensor) []stTensor {
		for i := range ts {
			if ts[i].name == "blocks.0.ffn.0.int8_weight" {
				ts[i].dt = tensor.BF16
			}
		}
		return ts
	})
	_, err := DetectConfig(f)
	wantErr(t, err, `"blocks.0.ffn.0.int8_weight"`, "want dtype int8", "got bfloat16")
}

func TestDetectPartialProjL(t *testing.T) {
	// proj_l in block 0 only: block 1's are reported missing.
	f := specFile(t, tinyConfig(), layout{projL: true}, func(ts []stTensor) []stTensor {
		var out []stTensor
		for _, s := range ts {
			if !strings.HasPrefix(s.name, "blocks.1."+projLPrefix) {
				out = append(out, s)
			}
		}
		return out
	})
	_, err := DetectConfig(f)
	wantErr(t, err, "missing 2 tensor", "blocks.1."+projLPrefix+".bias")
}

func TestDetectBadPatchEmbedding(t *testing.T) {
	f := buildFile(t, "pe.safetensors", []stTensor{{"patch_embedding.weight", tensor.BF16, []int{128, 63}}})
	_, err := DetectConfig(f)
	wantErr(t, err, "pe.safetensors", `"patch_embedding.weight"`, "got [128 63]")
}

// keysOf reads a golden file's tensor names that start with prefix, prefix
// stripped, as tiny one-element tensors.
func keysOf(t *testing.T, file, prefix string) []stTensor {
	f := golden.Open(t, file)
	var ts []stTensor
	for _, n := range f.Names() {
		if rest, ok := strings.CutPrefix(n, prefix); ok {
			ts = append(ts, stTensor{rest, tensor.F32, []int{1}})
		}
	}
	if len(ts) == 0 {
		t.Fatalf("%s has no %q tensors", file, prefix)
	}
	return ts
}

func TestDetectVAEGivenAsDiT(t *testing.T) {
	f := buildFile(t, "Wan2.1_VAE.safetensors", keysOf(t, "vae.safetensors", "weight."))
	_, err := DetectConfig(f)
	wantErr(t, err, "Wan2.1_VAE.safetensors", "looks like a Wan VAE checkpoint, not a DiT")
	if got := Identify(f.Names()); got != FamilyWanVAE {
		t.Errorf("Identify = %q, want %q", got, FamilyWanVAE)
	}
}

func TestDetectUMT5GivenAsDiT(t *testing.T) {
	f := buildFile(t, "umt5.safetensors", keysOf(t, "umt5.safetensors", "weight."))
	_, err := DetectConfig(f)
	wantErr(t, err, "looks like a umT5 text encoder checkpoint, not a DiT")
}

func TestDetectPrefixedKeys(t *testing.T) {
	f := buildFile(t, "train.safetensors", []stTensor{{"net.patch_embedding.weight", tensor.BF16, []int{128, 64}}})
	_, err := DetectConfig(f)
	wantErr(t, err, `prefix "net."`)
}

func TestDetectEmptyAndForeign(t *testing.T) {
	_, err := DetectConfig(buildFile(t, "empty.safetensors", nil))
	wantErr(t, err, "empty.safetensors", "no tensors")
	_, err = DetectConfig(buildFile(t, "x.safetensors", []stTensor{{"foo", tensor.F32, []int{2}}}))
	wantErr(t, err, "not a Wan DiT checkpoint", `"patch_embedding.weight"`)
}

// TestDetectGoldenWeights: the configuration detected from the set's DiT
// checkpoint is the one the manifest records (configs.dit).
func TestDetectGoldenWeights(t *testing.T) {
	f := golden.Open(t, "dit_weights.safetensors")
	man := golden.LoadManifest(t)
	fi, err := DetectConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	num := func(k string) int { return man.Int(t, "configs", "dit", k) }
	ps := man.Ints(t, "configs", "dit", "patch_size")
	if len(ps) != 3 {
		t.Fatalf("manifest configs.dit.patch_size %v, want 3 entries", ps)
	}
	want := Config{Type: ModelType(man.String(t, "configs", "dit", "model_type")), Dim: num("dim"), FFNDim: num("ffn_dim"),
		Heads: num("num_heads"), HeadDim: num("head_dim"), Layers: num("num_layers"), InDim: num("in_dim"), OutDim: num("out_dim"),
		Patch: [3]int{ps[0], ps[1], ps[2]}, FreqDim: num("freq_dim"), TextDim: num("text_dim"), TextLen: num("text_len"),
		Eps: float32(man.Number(t, "configs", "dit", "eps"))}
	got := fi.Config
	got.Name = ""
	if got != want || !fi.ProjL || fi.Quantized || fi.ConvPatch {
		t.Errorf("golden DiT detected as %+v, manifest configs.dit says %+v with proj_l", fi, want)
	}
}

func TestPresets(t *testing.T) {
	for _, p := range Presets {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		if got := matchPreset(p); got != p.Name {
			t.Errorf("matchPreset(%s) = %q", p.Name, got)
		}
	}
	for alias, name := range map[string]string{"Wan2.1-1.3B": "Wan2.1-T2V-1.3B", "wan2.2-a14b": "Wan2.2-I2V-A14B", "Wan2.1-T2V-14B": "Wan2.1-T2V-14B"} {
		p, err := Preset(alias)
		if err != nil || p.Name != name {
			t.Errorf("Preset(%q) = %q, %v; want %q", alias, p.Name, err, name)
		}
	}
	_, err := Preset("Wan9")
	wantErr(t, err, `"Wan9"`, "Wan2.1-T2V-1.3B")
}

// TestQuantScaleShapes checks the scale shapes docs/NUMERICS.md §4.3 lists for
// the released -quant files.
func TestQuantScaleShapes(t *testing.T) {
	want := map[string]map[string][]int{
		"Wan2.1-T2V-1.3B": {"ffn.0": {70, 12}, "ffn.2": {12, 70}, "self_attn.q": {12, 12}},
		"Wan2.1-T2V-14B":  {"ffn.0": {108, 40}, "ffn.2": {40, 108}, "cross_attn.o": {40, 40}},
	}
	for name, m := range want {
		p, _ := Preset(name)
		got := map[string][]int{}
		for _, s := range expectedTensors(p, layout{quantized: true}) {
			if r, ok := strings.CutPrefix(s.name, "blocks.0."); ok && s.kind == kindScale {
				got[strings.TrimSuffix(r, ".scale")] = s.shape
			}
		}
		for lin, shape := range m {
			if !slices.Equal(got[lin], shape) {
				t.Errorf("%s %s.scale: shape %v, want %v", name, lin, got[lin], shape)
			}
		}
	}
}

func TestLoadOptionErrors(t *testing.T) {
	// Option errors come before any upload, so no backend is needed.
	var be backend.DiT
	c := tinyConfig()
	cases := []struct {
		l    layout
		opt  Options
		frag string
	}{
		{layout{}, Options{Attention: backend.SLA}, "proj_l"},
		{layout{}, Options{Linear: LinearInt8}, "not quantised"},
		{layout{quantized: true}, Options{Linear: LinearFloat}, "int8-quantised"},
		{layout{quantized: true}, Options{DType: tensor.F32}, "only in bfloat16"},
		{layout{projL: true}, Options{Attention: backend.SLA, TopK: 1.5}, "top-k"},
		{layout{}, Options{DType: tensor.F16}, "model dtype"},
	}
	for _, tc := range cases {
		_, err := Load(be, specFile(t, c, tc.l, nil), tc.opt)
		wantErr(t, err, "mem.safetensors", tc.frag)
	}
}

// TestDetectHeadDim: the head width comes from the SLA proj_l weights
// ([head_dim, head_dim]) when present, else from the caller, else 128.
func TestDetectHeadDim(t *testing.T) {
	c64 := base("", T2V, 128, 256, 2, 2, 16) // 2 heads of 64
	c64.FreqDim, c64.TextDim = 32, 64
	c128 := c64
	c128.Heads, c128.HeadDim = 1, 128
	cases := []struct {
		what string
		file Config
		l    layout
		opt  DetectOptions
		want Config
		from HeadDimSource
	}{
		{"proj_l 64", c64, layout{projL: true}, DetectOptions{}, c64, HeadDimFromProjL},
		{"proj_l 64, same option", c64, layout{projL: true}, DetectOptions{HeadDim: 64}, c64, HeadDimFromProjL},
		{"proj_l 128", c128, layout{projL: true, quantized: true}, DetectOptions{}, c128, HeadDimFromProjL},
		{"no proj_l", c64, layout{}, DetectOptions{}, c128, HeadDimDefault},
		{"no proj_l, option 64", c64, layout{}, DetectOptions{HeadDim: 64}, c64, HeadDimFromOption},
	}
	for _, tc := range cases {
		fi, err := DetectConfigWith(specFile(t, tc.file, tc.l, nil), tc.opt)
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		if fi.Config != tc.want || fi.HeadDimFrom != tc.from {
			t.Errorf("%s: detected %v (head dim from %s), want %v from %s", tc.what, fi.Config, fi.HeadDimFrom, tc.want, tc.from)
		}
		if note := fi.HeadDimNote(); !strings.Contains(note, fmt.Sprintf("head dim %d", tc.want.HeadDim)) || !strings.Contains(note, map[HeadDimSource]string{HeadDimFromProjL: "proj_l weights [", HeadDimDefault: "assumed", HeadDimFromOption: "caller"}[tc.from]) {
			t.Errorf("%s: note %q does not say where head dim %d came from", tc.what, note, tc.want.HeadDim)
		}
	}

	_, err := DetectConfigWith(specFile(t, c64, layout{projL: true}, nil), DetectOptions{HeadDim: 128})
	wantErr(t, err, "mem.safetensors", "head dim 128 requested", "proj_l", "say 64")
	c96 := c64
	c96.Dim, c96.Heads, c96.HeadDim = 96, 1, 96
	_, err = DetectConfig(specFile(t, c96, layout{}, nil))
	wantErr(t, err, "model dim 96", "head dim 128 (default)")
	_, err = DetectConfig(specFile(t, c64, layout{projL: true}, func(ts []stTensor) []stTensor {
		for i := range ts {
			if ts[i].name == "blocks.0."+projLPrefix+".weight" {
				ts[i].shape = []int{64, 32}
			}
		}
		return ts
	}))
	wantErr(t, err, "proj_l.weight", "want shape [head_dim, head_dim], got [64 32]")
	// A later block whose proj_l disagrees with block 0's is a shape error.
	_, err = DetectConfig(specFile(t, c64, layout{projL: true}, func(ts []stTensor) []stTensor {
		for i := range ts {
			if ts[i].name == "blocks.1."+projLPrefix+".weight" {
				ts[i].shape = []int{128, 128}
			}
		}
		return ts
	}))
	wantErr(t, err, "blocks.1."+projLPrefix+".weight", "want shape [64 64], got [128 128]")
}
