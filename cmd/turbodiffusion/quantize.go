package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
)

func init() {
	root.AddCommand(&cobra.Command{
		Use:   "quantize IN OUT",
		Short: "Make a W8A8 (-quant) DiT checkpoint from a bf16 one",
		Long: `quantize converts a TurboWan DiT checkpoint (.pth or .safetensors) into the
"-quant" form TurboDiffusion's --quant_linear loads: every Linear inside the
transformer blocks (except SLA's proj_l) becomes int8 weights with one float32
scale per 128x128 tile; everything else is copied unchanged. OUT is written as
a .pth, atomically.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQuantize(cmd, args[0], args[1])
		},
	})
}

func runQuantize(cmd *cobra.Command, inPath, outPath string) error {
	if a, errA := filepath.Abs(inPath); errA == nil {
		if b, errB := filepath.Abs(outPath); errB == nil && a == b {
			return fmt.Errorf("quantize: output %s would overwrite the input", outPath)
		}
	}
	in, err := checkpoint.Open(inPath)
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	defer in.Close()
	w := cmd.ErrOrStderr()
	start := time.Now()
	last := time.Time{}
	err = quant.QuantizeCheckpointProgress(in, outPath, func(done, total int, name string) {
		if now := time.Now(); done == total || now.Sub(last) > 200*time.Millisecond {
			last = now
			fmt.Fprintf(w, "\r[%d/%d] %-60.60s", done, total, name)
		}
	})
	fmt.Fprintln(w)
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	st, err := os.Stat(outPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%.1f MiB) in %s\n", outPath, float64(st.Size())/(1<<20), time.Since(start).Round(time.Millisecond))
	return nil
}
