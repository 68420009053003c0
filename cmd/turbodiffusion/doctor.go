package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

func init() {
	root.AddCommand(&cobra.Command{
		Use:   "doctor",
		Short: "Check the set-up: CPU (cores, SIMD), GPU, driver, CUDA libraries, kernel cache, ffmpeg",
		Long: `doctor says what generation will run on and what it found on the way. It
fails (exit status 1) only when something present cannot be used: a GPU the
driver sees whose libraries or kernels fail. A machine without a GPU is a
working CPU-only install.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !doctor(cmd.OutOrStdout()) {
				return fmt.Errorf("a GPU is present but cannot be used (see above); generation would run on the CPU")
			}
			return nil
		},
	})
}

// doctor prints what it finds and reports false when a GPU the driver sees
// cannot be used (no GPU at all is fine: the CPU backend runs).
func doctor(w io.Writer) bool {
	used, machine := cpu.Cores()
	simd := cpu.SIMD()
	if simd == "" {
		simd = "none: the portable Go loops run (no AVX2+FMA on this CPU or architecture), slowly"
	} else {
		simd += " (the GEMM micro-kernels)"
	}
	fmt.Fprintf(w, "CPU:        %s/%s, %d cores (%d used), SIMD %s\n", runtime.GOOS, runtime.GOARCH, machine, used, simd)
	ok := true
	n, derr := cuda.DeviceCount()
	var b *cuda.Backend
	var err error
	if derr == nil && n > 0 {
		b, err = cuda.Open()
	}
	switch {
	case derr != nil || n == 0:
		why := "the driver sees no GPU"
		if derr != nil {
			why = derr.Error()
		}
		fmt.Fprintf(w, "GPU:        none; generation runs on the CPU\n  %s\n", strings.ReplaceAll(why, "\n", "\n  "))
	case err != nil:
		ok = false
		fmt.Fprintf(w, "GPU:        %d found, not usable\n  %s\n", n, strings.ReplaceAll(err.Error(), "\n", "\n  "))
		// NVRTC alone still tells whether kernels could be compiled.
		if n, nerr := cuda.LoadNVRTC(); nerr == nil {
			fmt.Fprintf(w, "libnvrtc:   %s (%s)\n", n.Version(), n.Lib.Path)
		} else {
			fmt.Fprintf(w, "libnvrtc:   missing\n  %s\n", strings.ReplaceAll(nerr.Error(), "\n", "\n  "))
		}
	}
	if b != nil {
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
