package pipeline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// TestGenerateTinyVAECPU runs text-to-video with --vae tiny on the tiny
// models (no Wan VAE at all): the clip's frames are the tiny VAE's decode
// of the pipeline's latent, and a streamed MP4 holds as many frames.
func TestGenerateTinyVAECPU(t *testing.T) {
	dir, files := tinyFiles(t, Files{TinyVAE: golden.TAEHVWeights(t)})
	if files.VAE != "" {
		t.Fatalf("Wan VAE %q found in an empty folder", files.VAE)
	}
	be := cpu.New()
	eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.SLA, TopK: 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var decodeEvents int
	eng.Progress = func(ev Event) {
		if ev.Stage == "decode" {
			decodeEvents++
		}
	}
	req := Request{Prompt: "A red fox", Steps: 1, SigmaMax: 80, Size: Size{256, 128}, Frames: 9, Seed: 3, Samples: 1}
	if _, err := video.FFmpeg(); err == nil {
		req.Output = filepath.Join(dir, "tiny.mp4")
	}
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Clip
	if len(c.Frames) != 9 || c.Width != 256 || c.Height != 128 {
		t.Fatalf("clip has %d frames of %dx%d, want 9 of 256x128", len(c.Frames), c.Width, c.Height)
	}
	if decodeEvents != 3 {
		t.Errorf("%d decode progress events, want 3 (one per latent frame)", decodeEvents)
	}
	f, err := checkpoint.Open(files.TinyVAE)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := taehv.Load(be, f, taehv.Options{DType: tensor.BF16})
	if err != nil {
		t.Fatal(err)
	}
	vid, vs, err := m.Decode(res.Latents[0], latentShape(t, req))
	if err != nil {
		t.Fatal(err)
	}
	want, err := taehv.Frames(vid, vs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for j := range want[i] {
			if want[i][j] != c.Frames[i][j] {
				t.Fatalf("frame %d byte %d: pipeline %d, tiny decode of its latent %d", i, j, c.Frames[i][j], want[i][j])
			}
		}
	}
	if req.Output == "" {
		t.Skip("ffmpeg missing, MP4 part skipped")
	}
	if res.Output == nil || !res.Output.Streamed {
		t.Fatalf("output %+v, want a streamed MP4", res.Output)
	}
	got, err := video.ReadMP4(req.Output, 256, 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Fatalf("MP4 holds %d frames, want 9", len(got))
	}
}

// TestTinyVAEPreviews: with --vae tiny and no Wan VAE in the folder, live
// previews come from the tiny VAE at video resolution, one per step, and
// the preview decoder shows the right frames.
func TestTinyVAEPreviews(t *testing.T) {
	_, files := tinyFiles(t, Files{TinyVAE: golden.TAEHVWeights(t)})
	be := cpu.New()
	eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var got []Preview
	req := Request{Prompt: "A red fox", Steps: 2, SigmaMax: 80, Size: Size{256, 128}, Frames: 9, Seed: 5, Samples: 1,
		OnPreview: func(p Preview) { got = append(got, p) }}
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d previews for 2 steps", len(got))
	}
	last := got[len(got)-1]
	if last.Width != 256 || last.Height != 128 || len(last.Frames) == 0 {
		t.Fatalf("preview %dx%d with %d frames, want the tiny VAE's 256x128", last.Width, last.Height, len(last.Frames))
	}
	// The decoder itself: the first listed latent frame decodes on its own
	// (the tiny VAE is causal), so it must be the full decode's first frame,
	// byte for byte; a later frame is the last video frame of its group.
	lat, ls := res.Latents[0], latentShape(t, req)
	T := ls[1]
	w, h, rgb, err := tinyPreview{eng.tiny}.PreviewFrames(lat, ls, []int{0, T - 1})
	if err != nil {
		t.Fatal(err)
	}
	if w != 256 || h != 128 || len(rgb) != 2 {
		t.Fatalf("PreviewFrames: %d frames of %dx%d", len(rgb), w, h)
	}
	want := res.Clip.Frames[0]
	for j := range want {
		if rgb[0][j] != want[j] {
			t.Fatalf("preview of latent frame 0, byte %d: %d, the clip's first frame %d", j, rgb[0][j], want[j])
		}
	}
}

// latentShape is the latent [C,T,H,W] of a one-sample request on the set's
// DiT: its output channels from the manifest, 4× fewer frames (plus the
// first) and 8× fewer pixels each way, the VAEs' compression.
func latentShape(t *testing.T, r Request) []int {
	t.Helper()
	c := golden.LoadManifest(t).Int(t, "configs", "dit", "out_dim")
	return []int{c, (r.Frames-1)/4 + 1, r.Size.H / 8, r.Size.W / 8}
}
