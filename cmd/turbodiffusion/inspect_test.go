package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
)

func inspectOut(t *testing.T, path string, list bool) (string, error) {
	t.Helper()
	var b bytes.Buffer
	err := inspect(&b, path, list)
	return b.String(), err
}

func wantLines(t *testing.T, out string, frags ...string) {
	t.Helper()
	for _, f := range frags {
		if !strings.Contains(out, f) {
			t.Errorf("output lacks %q:\n%s", f, out)
		}
	}
}

func TestInspectDiT(t *testing.T) {
	out, err := inspectOut(t, golden.Path(t, "dit_int8.pth"), true)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "Wan DiT", "dim 256, ffn 1024, 2 heads × 128, 2 layers", "int8-quantised", "proj_l present",
		"blocks.0.ffn.0.scale", "float32", "[8 2]")
	out, err = inspectOut(t, golden.Path(t, "dit_weights.safetensors"), false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "float (not quantised)", "params:   3.82 M")
	if strings.Contains(out, "blocks.0.ffn.0.weight") {
		t.Error("tensors listed without --tensors")
	}
}

func TestInspectOtherModels(t *testing.T) {
	out, err := inspectOut(t, golden.Path(t, "vae.safetensors"), false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "Wan VAE (z_dim 16")
	out, err = inspectOut(t, golden.Path(t, "umt5.safetensors"), false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "umT5 text encoder (vocab 1000, dim 64, 2 layers)")
}

func TestInspectBadFiles(t *testing.T) {
	dir := t.TempDir()
	// Not a checkpoint at all.
	txt := filepath.Join(dir, "notes.txt")
	os.WriteFile(txt, []byte("hello, not a checkpoint"), 0o644)
	if _, err := inspectOut(t, txt, false); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("text file: %v", err)
	}
	// A DiT with only its patch embedding: summary, then an error.
	h := []byte(`{"patch_embedding.weight":{"dtype":"BF16","shape":[128,64],"data_offsets":[0,16384]}}`)
	buf := make([]byte, 8, 8+len(h)+16384)
	binary.LittleEndian.PutUint64(buf, uint64(len(h)))
	buf = append(append(buf, h...), make([]byte, 16384)...)
	bad := filepath.Join(dir, "broken.safetensors")
	os.WriteFile(bad, buf, 0o644)
	out, err := inspectOut(t, bad, false)
	if err == nil || !strings.Contains(err.Error(), "broken.safetensors") || !strings.Contains(err.Error(), "no transformer blocks") {
		t.Errorf("broken DiT: %v", err)
	}
	wantLines(t, out, "invalid")
	if _, err := inspectOut(t, filepath.Join(dir, "missing.pth"), false); err == nil {
		t.Error("missing file: no error")
	}
}
