package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

// TestDoctor: doctor reports the CPU (cores, the SIMD the GEMM kernels use)
// and succeeds on a machine without a GPU, a working CPU-only install.
func TestDoctor(t *testing.T) {
	stdout, _, err := run(t, "doctor")
	t.Log(stdout)
	used, machine := cpu.Cores()
	simd := cpu.SIMD()
	if simd == "" {
		simd = "none"
	}
	for _, want := range []string{"CPU:", fmt.Sprintf("%d cores (%d used)", machine, used), "SIMD " + simd, "cache:", "ffmpeg:", "NVENC:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("doctor output lacks %q", want)
		}
	}
	if n, derr := cuda.DeviceCount(); derr != nil || n == 0 {
		if err != nil {
			t.Errorf("no GPU (%v): doctor failed (%v); a CPU-only install works", derr, err)
		}
		if !strings.Contains(stdout, "generation runs on the CPU") {
			t.Error("doctor does not say that generation runs on the CPU")
		}
		if !strings.Contains(stdout, "NVENC:      not available — ") {
			t.Error("no GPU, yet doctor does not say that NVENC is not available")
		}
	} else if err == nil && !strings.Contains(stdout, "GPU 0:") {
		t.Errorf("%d GPU(s), doctor succeeded without describing GPU 0", n)
	}
}
