package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindModelsMissing: an empty folder names every file; a folder that
// does not exist says so instead of only listing files.
func TestFindModelsMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := FindModels(dir, "", Files{})
	var me *MissingError
	if !errors.As(err, &me) || me.NoDir || len(me.Missing) != 4 {
		t.Fatalf("empty folder: got %v, want a MissingError listing 4 files", err)
	}
	if !strings.Contains(err.Error(), "is missing 4 file(s)") {
		t.Errorf("empty folder: %v", err)
	}
	gone := filepath.Join(dir, "nope")
	_, err = FindModels(gone, "", Files{})
	if !errors.As(err, &me) || !me.NoDir || !strings.Contains(err.Error(), gone+" does not exist") {
		t.Errorf("absent folder: got %v, want one saying %s does not exist", err, gone)
	}
}

// TestFindModelsTinyVAE: --vae tiny takes taew2_1 (either format) from the
// folder, names it with its download source when missing, and then needs
// no Wan VAE for text-to-video (image-to-video still does).
func TestFindModelsTinyVAE(t *testing.T) {
	dir := t.TempDir()
	_, err := FindModels(dir, "", Files{TinyVAE: TinyVAEFromFolder})
	var me *MissingError
	if !errors.As(err, &me) || len(me.Missing) != 4 {
		t.Fatalf("empty folder: got %v, want 4 missing files", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "taew2_1.safetensors or taew2_1.pth") || !strings.Contains(msg, "huggingface.co/madebyollin/taehv") {
		t.Errorf("missing tiny VAE not named with its source: %v", err)
	}
	if strings.Contains(msg, VAEFile) {
		t.Errorf("text-to-video with the tiny VAE asks for the Wan VAE: %v", err)
	}
	_, err = FindI2VModels(dir, "", Files{TinyVAE: TinyVAEFromFolder})
	if err == nil || !strings.Contains(err.Error(), VAEFile) || !strings.Contains(err.Error(), "taew2_1.pth") {
		t.Errorf("image-to-video with the tiny VAE: %v, want the Wan VAE and the tiny VAE named", err)
	}
	for _, name := range []string{"taew2_1.pth", "taew2_1.safetensors"} {
		d := t.TempDir()
		for _, f := range []string{DefaultVariant + ".pth", TextEncoderFile, name} {
			if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(d, TokenizerDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, TokenizerDir, "tokenizer.json"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		files, err := FindModels(d, "", Files{TinyVAE: TinyVAEFromFolder})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if files.TinyVAE != filepath.Join(d, name) || files.VAE != "" {
			t.Errorf("%s: tiny %q, Wan VAE %q", name, files.TinyVAE, files.VAE)
		}
		if _, err := FindModels(d, "", Files{}); err == nil || !strings.Contains(err.Error(), VAEFile) {
			t.Errorf("%s: without --vae tiny the Wan VAE must be required: %v", name, err)
		}
	}
	_, err = FindModels(dir, "", Files{TinyVAE: filepath.Join(dir, "gone.safetensors")})
	if err == nil || !strings.Contains(err.Error(), "gone.safetensors (given on the command line)") {
		t.Errorf("absent tiny VAE path: %v", err)
	}
}
