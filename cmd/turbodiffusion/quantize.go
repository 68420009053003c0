package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
)

func init() {
	var force bool
	cmd := &cobra.Command{
		Use:   "quantize IN OUT",
		Short: "Make a W8A8 (-quant) DiT checkpoint from a bf16 one",
		Long: `quantize converts a TurboWan DiT checkpoint (.pth or .safetensors) into the
"-quant" form TurboDiffusion's --quant_linear loads: every Linear inside the
transformer blocks (except SLA's proj_l) becomes int8 weights with one float32
scale per 128x128 tile; everything else is copied unchanged. OUT is written
atomically, as a torch.save file if its name ends in .pth (what TurboDiffusion
loads) or as safetensors if it ends in .safetensors. An existing OUT is
replaced only with --force, and never when it is the input file itself (under
any name: links are followed).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQuantize(cmd, args[0], args[1], force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace OUT if it exists")
	root.AddCommand(cmd)
}

// checkQuantizeOutput refuses an output that is the input (same device and
// inode once links are resolved, whatever the names), an existing output
// without force, and a name whose extension is not a format we write.
func checkQuantizeOutput(inPath, outPath string, force bool) error {
	if _, err := quant.OutputFormat(outPath); err != nil {
		return err
	}
	in, err := os.Stat(inPath)
	if err != nil {
		return err
	}
	out, err := os.Stat(outPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case os.SameFile(in, out):
		return fmt.Errorf("output %s is the input file %s (the same file on disk): refusing to overwrite it", outPath, inPath)
	case !out.Mode().IsRegular():
		return fmt.Errorf("output %s exists and is not a regular file", outPath)
	case !force:
		return fmt.Errorf("output %s exists: give --force to replace it", outPath)
	}
	return nil
}

func runQuantize(cmd *cobra.Command, inPath, outPath string, force bool) error {
	if err := checkQuantizeOutput(inPath, outPath, force); err != nil {
		return fmt.Errorf("quantize: %w", err)
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
			fmt.Fprintf(w, "\r[%d/%d] %-60.60s", done, total, printable(name))
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
