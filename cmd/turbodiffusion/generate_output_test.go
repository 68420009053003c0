package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// An .mp4 output is encoded during the VAE decode: the timings show one
// overlapped stage with the encoder's own time, and the file holds the
// frames.
func TestGenerateCLIStreamsMP4(t *testing.T) {
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("skipping:", err)
	}
	dir, enc := tinyEncoder(t)
	out := filepath.Join(dir, "clip.mp4")
	stdout, stderr, err := run(t, tinyGenerateArgs(t, enc, out)...)
	t.Log(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout) != out {
		t.Errorf("stdout %q, want the written path %q", stdout, out)
	}
	frames, err := video.ReadMP4(out, 512, 512)
	if err != nil || len(frames) != 1 {
		t.Fatalf("MP4 decodes to %d frames (%v), want 1", len(frames), err)
	}
	for _, want := range []string{"decode+encode", "overlapped; encoder busy", "after the decode"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if strings.Contains(stderr, "  write ") {
		t.Error("a streamed MP4 must not also show a separate write stage")
	}
}

// An output format the writer refuses fails before any model loads.
func TestGenerateBadOutputFormat(t *testing.T) {
	_, _, err := run(t, "generate", "--model", t.TempDir(), "--prompt", "x", "-o", "clip.avi")
	if err == nil || !strings.Contains(err.Error(), `unknown format ".avi"`) {
		t.Fatalf("error %v, want an unknown-format error before the models are looked for", err)
	}
	if _, serr := os.Stat("clip.avi"); serr == nil {
		t.Error("a file was written")
	}
}

// An empty --output is refused before the models run (the request would
// have no output, and there would be no file to name).
func TestGenerateEmptyOutput(t *testing.T) {
	_, enc := tinyEncoder(t)
	stdout, stderr, err := run(t, tinyGenerateArgs(t, enc, "")...)
	if err == nil || !strings.Contains(err.Error(), "--output") {
		t.Fatalf("error %v, want one naming --output", err)
	}
	if stdout != "" || strings.Contains(stderr, "generating") {
		t.Errorf("generation started: stdout %q, stderr %q", stdout, stderr)
	}
}

// --preview writes one PNG per step (the latent-size frame of the x0
// estimate) and --preset/--crf reach x264 (whose settings the file records).
func TestGenerateCLIPreviewEncoding(t *testing.T) {
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("skipping:", err)
	}
	dir, enc := tinyEncoder(t)
	out := filepath.Join(dir, "clip.mp4")
	prev := filepath.Join(dir, "previews")
	args := append(tinyGenerateArgs(t, enc, out), "--preview", prev, "--preset", "ultrafast", "--crf", "40")
	_, stderr, err := run(t, args...)
	t.Log(stderr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(prev, "step_1.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 64 {
		t.Errorf("preview is %dx%d, want one 64x64 latent frame", b.Dx(), b.Dy())
	}
	if _, err := os.Stat(filepath.Join(prev, "step_2.png")); err == nil {
		t.Error("a preview for a step that did not run")
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// x264 writes its options into the stream: ultrafast turns CABAC off
	// and searches motion with the diamond at subpel level 0.
	for _, want := range []string{"crf=40.0", "cabac=0", "me=dia", "subme=0"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the MP4's x264 options lack %q", want)
		}
	}
}
