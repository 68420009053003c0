//go:build unix

package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/tokenizer"
)

// TestLoadersRefuseFIFOs: a named pipe given to inspect or any loader (DiT
// checkpoint, tokenizer file, input image) is refused at once; opening it
// for reading would block until a writer appears.
func TestLoadersRefuseFIFOs(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		return p
	}
	pth, js, png := mk("w.pth"), mk("tokenizer.json"), mk("in.png")
	cases := []struct {
		what string
		load func() error
	}{
		{"inspect", func() error { _, err := inspectOut(t, pth, false); return err }},
		{"generate --dit", func() error {
			dir, enc := tinyEncoder(t)
			args := withFlag(tinyGenerateArgs(t, enc, filepath.Join(dir, "x.gif")), "--dit", pth)
			_, _, err := run(t, args...)
			return err
		}},
		{"tokenizer", func() error { _, err := tokenizer.Load(js); return err }},
		{"image", func() error { _, err := pipeline.LoadImage(png); return err }},
	}
	for _, c := range cases {
		done := make(chan error, 1)
		go func() { done <- c.load() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s on a FIFO: error %v, want \"not a regular file\"", c.what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s on a FIFO: still blocked after 10 s", c.what)
		}
	}
}
