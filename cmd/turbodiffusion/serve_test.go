package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/server"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// The server's generator lets the engine write the video itself (so an MP4
// streams during the decode) and reports the file it wrote; tiny models on
// the CPU, as `serve` builds them.
func TestEngineGeneratorWritesOutput(t *testing.T) {
	dir, enc := tinyEncoder(t)
	f := engineFlags{
		files:     pipeline.Files{DiT: golden.Path(t, "dit_weights.pth"), VAE: golden.Path(t, "vae.safetensors"), TextEncoder: enc, Tokenizer: golden.Path(t, "tokenizer")},
		attention: "sla", topk: 0.25, device: "cpu", dtype: "bf16", keepText: true, noCache: true,
	}
	eng, _, err := f.open(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	want := ".gif"
	if _, err := video.FFmpeg(); err == nil {
		want = ".mp4"
	}
	out := filepath.Join(dir, "video-1.mp4")
	req := pipeline.Request{Prompt: "a fox", Steps: 1, SigmaMax: 80, Size: pipeline.Size{W: 512, H: 512}, Frames: 1, Samples: 1, Seed: 3, Output: out}
	written, err := server.EngineGenerator{Engine: eng}.Generate(context.Background(), req, func(pipeline.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(written) != want || filepath.Dir(written) != dir {
		t.Fatalf("wrote %q, want a %s in %s", written, want, dir)
	}
	if want == ".mp4" {
		frames, err := video.ReadMP4(written, 512, 512)
		if err != nil || len(frames) != 1 {
			t.Fatalf("MP4 decodes to %d frames (%v), want 1", len(frames), err)
		}
	}
}
