package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

func TestExpertFromName(t *testing.T) {
	for _, c := range []struct {
		path string
		want Expert
		ok   bool
	}{
		{"/m/TurboWan2.2-I2V-A14B-high-720P.pth", HighNoise, true},
		{"/m/TurboWan2.2-I2V-A14B-low-720P-quant.pth", LowNoise, true},
		{"i2v_LOW.pth", LowNoise, true},
		{"/high/expert.pth", HighNoise, false}, // only the base name counts
		{"high_low.pth", HighNoise, false},
		{"a.safetensors", HighNoise, false},
		{"yellow_highres.pth", HighNoise, false}, // words, not substrings
	} {
		x, ok := ExpertFromName(c.path)
		if ok != c.ok || (ok && x != c.want) {
			t.Errorf("%s: %v, %v; want %v, %v", c.path, x, ok, c.want, c.ok)
		}
	}
}

// countingFile counts tensor data reads: the header checks must read none.
type countingFile struct {
	checkpoint.File
	reads *atomic.Int64
}

func (f countingFile) Float32(n string) ([]float32, error) { f.reads.Add(1); return f.File.Float32(n) }
func (f countingFile) Int8(n string) ([]int8, error)       { f.reads.Add(1); return f.File.Int8(n) }
func (f countingFile) Raw(n string) ([]byte, error)        { f.reads.Add(1); return f.File.Raw(n) }

// headerOpener opens real files, and "random:<in>x<out>" as a header-only
// I2V-shaped DiT of those channel counts; it counts data reads.
func headerOpener(reads *atomic.Int64) func(string) (checkpoint.File, error) {
	return func(p string) (checkpoint.File, error) {
		if p == "random:in20out8" {
			c := wan.Config{Type: wan.I2V, Dim: 128, FFNDim: 256, Heads: 1, HeadDim: 128, Layers: 1, InDim: 20, OutDim: 8,
				Patch: [3]int{1, 2, 2}, FreqDim: 256, TextDim: 64, TextLen: 512, Eps: 1e-6}
			return countingFile{testmodels.NewRandom(p, wan.Tensors(c), 1), reads}, nil
		}
		f, err := checkpoint.Open(p)
		if err != nil {
			return nil, err
		}
		return countingFile{f, reads}, nil
	}
}

// TestCheckI2VFiles: the set's experts and VAE pass the header check with
// the manifest's expert configuration; a mismatched pair, experts that do
// not fit the VAE, and a non-VAE as the VAE fail, each without reading a
// tensor.
func TestCheckI2VFiles(t *testing.T) {
	man := golden.LoadManifest(t)
	high, low, vae := golden.Path(t, i2vHighFile), golden.Path(t, i2vLowFile), golden.Path(t, i2vVAEFile)
	var reads atomic.Int64
	open := headerOpener(&reads)
	got, err := CheckI2VFiles(open, high, low, vae)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{i2vHighFile, i2vLowFile} {
		cfg := func(k string) int { return man.Int(t, "files", file, "config", k) }
		if got.Dim != cfg("dim") || got.FFNDim != cfg("ffn_dim") || got.Heads != cfg("num_heads") || got.Layers != cfg("num_layers") ||
			got.InDim != cfg("in_dim") || got.OutDim != cfg("out_dim") || got.FreqDim != cfg("freq_dim") || got.TextLen != cfg("text_len") ||
			string(got.Type) != man.String(t, "files", file, "config", "model_type") {
			t.Errorf("experts' configuration %s, manifest files.%s.config says otherwise", got, file)
		}
	}

	dir := t.TempDir()
	other := filepath.Join(dir, "other_low.safetensors")
	if err := testmodels.WriteWanI2V(other, 64, 3); err != nil {
		t.Fatal(err)
	}
	of, err := checkpoint.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	ofi, err := wan.DetectConfig(of)
	of.Close()
	if err != nil {
		t.Fatal(err)
	}
	diff := configDiff(got, ofi.Config)
	if diff == "" {
		t.Fatalf("the fixture expert has the set's configuration %s; the mismatch case needs another", got)
	}
	t2v := golden.Path(t, "dit_weights.pth")
	for _, c := range []struct {
		name           string
		high, low, vae string
		frags          []string
	}{
		{"experts of different sizes", high, other, vae, []string{"not a Wan2.2 I2V expert pair", high, other, diff}},
		{"T2V DiT as the low-noise expert", high, t2v, vae, []string{t2v, "low-noise", "t2v", "16 input channels"}},
		{"experts that do not fit the VAE", "random:in20out8", "random:in20out8", vae, []string{"do not fit the VAE", vae, "z_dim 16", "in 20, out 8", "in 36"}},
		{"DiT as the VAE", high, low, t2v, []string{"VAE", t2v}},
	} {
		_, err := CheckI2VFiles(open, c.high, c.low, c.vae)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		t.Logf("%s: %v", c.name, err)
		for _, f := range c.frags {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("%s: error does not mention %q", c.name, f)
			}
		}
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("the header checks read %d tensors, want none", n)
	}
}

// TestI2VMismatchFailsBeforeLoading: Generate with experts that are not a
// pair fails at its first stage, before the image, the text encoder, the
// VAE or an expert is loaded, having read no tensor.
func TestI2VMismatchFailsBeforeLoading(t *testing.T) {
	fx := newI2VFixture(t)
	files := fx.files
	files.DiTLow = golden.Path(t, i2vLowFile) // another architecture than the fixture's high expert
	var reads atomic.Int64
	be := cpu.New()
	eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}, OpenCheckpoint: headerOpener(&reads)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var events []string
	eng.Progress = func(ev Event) { events = append(events, ev.Stage) }
	_, err = eng.Generate(context.Background(), Request{Prompt: "x", Image: fx.image, Steps: 2, SigmaMax: 200, Size: Size{32, 32}, Frames: 1, Seed: 1, Samples: 1})
	if err == nil || !strings.Contains(err.Error(), "not a Wan2.2 I2V expert pair") {
		t.Fatalf("error %v, want the experts named as no pair", err)
	}
	t.Logf("%v", err)
	if len(events) != 0 || reads.Load() != 0 {
		t.Errorf("before failing: progress %q and %d tensor reads, want none", events, reads.Load())
	}
}
