package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The LoRA folder of serve: --lora-dir (a folder that exists), else the
// models folder's loras when there is one, else none.
func TestServeLoRADir(t *testing.T) {
	models := t.TempDir()
	if d, err := serveLoRADir("", models); d != "" || err != nil {
		t.Errorf("no loras folder: %q %v", d, err)
	}
	if err := os.Mkdir(filepath.Join(models, "loras"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d, err := serveLoRADir("", models); d != filepath.Join(models, "loras") || err != nil {
		t.Errorf("models/loras: %q %v", d, err)
	}
	other := t.TempDir()
	if d, err := serveLoRADir(other, models); d != other || err != nil {
		t.Errorf("--lora-dir: %q %v", d, err)
	}
	file := filepath.Join(other, "f")
	os.WriteFile(file, nil, 0o644)
	for _, bad := range []string{filepath.Join(other, "none"), file} {
		if _, err := serveLoRADir(bad, models); err == nil || !strings.Contains(err.Error(), "--lora-dir") {
			t.Errorf("--lora-dir %s: %v", bad, err)
		}
	}
}
