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
