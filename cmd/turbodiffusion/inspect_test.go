package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
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

// TestInspectDiT: the summary shows the set's DiT configuration (manifest
// configs.dit), the scale shape of a quantised Linear and the file's
// parameter count.
func TestInspectDiT(t *testing.T) {
	man := golden.LoadManifest(t)
	num := func(k string) int { return man.Int(t, "configs", "dit", k) }
	dim, ffn := num("dim"), num("ffn_dim")
	out, err := inspectOut(t, golden.Path(t, "dit_int8.pth"), true)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "Wan DiT", fmt.Sprintf("dim %d, ffn %d, %d heads × %d, %d layers", dim, ffn, num("num_heads"), num("head_dim"), num("num_layers")),
		"int8-quantised", "proj_l present", "blocks.0.ffn.0.scale", "float32", fmt.Sprint([]int{(ffn + 127) / 128, (dim + 127) / 128}),
		fmt.Sprintf("heads:    head dim %d, read from the SLA proj_l weights", num("head_dim")))
	path := golden.Path(t, "dit_weights.safetensors")
	out, err = inspectOut(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	params := 0
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		params += tensor.NumElements(info.Shape)
	}
	wantLines(t, out, "float (not quantised)", "params:   ", fmt.Sprint(params))
	if strings.Contains(out, "blocks.0.ffn.0.weight") {
		t.Error("tensors listed without --tensors")
	}
}

// TestInspectHeadDimNote: without proj_l weights the head width cannot be
// read from the file; inspect says that 128 was assumed.
func TestInspectHeadDimNote(t *testing.T) {
	f := golden.Open(t, "dit_weights.safetensors")
	var ts []checkpoint.Tensor
	for _, n := range f.Names() {
		if strings.Contains(n, "proj_l") {
			continue
		}
		info, _ := f.Info(n)
		raw, err := f.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, checkpoint.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	path := filepath.Join(t.TempDir(), "no_proj_l.safetensors")
	if err := checkpoint.WriteSafetensors(path, ts); err != nil {
		t.Fatal(err)
	}
	out, err := inspectOut(t, path, false)
	if dim := golden.LoadManifest(t).Int(t, "configs", "dit", "dim"); dim%128 != 0 {
		// A set whose width is no multiple of 128 cannot be read without
		// proj_l: the error says which head width was assumed.
		if err == nil || !strings.Contains(err.Error(), "head dim 128 (default)") {
			t.Errorf("dim %d without proj_l: error %v, want one naming the assumed head dim 128", dim, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "heads:    head dim 128 assumed (no proj_l weights", "no proj_l (dense attention only)")
}

// TestInspectOtherModels: the VAE and umT5 summaries show the set's
// configuration (manifest configs.vae, configs.umt5).
func TestInspectOtherModels(t *testing.T) {
	man := golden.LoadManifest(t)
	out, err := inspectOut(t, golden.Path(t, "vae.safetensors"), false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, fmt.Sprintf("Wan VAE (z_dim %d", man.Int(t, "configs", "vae", "z_dim")))
	out, err = inspectOut(t, golden.Path(t, "umt5.safetensors"), false)
	if err != nil {
		t.Fatal(err)
	}
	u := func(k string) int { return man.Int(t, "configs", "umt5", k) }
	wantLines(t, out, fmt.Sprintf("umT5 text encoder (vocab %d, dim %d, %d layers)", u("vocab_size"), u("dim"), u("encoder_layers")))
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

// TestInspectAndDoctorMemory: inspect prints a DiT's estimated peak per
// resolution; doctor --dit prints the estimate stage by stage (and, on a
// GPU, whether it fits).
func TestInspectAndDoctorMemory(t *testing.T) {
	out, err := inspectOut(t, golden.Path(t, "dit_int8.pth"), false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "memory:   weights", "480p ", "720p ", "at the ")
	var b bytes.Buffer
	doctor(&b, &doctorFlags{dit: golden.Path(t, "dit_weights.pth"), attention: "sla", aspect: "16:9", frames: 81})
	wantLines(t, b.String(), "memory:     dit_weights.pth at 832x480, 81 frames, sla attention: peak about",
		"text encoder", "DiT forward", "VAE decode", "host: about")
	b.Reset()
	doctor(&b, &doctorFlags{dit: golden.Path(t, "dit_weights.pth"), attention: "sla", aspect: "16:9", frames: 80})
	wantLines(t, b.String(), "memory:     --frames 80")
}

// TestInspectLoRA: inspect recognises a LoRA file and says its naming,
// module count, rank and alpha, and names keys that match no Wan module.
func TestInspectLoRA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "style.safetensors")
	if err := checkpoint.WriteSafetensors(path, []checkpoint.Tensor{
		{Name: "lora_unet_blocks_0_self_attn_q.lora_down.weight", DType: tensor.F32, Shape: []int{4, 8}, Data: make([]byte, 128)},
		{Name: "lora_unet_blocks_0_self_attn_q.lora_up.weight", DType: tensor.F32, Shape: []int{8, 4}, Data: make([]byte, 128)},
		{Name: "lora_unet_blocks_0_self_attn_q.alpha", DType: tensor.F32, Shape: []int{}, Data: make([]byte, 4)},
		{Name: "lora_unet_text_encoder_q.lora_down.weight", DType: tensor.F32, Shape: []int{4, 8}, Data: make([]byte, 128)},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := inspectOut(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "Wan LoRA (kohya naming), 1 modules, rank [4], with alpha (e.g. blocks.0.self_attn.q)",
		"unknown:  1 key(s)", "lora_unet_text_encoder_q.lora_down.weight")
}

func inspectFilesOut(t *testing.T, paths ...string) (string, error) {
	t.Helper()
	var b bytes.Buffer
	err := inspectFiles(&b, paths, false)
	return b.String(), err
}

// TestInspectI2VPair: the set's two experts are recognised as a Wan2.2 I2V
// expert pair with the manifest's configuration, high and low by their file
// names in either order, fitting the set's VAE; a mismatched pair is an
// error; names that do not say which is which are reported as such.
func TestInspectI2VPair(t *testing.T) {
	man := golden.LoadManifest(t)
	high, low, vae := golden.Path(t, "i2v_high.pth"), golden.Path(t, "i2v_low.pth"), golden.Path(t, "vae.safetensors")
	cfg := func(k string) int { return man.Int(t, "files", "i2v_high.pth", "config", k) }
	for _, order := range [][]string{{high, low, vae}, {vae, low, high}} {
		out, err := inspectFilesOut(t, order...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", order, err, out)
		}
		wantLines(t, out, "Wan2.2 I2V expert (input", "high-noise by its file name", "low-noise by its file name",
			fmt.Sprintf("in %d, out %d channels", cfg("in_dim"), cfg("out_dim")),
			"a Wan2.2 I2V expert pair", fmt.Sprintf("high-noise %s, low-noise %s", high, low), "fits "+vae)
	}
	out, err := inspectFilesOut(t, high)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "Wan2.2 I2V expert (input", "high-noise by its file name")
	if strings.Contains(out, "expert pair") {
		t.Errorf("one file: pair verdict printed:\n%s", out)
	}

	// Names that say nothing: still a pair, roles unknown.
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.pth"), filepath.Join(dir, "b.pth")
	for src, dst := range map[string]string{high: a, low: b} {
		if err := os.Symlink(src, dst); err != nil {
			t.Skip(err)
		}
	}
	out, err = inspectFilesOut(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "high- or low-noise: the weights do not say", "a Wan2.2 I2V expert pair", "--dit-high and --dit-low", "VAE:      none given")

	// Experts of different architectures.
	other := filepath.Join(dir, "other_low.safetensors")
	if err := testmodels.WriteWanI2V(other, 64, 3); err != nil {
		t.Fatal(err)
	}
	out, err = inspectFilesOut(t, high, other, vae)
	if err == nil || !strings.Contains(err.Error(), "not a Wan2.2 I2V expert pair") {
		t.Errorf("mismatched experts: error %v", err)
	}
	wantLines(t, out, "not an image-to-video model")
}

// TestInspectTAEHV: the tiny VAE's weights (the conformance set's, in
// whichever format the set ships them) are recognised and checked; a
// mis-shaped copy is reported with the key and both shapes.
func TestInspectTAEHV(t *testing.T) {
	path := golden.TAEHVWeights(t)
	out, err := inspectOut(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "TAEHV tiny video autoencoder", "16 latent channels", "--vae tiny", "huggingface.co/madebyollin/taehv")
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []checkpoint.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		raw, _ := f.Raw(n)
		if n == "decoder.20.weight" { // [64 64 3 3] → [64 32 3 3]: half the bytes
			info.Shape = []int{64, 32, 3, 3}
			raw = raw[:len(raw)/2]
		}
		ts = append(ts, checkpoint.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	bad := filepath.Join(t.TempDir(), "taew2_1.safetensors")
	if err := checkpoint.WriteSafetensors(bad, ts); err != nil {
		t.Fatal(err)
	}
	out, err = inspectOut(t, bad, false)
	if err == nil || !strings.Contains(err.Error(), `"decoder.20.weight": want shape [64 64 3 3], got [64 32 3 3]`) {
		t.Fatalf("got %v\n%s", err, out)
	}
	wantLines(t, out, "TAEHV tiny video autoencoder (invalid")
}
