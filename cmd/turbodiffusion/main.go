// Command turbodiffusion generates videos with TurboDiffusion's Wan models
// from one Go binary: inspect and quantise checkpoints, check the GPU set-up,
// benchmark, and generate.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// root is the top command; each subcommand file adds itself in init().
var root = &cobra.Command{
	Use:           "turbodiffusion",
	Short:         "Fast video generation with TurboDiffusion Wan models, in one Go binary",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "turbodiffusion:", err)
		os.Exit(1)
	}
}
