package pipeline

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
	"github.com/turbodiffusion-go/turbodiffusion/tokenizer"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// tinyFiles is a models folder of tiny models: the set's DiT and tokenizer,
// a random umT5 written into a fresh folder that fits them (the tokenizer's
// vocabulary, the DiT's text width), and the decoder files of over.
func tinyFiles(t *testing.T, over Files) (dir string, files Files) {
	t.Helper()
	dir = t.TempDir()
	textDim := golden.LoadManifest(t).Int(t, "configs", "dit", "text_dim")
	if err := testmodels.WriteUMT5(filepath.Join(dir, TextEncoderFile), goldenVocab(t), textDim, 7); err != nil {
		t.Fatal(err)
	}
	over.DiT, over.Tokenizer = golden.Path(t, "dit_weights.pth"), golden.Path(t, "tokenizer")
	files, err := FindModels(dir, "", over)
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// TestGenerateEndToEndCPU runs prompt → tokens → umT5 → DiT (2 rCM steps) →
// VAE → MP4 on tiny models: the golden DiT and VAE, the golden tokenizer and
// a random umT5 that fits them.
func TestGenerateEndToEndCPU(t *testing.T) {
	dir, files := tinyFiles(t, Files{VAE: golden.Path(t, "vae.safetensors")})
	be := cpu.New()
	eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.SLA, TopK: 0.25}, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	req := Request{Prompt: "A red fox runs through “fresh” snow", Steps: 2, SigmaMax: 80, Size: Size{256, 128}, Frames: 5, Seed: 42, Samples: 1}
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range res.Timings {
		t.Logf("%-10s %v", tm.Stage, tm.Duration)
	}
	c := res.Clip
	if len(c.Frames) != 5 || c.Width != 256 || c.Height != 128 {
		t.Fatalf("clip has %d frames of %dx%d, want 5 of 256x128", len(c.Frames), c.Width, c.Height)
	}

	// The frames must be the reference's uint8 rule applied to a decode of the
	// pipeline's own latent.
	f, err := checkpoint.Open(files.VAE)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := wanvae.Load(be, f, wanvae.Options{DType: tensor.BF16})
	if err != nil {
		t.Fatal(err)
	}
	// 5 frames of 256x128 are 2 latent frames of 32x16.
	vid, vs, err := v.Decode(res.Latents[0], []int{v.Config().ZDim, 2, 16, 32})
	if err != nil {
		t.Fatal(err)
	}
	want, err := wanvae.Frames(vid, vs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for j := range want[i] {
			if want[i][j] != c.Frames[i][j] {
				t.Fatalf("frame %d byte %d: pipeline %d, decode of its latent %d", i, j, c.Frames[i][j], want[i][j])
			}
		}
	}

	// The MP4 holds those frames (lossy H.264, compared by PSNR).
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("ffmpeg missing, MP4 part skipped:", err)
	}
	out := filepath.Join(dir, "out.mp4")
	if _, _, err := WriteOutput(out, c); err != nil {
		t.Fatal(err)
	}
	got, err := video.ReadMP4(out, 256, 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("MP4 decodes to %d frames, want 5", len(got))
	}
	psnr := func(a, b [][]byte) float64 {
		var se float64
		for i := range a {
			for j := range a[i] {
				d := float64(a[i][j]) - float64(b[i][j])
				se += d * d
			}
		}
		return 10 * math.Log10(255*255/(se/float64(len(a)*len(a[0]))))
	}
	// The random tiny models give noise-like frames, the hardest content for
	// H.264 at CRF 25 with 4:2:0 chroma, so the bound is loose; the frames
	// in the wrong order must match clearly worse, so a mix-up is caught.
	good := psnr(got, want)
	reversed := make([][]byte, len(want))
	for i := range want {
		reversed[i] = want[len(want)-1-i]
	}
	bad := psnr(got, reversed)
	t.Logf("MP4 vs decoded frames: PSNR %.1f dB (frames reversed: %.1f dB)", good, bad)
	if good < 18 || good < bad+3 {
		t.Errorf("MP4 frames do not match the decoded frames: PSNR %.1f dB, reversed order %.1f dB", good, bad)
	}

	// A new engine given the same prompt must take the context from the
	// prompt cache and never load the encoder.
	eng.Close()
	eng2, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.SLA, TopK: 0.25}, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	var notes []string
	eng2.Progress = func(ev Event) {
		if ev.Stage == "encode" {
			notes = append(notes, ev.Note)
		}
	}
	req.Steps = 1
	if _, err := eng2.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0] != "cached" {
		t.Fatalf("second run's encode events %q, want one cache hit and no encoder load", notes)
	}
}

// goldenVocab is the vocabulary size of the set's tokenizer, which a random
// umT5 must cover.
func goldenVocab(t *testing.T) int {
	t.Helper()
	tk, err := tokenizer.Load(golden.Path(t, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	return tk.VocabSize()
}
