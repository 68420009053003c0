package main

import (
	"bytes"
	"fmt"
	"path/filepath"
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
	if err := runQuantize(cmd, in, out); err != nil {
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
	if err := runQuantize(cmd, out, out); err == nil || !strings.Contains(err.Error(), "overwrite") {
		t.Errorf("want an overwrite error, got %v", err)
	}
}
