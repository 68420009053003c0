package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/video/nvenc"
)

// doctorFlags name a model file whose memory needs doctor compares with
// the GPU.
type doctorFlags struct {
	dit, attention, resolution, aspect string
	frames                             int
}

func init() {
	var f doctorFlags
	var smoke bool
	var device string
	cmd := &cobra.Command{
		Use:   "doctor [--dit FILE] [--smoke]",
		Short: "Check the set-up: CPU (cores, SIMD), GPU, driver, CUDA libraries, kernel cache, ffmpeg, NVENC; whether a model fits; a smoke test",
		Long: `doctor prints the CPU (cores, the SIMD its kernels use), GPU, driver, CUDA
libraries, kernel cache, ffmpeg and hardware video encoder (NVENC) it finds.
It fails (exit status 1) only when something present cannot be used: a GPU
the driver sees whose libraries or kernels fail (no NVENC is not a failure).
A machine without a GPU is a working CPU-only install.

With --dit FILE it also estimates the peak GPU memory of a generation with that
DiT (at --resolution, --frames and --attention) and compares it with the
GPU's free memory, naming the options that would fit when it does not.

With --smoke, it also generates a short clip end to end (tokenizer, umT5, DiT
with SLA, rCM, VAE decode, video file) with tiny models of random weights
made in memory, on --device, and prints each stage's time: a check of an
install that needs no download. Then the exit status is the smoke test's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ok := doctor(cmd.OutOrStdout(), &f)
			if smoke {
				return runSmoke(cmd.OutOrStdout(), device)
			}
			if !ok {
				return fmt.Errorf("a GPU is present but cannot be used, or the model does not fit (see above)")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dit, "dit", "", "DiT checkpoint whose memory needs to estimate")
	fl.StringVar(&f.attention, "attention", "sla", "self-attention for the estimate: dense, sla or sagesla")
	fl.StringVar(&f.resolution, "resolution", "", "resolution for the estimate (default 480p; 720p for an image-to-video expert)")
	fl.StringVar(&f.aspect, "aspect", "16:9", "aspect ratio for the estimate")
	fl.IntVar(&f.frames, "frames", 81, "frames for the estimate")
	fl.BoolVar(&smoke, "smoke", false, "also run a tiny end-to-end generation on random in-memory weights, with timings")
	fl.StringVar(&device, "device", "auto", "device of the smoke test: auto, cuda or cpu")
	root.AddCommand(cmd)
}

// doctor prints what it finds and reports false when a GPU the driver sees
// cannot be used (no GPU at all is fine: the CPU backend runs) or the
// model named by f does not fit.
func doctor(w io.Writer, f *doctorFlags) bool {
	used, machine := cpu.Cores()
	simd := cpu.SIMD()
	if simd == "" {
		simd = "none: the portable Go loops run (no AVX2+FMA on this CPU or architecture), slowly"
	} else {
		simd += " (the GEMM micro-kernels)"
	}
	fmt.Fprintf(w, "CPU:        %s/%s, %d cores (%d used), SIMD %s\n", runtime.GOOS, runtime.GOARCH, machine, used, simd)
	ok := true
	var free, total int64
	gpu := false
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
		free, total = b.MemInfo()
		gpu = true
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
	// The hardware encoder is optional (x264 through ffmpeg is the
	// fallback), so its absence does not fail doctor.
	info, nerr := nvenc.Probe(0, 20*time.Second)
	fmt.Fprintf(w, "NVENC:      %s\n", nvenc.Describe(info, nerr))
	if f != nil && f.dit != "" {
		if err := doctorMemory(w, f, gpu, free, total); err != nil {
			fmt.Fprintf(w, "memory:     %v\n", flagError(err))
			ok = false
		}
	}
	return ok
}

// doctorMemory prints the estimate for f.dit and whether it fits in free
// bytes of a GPU of total bytes (gpu false: no GPU to compare with).
func doctorMemory(w io.Writer, f *doctorFlags, gpu bool, free, total int64) error {
	ck, err := checkpoint.Open(f.dit)
	if err != nil {
		return err
	}
	fi, err := wan.DetectConfig(ck)
	ck.Close()
	if err != nil {
		return err
	}
	attn, err := pipeline.ParseAttention(f.attention)
	if err != nil {
		return err
	}
	res := f.resolution
	if res == "" {
		res = "480p"
		if fi.Config.Type == wan.I2V {
			res = pipeline.DefaultI2VResolution
		}
	}
	size, err := pipeline.Resolution(res, f.aspect)
	if err != nil {
		return err
	}
	if _, err := pipeline.LatentShape(f.frames, size); err != nil {
		return err
	}
	run := memoryRun(fi, attn, size, f.frames)
	est, err := memplan.Plan(run)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "memory:     %s at %dx%d, %d frames, %s attention: peak about %s of GPU memory\n",
		filepath.Base(f.dit), size.W, size.H, f.frames, run.Opt.Attention, memplan.FormatGiB(est.GPU()))
	for _, s := range est.Stages {
		fmt.Fprintf(w, "            %s\n", s)
	}
	fmt.Fprintf(w, "            host: about %s besides the memory-mapped checkpoints\n", memplan.FormatGiB(est.Host))
	if !gpu {
		return nil
	}
	if memplan.Fit(est, free, total) {
		fmt.Fprintf(w, "            fits: %s free on the GPU\n", memplan.FormatGiB(free))
		return nil
	}
	quantFile := ""
	if !fi.Quantized {
		ext := filepath.Ext(f.dit)
		quantFile = strings.TrimSuffix(filepath.Base(f.dit), ext) + "-quant" + ext
	}
	return fmt.Errorf("does not fit: %s", memplan.Advice(run, est, free, total, memplan.Options(run, quantFile)))
}
