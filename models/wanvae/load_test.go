package wanvae

import (
	"fmt"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// doctored presents a checkpoint with some tensors hidden or re-shaped.
type doctored struct {
	checkpoint.File
	hide  map[string]bool
	shape map[string][]int
}

func (d doctored) Names() []string {
	var out []string
	for _, n := range d.File.Names() {
		if !d.hide[n] {
			out = append(out, n)
		}
	}
	return out
}

func (d doctored) Info(name string) (checkpoint.Info, bool) {
	if d.hide[name] {
		return checkpoint.Info{}, false
	}
	info, ok := d.File.Info(name)
	if s, bad := d.shape[name]; bad {
		info.Shape = s
	}
	return info, ok
}

func wantErr(t *testing.T, err error, frags ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", frags)
	}
	for _, f := range frags {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

func TestLoadRejectsOtherModel(t *testing.T) {
	f := golden.Open(t, "umt5.safetensors")
	_, err := Load(cpu.New(), f, Options{DType: tensor.F32})
	wantErr(t, err, f.Path(), "not a Wan2.1 VAE", "decoder.conv1.weight", "conv2.weight")
}

// lastWithPrefix is the set's last tensor name (in sorted order) with the
// given prefix: a decoder upsample or encoder middle tensor, never one the
// configuration is read from.
func lastWithPrefix(t *testing.T, f checkpoint.File, prefix string) string {
	t.Helper()
	last := ""
	for _, n := range f.Names() {
		if strings.HasPrefix(n, prefix) && n > last {
			last = n
		}
	}
	if last == "" {
		t.Fatalf("%s: no tensor named %s*", f.Path(), prefix)
	}
	return last
}

func TestLoadNamesMissingTensors(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	dec, enc := lastWithPrefix(t, f, "weight.decoder."), lastWithPrefix(t, f, "weight.encoder.")
	d := doctored{File: f, hide: map[string]bool{dec: true, enc: true}}
	_, err := Load(cpu.New(), d, Options{DType: tensor.F32})
	wantErr(t, err, "missing 2 tensors", dec, enc)
}

func TestLoadNamesWrongShape(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	const key = "weight.decoder.middle.1.to_qkv.weight"
	info, ok := f.Info(key)
	if !ok || len(info.Shape) != 4 {
		t.Fatalf("%s: %s %v (present %v), want a 1x1 conv weight", f.Path(), key, info.Shape, ok)
	}
	bad := []int{info.Shape[0], info.Shape[1], 3, 3}
	d := doctored{File: f, shape: map[string][]int{key: bad}}
	_, err := Load(cpu.New(), d, Options{DType: tensor.BF16})
	wantErr(t, err, key, fmt.Sprint(info.Shape), fmt.Sprint(bad))
}

func TestLoadRejectsOtherLatentWidth(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	const key = "weight.decoder.conv1.weight"
	info, ok := f.Info(key)
	if !ok || len(info.Shape) != 5 {
		t.Fatalf("%s: %s %v (present %v), want a 3-D conv weight", f.Path(), key, info.Shape, ok)
	}
	bad := append([]int(nil), info.Shape...)
	bad[1] = 48 // the Wan2.2 VAE's latent width
	d := doctored{File: f, shape: map[string][]int{key: bad}}
	_, err := Load(cpu.New(), d, Options{DType: tensor.F32})
	wantErr(t, err, "latent channels 48", "Wan2.2")
}

func TestLoadRejectsDType(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	_, err := Load(cpu.New(), f, Options{DType: tensor.F16})
	wantErr(t, err, "float32 or bfloat16")
}

func TestBadInputs(t *testing.T) {
	v, _ := loadGolden(t, tensor.F32)
	z := v.Config().ZDim
	_, _, err := v.Decode(make([]float32, 8*2*4*4), []int{8, 2, 4, 4})
	wantErr(t, err, fmt.Sprintf("[%d,T,H,W]", z), "[8 2 4 4]")
	_, _, err = v.Decode(make([]float32, 10), []int{z, 2, 4, 4})
	wantErr(t, err, fmt.Sprintf("%d values, got 10", z*2*4*4))
	_, _, err = v.Encode(make([]float32, 3*8*16*16), []int{3, 8, 16, 16})
	wantErr(t, err, "8 frames", "1+4k")
	_, _, err = v.Encode(make([]float32, 3*5*12*16), []int{3, 5, 12, 16})
	wantErr(t, err, "12x16", "multiple of 8")
	_, _, err = v.Encode(make([]float32, 4*5*16*16), []int{4, 5, 16, 16})
	wantErr(t, err, "[3,F,H,W]")
}

// shapesOnly is a checkpoint that only describes tensors.
type shapesOnly struct {
	checkpoint.File
	shapes map[string][]int
}

func (s shapesOnly) Path() string { return "Wan2.1_VAE.pth" }
func (s shapesOnly) Names() []string {
	var n []string
	for k := range s.shapes {
		n = append(n, k)
	}
	return n
}
func (s shapesOnly) Info(name string) (checkpoint.Info, bool) {
	sh, ok := s.shapes[name]
	return checkpoint.Info{Name: name, DType: tensor.F32, Shape: sh}, ok
}

// The real checkpoint has no key prefix and base dim 96.
func TestDetectRealLayout(t *testing.T) {
	f := shapesOnly{shapes: map[string][]int{
		"decoder.conv1.weight":  {384, 16, 3, 3, 3},
		"decoder.head.2.weight": {3, 96, 3, 3, 3},
		"encoder.conv1.weight":  {96, 3, 3, 3, 3},
	}}
	prefix, cfg, err := detect(f)
	if err != nil {
		t.Fatal(err)
	}
	if prefix != "" || cfg != (Config{Dim: 96, ZDim: 16}) {
		t.Errorf("prefix %q config %+v, want \"\" and dim 96, z 16", prefix, cfg)
	}
}

// The loader must read every tensor of the reference's state dict, and
// accept it at a larger width: the conformance file's shapes with every
// width that is a multiple of the set's base dim scaled by 8 (z channels
// z/2z and RGB 3 unchanged; skipped where those are multiples of the base
// dim too, as the widths could not be told apart).
func TestLoaderCoversStateDict(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	l := newLoader(f, tensor.F32)
	l.Used = map[string]bool{}
	v0, err := load(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := v0.Config()
	const scale = 8
	wide := map[string][]int{}
	for _, n := range f.Names() {
		if !strings.HasPrefix(n, "weight.") {
			continue
		}
		if !l.Used[n] {
			t.Errorf("%s is in the reference state dict but not read", n)
		}
		info, _ := f.Info(n)
		s := append([]int(nil), info.Shape...)
		for i := 0; i < min(2, len(s)); i++ {
			if s[i]%cfg.Dim == 0 {
				s[i] *= scale
			}
		}
		wide[strings.TrimPrefix(n, "weight.")] = s
	}
	for n := range l.Used {
		if _, ok := f.Info(n); !ok {
			t.Errorf("loader reads %s, absent from the reference state dict", n)
		}
	}
	if cfg.ZDim%cfg.Dim == 0 || 2*cfg.ZDim%cfg.Dim == 0 || 3%cfg.Dim == 0 {
		t.Logf("base dim %d divides z %d, 2z or 3: the widened state dict is not built", cfg.Dim, cfg.ZDim)
		return
	}
	v, err := load(newLoader(shapesOnly{shapes: wide}, tensor.F32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Config{Dim: scale * cfg.Dim, ZDim: cfg.ZDim}); v.Config() != want {
		t.Errorf("widened config %+v, want %+v", v.Config(), want)
	}
}

// After Free the weights are gone: decoding reports an error, not a crash.
func TestFreeReleasesWeights(t *testing.T) {
	v, get := loadGolden(t, tensor.F32)
	want := 0
	for _, n := range golden.Open(t, "vae.safetensors").Names() {
		if strings.HasPrefix(n, "weight.") {
			want++
		}
	}
	if len(v.weights) != want {
		t.Errorf("%d weight tensors uploaded, the state dict has %d", len(v.weights), want)
	}
	v.Free()
	latent, ls := get("decode.latent")
	_, _, err := v.Decode(latent, ls)
	wantErr(t, err, "used after Free")
}
