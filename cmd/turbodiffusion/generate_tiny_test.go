package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

func TestSplitVAEFlag(t *testing.T) {
	for _, c := range []struct{ in, wan, tiny string }{
		{"", "", ""},
		{"tiny", "", pipeline.TinyVAEFromFolder},
		{"TINY", "", pipeline.TinyVAEFromFolder},
		{"wan", "", ""},
		{"/m/Wan2.1_VAE.pth", "/m/Wan2.1_VAE.pth", ""},
		{"/m/taew2_1.safetensors", "", "/m/taew2_1.safetensors"},
		{"x/taehv.pth", "", "x/taehv.pth"},
	} {
		if w, tn := splitVAEFlag(c.in); w != c.wan || tn != c.tiny {
			t.Errorf("splitVAEFlag(%q) = %q, %q; want %q, %q", c.in, w, tn, c.wan, c.tiny)
		}
	}
}

// TestGenerateTinyVAECLI: `generate --vae tiny` takes taew2_1 from the
// models folder (here the conformance set's weights under the released
// name) and needs no Wan VAE; without the file it names it and where to
// download it.
func TestGenerateTinyVAECLI(t *testing.T) {
	dir, enc := tinyEncoder(t)
	w := golden.TAEHVWeights(t)
	models := filepath.Join(dir, "models")
	if err := os.Mkdir(models, 0o755); err != nil {
		t.Fatal(err)
	}
	args := func(out string) []string {
		return []string{"generate", "--device", "cpu", "--prompt", "a fox", "--steps", "1",
			"--model", models, "--dit", golden.Path(t, "dit_weights.pth"), "--vae", "tiny",
			"--text-encoder", enc, "--tokenizer", golden.Path(t, "tokenizer"),
			"--resolution", "512", "--aspect", "1:1", "--frames", "5", "--sla-topk", "0.25", "--no-cache", "-o", out}
	}
	_, _, err := run(t, args(filepath.Join(dir, "a.gif"))...)
	if err == nil || !strings.Contains(err.Error(), "taew2_1.safetensors or taew2_1.pth") || !strings.Contains(err.Error(), "huggingface.co/madebyollin/taehv") ||
		strings.Contains(err.Error(), "Wan2.1_VAE.pth") {
		t.Fatalf("without the tiny VAE: %v", err)
	}
	if err := os.Symlink(w, filepath.Join(models, "taew2_1"+filepath.Ext(w))); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "clip.gif")
	_, stderr, err := run(t, args(out)...)
	t.Log(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("no GIF written: %v", err)
	}
}
