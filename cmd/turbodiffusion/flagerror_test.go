package main

import (
	"strings"
	"testing"
)

// A bad setting is refused before any file is opened, under its flag name
// (the pipeline names it by its canonical field; generate maps it).
func TestGenerateErrorsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--steps", "5"}, "--steps 5: rCM takes 1 to 4 steps"},
		{[]string{"--steps", "0"}, "--steps 0:"},
		{[]string{"--frames", "80"}, "--frames 80: must be 4k+1"},
		{[]string{"--frames", "1000000001"}, "--frames 1000000001: at most"},
		{[]string{"--resolution", "4k"}, `--resolution "4k": choose one of`},
		{[]string{"--aspect", "2:1"}, `--aspect "2:1"`},
		{[]string{"--attention", "flash"}, `--attention "flash": choose dense, sla or sagesla`},
		{[]string{"--sla-topk", "1.5"}, "--sla-topk 1.5: must be in (0, 1]"},
		{[]string{"--sampler", "ddim"}, `--sampler "ddim": choose rcm or unipc`},
		{[]string{"--sigma-max", "0"}, "--sigma-max 0:"},
		{[]string{"--samples", "0"}, "--samples 0:"},
		{[]string{"--boundary", "0.5"}, "--boundary 0.5: the expert boundary is for image-to-video"},
		{[]string{"--adaptive-resolution"}, "--adaptive-resolution: needs an input image"},
		{[]string{"--output", "x.avi"}, `--output "x.avi": unknown format`},
	} {
		args := append([]string{"generate", "--prompt", "x", "--model", t.TempDir()}, c.args...)
		_, _, err := run(t, args...)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error starting %q", c.args, err, c.want)
		}
	}
	if _, _, err := run(t, "generate", "--model", t.TempDir()); err == nil || !strings.HasPrefix(err.Error(), "--prompt: is required") {
		t.Errorf("no prompt: %v", err)
	}
}

// bench e2e checks its request with the same function, before opening a
// backend.
func TestBenchE2EErrorsNameTheFlag(t *testing.T) {
	_, _, err := run(t, "bench", "e2e", "--tokenizer", t.TempDir(), "--device", "cpu", "--frames", "80")
	if err == nil || !strings.HasPrefix(err.Error(), "--frames 80: must be 4k+1") {
		t.Fatalf("got %v", err)
	}
	_, _, err = run(t, "bench", "e2e", "--tokenizer", t.TempDir(), "--device", "cpu", "--sla-topk", "0")
	if err == nil || !strings.HasPrefix(err.Error(), "--sla-topk 0:") {
		t.Fatalf("got %v", err)
	}
}
