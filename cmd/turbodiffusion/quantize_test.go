package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestQuantizeCommand(t *testing.T) {
	in := golden.Path(t, "dit_weights.pth")
	out := filepath.Join(t.TempDir(), "dit-quant.pth")
	var stdout, stderr bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	if err := runQuantize(cmd, in, out, false); err != nil {
		t.Fatal(err)
	}
	// Progress counts the output's tensors: those of the reference's own
	// quantised checkpoint.
	ref := golden.Open(t, "dit_int8.pth")
	n := len(ref.Names())
	if !strings.Contains(stdout.String(), "wrote "+out) || !strings.Contains(stderr.String(), fmt.Sprintf("[%d/%d]", n, n)) {
		t.Errorf("unexpected output:\nstdout %q\nstderr %q", stdout.String(), stderr.String())
	}
	f, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, ok := f.Info("blocks.0.ffn.2.int8_weight")
	if !ok || info.DType != tensor.I8 {
		t.Fatalf("blocks.0.ffn.2.int8_weight: %+v, present %v", info, ok)
	}
	if _, ok := f.Info("blocks.0.ffn.2.weight"); ok {
		t.Error("the float weight is still present")
	}
	if err := runQuantize(cmd, out, out, true); err == nil || !strings.Contains(err.Error(), "is the input file") {
		t.Errorf("want an overwrite error, got %v", err)
	}
}

// TestQuantizeOutputChecks: the output is never the input under another
// name (a symlinked folder, a hard link), an existing output is replaced
// only with --force, and the format follows the output's extension.
func TestQuantizeOutputChecks(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.pth")
	src, err := os.ReadFile(golden.Path(t, "dit_weights.pth"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(in, filepath.Join(dir, "hard.pth")); err != nil {
		t.Fatal(err)
	}
	cmd := &cobra.Command{}
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	for _, out := range []string{filepath.Join(dir, "dirlink", "in.pth"), filepath.Join(dir, "hard.pth"), filepath.Join(dir, ".", "in.pth")} {
		for _, force := range []bool{false, true} {
			err := runQuantize(cmd, in, out, force)
			if err == nil || !strings.Contains(err.Error(), "is the input file") {
				t.Errorf("quantize in.pth %s (force %v): error %v, want a refusal naming the input", out, force, err)
			}
		}
	}
	if b, _ := os.ReadFile(in); !bytes.Equal(b, src) {
		t.Fatal("the input was modified")
	}

	// An existing output: refused, then replaced with --force.
	out := filepath.Join(dir, "out.pth")
	os.WriteFile(out, []byte("keep me"), 0o644)
	if err := runQuantize(cmd, in, out, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output without --force: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Error("an existing output was replaced without --force")
	}
	if err := runQuantize(cmd, in, out, true); err != nil {
		t.Fatalf("--force: %v", err)
	}

	// The format follows the name: .safetensors is safetensors, holding
	// the same tensors as the .pth; other names are refused.
	st := filepath.Join(dir, "out.safetensors")
	if err := runQuantize(cmd, in, st, false); err != nil {
		t.Fatal(err)
	}
	a, b := openT(t, out), openT(t, st)
	if checkpoint.Format(b) != "safetensors" || !slices.Equal(a.Names(), b.Names()) {
		t.Errorf("%s is %s with %d tensors, want safetensors with the %d of %s", st, checkpoint.Format(b), len(b.Names()), len(a.Names()), out)
	}
	for _, n := range a.Names() {
		ra, _ := a.Raw(n)
		rb, _ := b.Raw(n)
		if !bytes.Equal(ra, rb) {
			t.Errorf("%s differs between the .pth and the .safetensors output", n)
		}
	}
	for _, bad := range []string{"out.bin", "out", "out.pth.tmp"} {
		err := runQuantize(cmd, in, filepath.Join(dir, bad), false)
		if err == nil || !strings.Contains(err.Error(), ".safetensors") {
			t.Errorf("output %s: error %v, want one naming the formats", bad, err)
		}
		if _, err := os.Stat(filepath.Join(dir, bad)); err == nil {
			t.Errorf("output %s was written", bad)
		}
	}
}

func openT(t *testing.T, path string) checkpoint.File {
	t.Helper()
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
