package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// TestBenchServe: `bench e2e --serve` drives a real engine (the set's tiny
// DiT and VAE on the CPU) through the HTTP API and reports the client-side
// times of the step-0 event, the first preview and the finished video, in
// that order.
func TestBenchServe(t *testing.T) {
	_, enc := tinyEncoder(t)
	attn, _ := pipeline.ParseAttention("sla")
	be, _, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := pipeline.New(be, be, pipeline.Options{Files: pipeline.Files{
		DiT: golden.Path(t, "dit_weights.pth"), VAE: golden.Path(t, "vae.safetensors"),
		TextEncoder: enc, Tokenizer: golden.Path(t, "tokenizer")}, DiTOptions: pipeline.DiTOptions{Attention: attn}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	req, err := pipeline.Params{Prompt: "a fox", Steps: pipeline.Ptr(2), Resolution: "512", Aspect: "1:1",
		Frames: pipeline.Ptr(1), Seed: pipeline.Ptr[uint64](1), Attention: "sla", TopK: pipeline.Ptr(0.25)}.Request(pipeline.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	req.Output = filepath.Join(t.TempDir(), "unused.gif")
	var out bytes.Buffer
	if err := benchServe(&out, eng, req, 1); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`sampling started ([0-9.]+) ms after the POST, first preview ([0-9.]+) ms after that, (\d+) previews, video completed ([0-9.]+) ms`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output %q", out.String())
	}
	f := func(i int) float64 { v, _ := strconv.ParseFloat(m[i], 64); return v }
	if f(3) != 2 || f(1) <= 0 || f(2) <= 0 || f(1)+f(2) > f(4) {
		t.Errorf("want 2 previews, sampling start > 0, the first preview after it and before the video: %q", out.String())
	}
}
