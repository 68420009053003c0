package pipeline

import (
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
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// headerOnly wraps a checkpoint and counts reads of tensor data.
type headerOnly struct {
	checkpoint.File
	reads *atomic.Int64
}

func (h headerOnly) Raw(n string) ([]byte, error)        { h.reads.Add(1); return h.File.Raw(n) }
func (h headerOnly) Float32(n string) ([]float32, error) { h.reads.Add(1); return h.File.Float32(n) }
func (h headerOnly) Int8(n string) ([]int8, error)       { h.reads.Add(1); return h.File.Int8(n) }

// TestModelFilesCheckedBeforeLoading: a DiT and VAE given in each other's
// places, a text encoder whose width is not the DiT's text width, a DiT
// whose channels are not the VAE's latent channels, a file of no known
// family: each is reported by New, naming the files, without a single
// tensor read from any file.
func TestModelFilesCheckedBeforeLoading(t *testing.T) {
	dir := t.TempDir()
	man := golden.LoadManifest(t)
	textDim := man.Int(t, "configs", "dit", "text_dim")
	enc := filepath.Join(dir, "enc.safetensors")
	if err := testmodels.WriteUMT5(enc, goldenVocab(t), textDim, 7); err != nil {
		t.Fatal(err)
	}
	narrow := filepath.Join(dir, "narrow-enc.safetensors")
	if err := testmodels.WriteUMT5(narrow, goldenVocab(t), 64, 7); err != nil {
		t.Fatal(err)
	}
	// A text-to-video DiT with 12 latent channels (the VAE has 16).
	c := wan.Config{Type: wan.T2V, Dim: 128, FFNDim: 256, Heads: 1, HeadDim: 128, Layers: 1, InDim: 12, OutDim: 12,
		Patch: [3]int{1, 2, 2}, FreqDim: 32, TextDim: textDim, TextLen: 512, Eps: 1e-6}
	odd := filepath.Join(dir, "dit12.safetensors")
	writeRandom(t, odd, testmodels.NewRandom("dit12", wan.Tensors(c), 1))
	c.Type, c.InDim, c.OutDim = wan.I2V, 36, 16
	i2v := filepath.Join(dir, "i2v.safetensors")
	writeRandom(t, i2v, testmodels.NewRandom("i2v", wan.Tensors(c), 1))
	other := filepath.Join(dir, "other.safetensors")
	writeRandom(t, other, testmodels.NewRandom("other", []checkpoint.Info{{Name: "foo.weight", DType: tensor.F32, Shape: []int{4, 4}}}, 1))

	dit, vae := golden.Path(t, "dit_weights.pth"), golden.Path(t, "vae.safetensors")
	cases := []struct {
		what  string
		files Files
		frags []string
	}{
		{"swapped DiT and VAE", Files{DiT: vae, VAE: dit, TextEncoder: enc},
			[]string{"DiT " + vae + " is a Wan VAE checkpoint, not a Wan DiT", "VAE " + dit + " is a Wan DiT", "swapped"}},
		{"text encoder of another width", Files{DiT: dit, VAE: vae, TextEncoder: narrow},
			[]string{"text encoder " + narrow, "wide", dit}},
		{"DiT channels unlike the VAE's", Files{DiT: odd, VAE: vae, TextEncoder: enc},
			[]string{"DiT " + odd + " is a text-to-video DiT with 12 input channels and 12 output channels", "needs 16 (the latent) in and 16 out"}},
		{"an image-to-video expert as the DiT", Files{DiT: i2v, VAE: vae, TextEncoder: enc},
			[]string{"DiT " + i2v + " is an image-to-video DiT with 36 input channels", "(a text-to-video model)"}},
		{"text encoder given as VAE", Files{DiT: dit, VAE: enc, TextEncoder: enc},
			[]string{"VAE " + enc + " is a umT5 text encoder checkpoint, not a Wan VAE"}},
		{"a file of no family", Files{DiT: dit, VAE: vae, TextEncoder: other},
			[]string{"text encoder " + other + " is not a umT5 text encoder checkpoint"}},
	}
	be := cpu.New()
	for _, tc := range cases {
		var reads atomic.Int64
		open := func(p string) (checkpoint.File, error) {
			f, err := checkpoint.Open(p)
			if err != nil {
				return nil, err
			}
			return headerOnly{f, &reads}, nil
		}
		tc.files.Tokenizer = golden.Path(t, "tokenizer")
		eng, err := New(be, be, Options{Files: tc.files, DiTOptions: DiTOptions{Attention: backend.Dense}, OpenCheckpoint: open})
		if err == nil {
			eng.Close()
			t.Errorf("%s: accepted", tc.what)
			continue
		}
		t.Logf("%s: %v", tc.what, err)
		for _, f := range tc.frags {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("%s: error %q does not mention %q", tc.what, err, f)
			}
		}
		if n := reads.Load(); n != 0 {
			t.Errorf("%s: %d tensors read before the error", tc.what, n)
		}
	}
	// The fitting set passes the check (and reads nothing either).
	var reads atomic.Int64
	eng, err := New(be, be, Options{
		Files:      Files{DiT: dit, VAE: vae, TextEncoder: enc, Tokenizer: golden.Path(t, "tokenizer")},
		DiTOptions: DiTOptions{Attention: backend.Dense},
		OpenCheckpoint: func(p string) (checkpoint.File, error) {
			f, err := checkpoint.Open(p)
			return headerOnly{f, &reads}, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	eng.Close()
	if reads.Load() != 0 {
		t.Errorf("New read %d tensors", reads.Load())
	}
}

func writeRandom(t *testing.T, path string, r *testmodels.Random) {
	t.Helper()
	var ts []checkpoint.Tensor
	for _, n := range r.Names() {
		info, _ := r.Info(n)
		raw, err := r.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, checkpoint.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	if err := checkpoint.WriteSafetensors(path, ts); err != nil {
		t.Fatal(err)
	}
}

// TestCheckHeadersExpertRoles: the check takes the image-to-video roles
// too (for the expert checks to reuse): a text-to-video DiT as an expert
// does not fit, a fitting pair of experts does.
func TestCheckHeadersExpertRoles(t *testing.T) {
	dir := t.TempDir()
	t2v, high := filepath.Join(dir, "t2v.safetensors"), filepath.Join(dir, "high.safetensors")
	if err := testmodels.WriteWanT2V(t2v, 64, 5); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteWanI2V(high, 64, 6); err != nil {
		t.Fatal(err)
	}
	read := func(r Role, p string) Header {
		h, err := ReadHeader(nil, r, p)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	vae := read(RoleVAE, golden.Path(t, "vae.safetensors"))
	err := CheckHeaders([]Header{read(RoleDiTHigh, high), read(RoleDiTLow, t2v), vae})
	if err == nil || !strings.Contains(err.Error(), "low-noise expert "+t2v+" is a text-to-video DiT with 16 input channels") {
		t.Errorf("text-to-video DiT as the low-noise expert: %v", err)
	}
	if err := CheckHeaders([]Header{read(RoleDiTHigh, high), read(RoleDiTLow, high), vae}); err != nil {
		t.Errorf("fitting experts: %v", err)
	}
}
