package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

func init() {
	var smoke bool
	var device string
	cmd := &cobra.Command{
		Use:   "doctor [--smoke]",
		Short: "Check the GPU set-up: GPU, driver, CUDA libraries, kernel cache, ffmpeg",
		Long: `Check the GPU set-up: GPU, driver, CUDA libraries, kernel cache, ffmpeg.

With --smoke, also generate a short clip end to end (tokenizer, umT5, DiT
with SLA, rCM, VAE decode, video file) with tiny models of random weights
made in memory, on --device, and print each stage's time: a check of an
install that needs no download. Then the exit status is the smoke test's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ok := doctor(cmd.OutOrStdout())
			if smoke {
				return runSmoke(cmd.OutOrStdout(), device)
			}
			if !ok {
				return fmt.Errorf("the GPU set-up is incomplete (see above); generation would run on the CPU")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&smoke, "smoke", false, "also run a tiny end-to-end generation on random in-memory weights, with timings")
	cmd.Flags().StringVar(&device, "device", "auto", "device of the smoke test: auto, cuda or cpu")
	root.AddCommand(cmd)
}

// doctor prints what it finds and reports whether the CUDA backend can run.
func doctor(w io.Writer) bool {
	ok := true
	b, err := cuda.Open()
	if err != nil {
		ok = false
		fmt.Fprintf(w, "GPU:        not usable\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		// NVRTC alone still tells whether kernels could be compiled.
		if n, nerr := cuda.LoadNVRTC(); nerr == nil {
			fmt.Fprintf(w, "libnvrtc:   %s (%s)\n", n.Version(), n.Lib.Path)
		} else {
			fmt.Fprintf(w, "libnvrtc:   missing\n  %s\n", strings.ReplaceAll(nerr.Error(), "\n", "\n  "))
		}
	} else {
		inf := b.Info()
		free, total := b.MemInfo()
		fmt.Fprintf(w, "GPU %d:      %s, compute capability %d.%d (%s), %d SMs, %d MiB L2, %.1f GiB (%.1f GiB free)\n",
			inf.Ordinal, inf.Name, inf.CC[0], inf.CC[1], inf.Arch, inf.SMs, inf.L2Bytes>>20,
			float64(total)/(1<<30), float64(free)/(1<<30))
		fmt.Fprintf(w, "driver:     CUDA %d.%d\n", inf.DriverVersion/1000, inf.DriverVersion%1000/10)
		for _, l := range inf.Libs {
			ver := ""
			switch l.Name {
			case "libnvrtc", "libnvrtc-builtins":
				ver = "NVRTC " + inf.NVRTCVersion + ", "
			case "libcublasLt":
				ver = fmt.Sprintf("cuBLASLt %d, ", inf.CublasLtVer)
			}
			fmt.Fprintf(w, "%-11s %s%s\n", l.Name+":", ver, l.Path)
		}
		compiled, cached, perr := b.Preload()
		if perr != nil {
			ok = false
			fmt.Fprintf(w, "kernels:    FAILED to build\n  %s\n", strings.ReplaceAll(perr.Error(), "\n", "\n  "))
		} else {
			fmt.Fprintf(w, "kernels:    %d compiled now, %d from cache, for %s\n", compiled, cached, inf.Arch)
			fmt.Fprintf(w, "attention:  %s\n", b.AttentionKernel())
		}
	}
	dir := cuda.CacheDir()
	files, size := 0, int64(0)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && filepath.Ext(e.Name()) == ".cubin" {
			files++
			size += fi.Size()
		}
	}
	fmt.Fprintf(w, "cache:      %s (%d kernels, %.1f MiB; set %s to move it)\n", dir, files, float64(size)/(1<<20), cuda.CacheEnv)
	if p, err := exec.LookPath("ffmpeg"); err == nil {
		fmt.Fprintf(w, "ffmpeg:     %s\n", p)
	} else {
		fmt.Fprintf(w, "ffmpeg:     not found on PATH (needed to write .mp4; install ffmpeg)\n")
	}
	return ok
}
