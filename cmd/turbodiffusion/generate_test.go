package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
	"github.com/turbodiffusion-go/turbodiffusion/tokenizer"
)

// run executes the CLI in-process and returns stdout, stderr and the error.
// Flags are reset first: cobra keeps their values between Execute calls.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	resetFlags(root)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestGenerateMissingFilesNamed(t *testing.T) {
	_, _, err := run(t, "generate", "--model", t.TempDir(), "--prompt", "x")
	if err == nil {
		t.Fatal("want an error for an empty models folder")
	}
	for _, want := range []string{"TurboWan2.1-T2V-1.3B-480P.pth", "Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl", "huggingface.co"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}

// TestGenerateBadFlags: each case changes one flag of a valid run on the
// tiny models (TestGenerateCLITinyModels: the same arguments generate a
// clip), so only the bad value can make it fail, and the error must name
// the flag and the value.
func TestGenerateBadFlags(t *testing.T) {
	dir, enc := tinyEncoder(t)
	valid := tinyGenerateArgs(t, enc, filepath.Join(dir, "clip.gif"))
	for _, tc := range []struct {
		flag, value string
		frags       []string // besides --flag and the value
	}{
		{"--steps", "5", []string{"1 to 4"}},
		{"--steps", "99", []string{"1 to 4"}},
		{"--steps", "0", nil},
		{"--frames", "80", []string{"4k+1"}},
		{"--resolution", "4k", nil},
		{"--aspect", "2:1", nil},
		{"--attention", "flash", []string{"dense, sla or sagesla"}},
		{"--sampler", "ddim", []string{"rcm or unipc"}},
		{"--sla-topk", "1.5", nil},
		{"--sigma-max", "0.01", nil},
		{"--samples", "0", nil},
		{"--dtype", "f16", nil},
		{"--device", "tpu", nil},
		{"--preset", "warp", nil},
		{"--crf", "60", nil},
		{"--crf", "-1", nil},
		{"--vae-tile", "-1", nil},
	} {
		args := withFlag(valid, tc.flag, tc.value)
		_, _, err := run(t, args...)
		if err == nil {
			t.Errorf("%s %s: accepted (the run went ahead and generated)", tc.flag, tc.value)
			continue
		}
		for _, want := range append([]string{tc.flag, tc.value}, tc.frags...) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s %s: error %q does not mention %q", tc.flag, tc.value, err, want)
			}
		}
	}
	// Model files that do not fit: refused from their headers, before any
	// model loads (pipeline.CheckHeaders).
	swapped := withFlag(withFlag(valid, "--dit", golden.Path(t, "vae.safetensors")), "--vae", golden.Path(t, "dit_weights.pth"))
	if _, _, err := run(t, swapped...); err == nil || !strings.Contains(err.Error(), "swapped") {
		t.Errorf("--dit and --vae swapped: error %v, want one saying so", err)
	}
	// Without a prompt, or without any model files.
	if _, _, err := run(t, withoutFlag(valid, "--prompt")...); err == nil || !strings.Contains(err.Error(), "--prompt") {
		t.Errorf("no --prompt: error %v, want one naming --prompt", err)
	}
	if _, _, err := run(t, "generate", "--prompt", "x"); err == nil || !strings.Contains(err.Error(), "--model") {
		t.Errorf("no --model: error %v, want one naming --model", err)
	}
}

// withFlag returns args with flag set to value (replaced if present).
func withFlag(args []string, flag, value string) []string {
	out := withoutFlag(args, flag)
	return append(out, flag, value)
}

// withoutFlag returns args without flag and its value.
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// TestGenerateCLITinyModels runs the real command on the golden tiny DiT and
// VAE with the golden tokenizer and a random umT5, and checks a GIF appears.
func TestGenerateCLITinyModels(t *testing.T) {
	dir, enc := tinyEncoder(t)
	out := filepath.Join(dir, "clip.gif")
	stdout, stderr, err := run(t, tinyGenerateArgs(t, enc, out)...)
	t.Log(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout) != out {
		t.Errorf("stdout %q, want the written path %q", stdout, out)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("no GIF written: %v", err)
	}
	for _, want := range []string{"timings:", "denoising", "VAE decode"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
}

func resetFlags(c *cobra.Command) {
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			sv.Replace(nil) // Set would append the default's text ("[]")
		} else {
			f.Value.Set(f.DefValue)
		}
		f.Changed = false
	})
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
}

// tinyEncoder writes a random umT5 that fits the conformance set (the
// tokenizer's vocabulary, the DiT's text width) into a new temporary folder.
func tinyEncoder(t *testing.T) (dir, enc string) {
	t.Helper()
	dir = t.TempDir()
	enc = filepath.Join(dir, "enc.safetensors")
	textDim := golden.LoadManifest(t).Int(t, "configs", "dit", "text_dim")
	if err := testmodels.WriteUMT5(enc, goldenVocab(t), textDim, 7); err != nil {
		t.Fatal(err)
	}
	return dir, enc
}

// tinyGenerateArgs is a one-step CPU `generate` of one 512×512 frame on the
// set's DiT and VAE with encoder enc, writing out.
func tinyGenerateArgs(t *testing.T, enc, out string) []string {
	return []string{"generate", "--device", "cpu", "--prompt", "a fox", "--steps", "1",
		"--dit", golden.Path(t, "dit_weights.pth"), "--vae", golden.Path(t, "vae.safetensors"),
		"--text-encoder", enc, "--tokenizer", golden.Path(t, "tokenizer"),
		"--resolution", "512", "--aspect", "1:1", "--frames", "1", "--sla-topk", "0.25", "--no-cache", "-o", out}
}

// goldenVocab is the vocabulary size of the set's tokenizer, which a random
// umT5 must cover.
func goldenVocab(t *testing.T) int {
	t.Helper()
	tk, err := tokenizer.Load(golden.Path(t, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	return tk.VocabSize()
}

// TestGenerateLoRA: --lora merges a LoRA (here one with a key for a block
// the tiny DiT lacks): without --lora-lenient the run fails naming the
// key, with it the run completes and warns; a bad --lora value fails
// before any model loads.
func TestGenerateLoRA(t *testing.T) {
	dir, enc := tinyEncoder(t)
	path := filepath.Join(dir, "lora.safetensors")
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	if err := checkpoint.WriteSafetensors(path, []checkpoint.Tensor{
		{Name: "lora_unet_blocks_0_self_attn_q.lora_down.weight", DType: tensor.F32, Shape: []int{2, 256}, Data: f32(512)},
		{Name: "lora_unet_blocks_0_self_attn_q.lora_up.weight", DType: tensor.F32, Shape: []int{256, 2}, Data: f32(512)},
		{Name: "lora_unet_blocks_7_ffn_0.lora_down.weight", DType: tensor.F32, Shape: []int{2, 256}, Data: f32(512)},
		{Name: "lora_unet_blocks_7_ffn_0.lora_up.weight", DType: tensor.F32, Shape: []int{1024, 2}, Data: f32(2048)},
	}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "clip.gif")
	args := append(tinyGenerateArgs(t, enc, out), "--lora", path+":0.5")
	_, _, err := run(t, args...)
	if err == nil || !strings.Contains(err.Error(), "lora_unet_blocks_7_ffn_0.lora_down.weight") {
		t.Fatalf("want an error naming the unknown key, got %v", err)
	}
	_, stderr, err := run(t, append(args, "--lora-lenient")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "skipped 2 LoRA key(s)") {
		t.Errorf("stderr lacks the lenient warning:\n%s", stderr)
	}
	if _, _, err := run(t, append(tinyGenerateArgs(t, enc, out), "--lora", filepath.Join(dir, "missing.safetensors"))...); err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("a missing LoRA file: %v", err)
	}
}
