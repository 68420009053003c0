package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

func TestCheckMemoryCoarse(t *testing.T) {
	c, err := wan.Preset("Wan2.1-T2V-1.3B")
	if err != nil {
		t.Fatal(err)
	}
	const weights = 2_840_000_000
	gpu := Budget{Host: 64 << 30, Device: 8 << 30}
	r, _ := Params{Prompt: "x"}.Request(Limits{})
	if err := CheckMemory(r, c, weights, gpu); err != nil {
		t.Fatalf("480p×81 on an 8 GiB GPU: %v", err)
	}
	// The estimate stays near the measured peaks (PERF.md: 4.09 GiB forward
	// peak, 3.5 GiB VAE), on the large side.
	m := EstimateMemory(r, c, weights)
	if m.Device < 6<<30 || m.Device > 8<<30 {
		t.Errorf("1.3B 480p×81 device estimate %.2f GiB, want 6-8 (2.6 weights + 3.5 VAE peak)", float64(m.Device)/(1<<30))
	}
	r, err = Params{Prompt: "x", Resolution: "720p", Frames: Ptr(481)}.Request(Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gpu.Device = 16 << 30
	err = CheckMemory(r, c, weights, gpu)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Code != CodeMemory || fe.Field != FieldFrames || !strings.Contains(err.Error(), "GPU memory") || !strings.Contains(err.Error(), "at 1280x720 up to ") {
		t.Fatalf("720p×481 on 16 GiB: %v", err)
	}
	// What it says fits does fit, and 4 frames more does not.
	var n int
	msg := err.Error()
	if _, err := fmt.Sscanf(msg[strings.Index(msg, "up to "):], "up to %d frames fit", &n); err != nil {
		t.Fatal(err)
	}
	r.Frames = n
	if err := CheckMemory(r, c, weights, gpu); err != nil {
		t.Fatalf("%d frames said to fit: %v", n, err)
	}
	r.Frames = n + 4
	if err := CheckMemory(r, c, weights, gpu); err == nil {
		t.Fatalf("%d frames fit too", n+4)
	}
	// On the CPU (no device budget) everything counts against host memory.
	r.Frames = 81
	if err := CheckMemory(r, c, weights, Budget{Host: 2 << 30}); err == nil || !strings.Contains(err.Error(), "of memory, the machine has 2.0 GiB") {
		t.Fatalf("CPU with 2 GiB: %v", err)
	}
	// A GPU too small for the weights: nothing fits.
	if err := CheckMemory(r, c, weights, Budget{Host: 64 << 30, Device: 2 << 30}); err == nil || !strings.Contains(err.Error(), "no frame count fits") {
		t.Fatalf("2 GiB GPU: %v", err)
	}
}
