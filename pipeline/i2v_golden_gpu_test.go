package pipeline

import (
	"sync"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

var (
	gpuOnce sync.Once
	gpuBE   *cuda.Backend
	gpuErr  error
)

// gpu opens the CUDA backend once per test binary, skipping the test
// without a usable GPU (CPU-only CI).
func gpu(t *testing.T) *cuda.Backend {
	t.Helper()
	gpuOnce.Do(func() {
		gpuBE, gpuErr = cuda.Open()
		if gpuBE != nil {
			gpuBE.Poison = true // a read of an unwritten tensor shows as NaN
		}
	})
	if gpuErr != nil {
		t.Skipf("no usable GPU, GPU image-to-video conformance skipped: %v", gpuErr)
	}
	return gpuBE
}

// TestGoldenI2VOnGPU is the image-to-video conformance on the CUDA
// backend: DiT and VAE on the GPU (the engine's backend), the same checks
// and bounds as the CPU tests — each step's velocity, the loop from the
// recorded y, and the whole path from the image file with the decoded
// first and last frames.
func TestGoldenI2VOnGPU(t *testing.T) {
	g := gpu(t)
	for _, r := range i2vRuns(t) {
		t.Run(r.name+"/velocity", func(t *testing.T) { testI2VVelocity(t, g, r) })
		t.Run(r.name+"/loop", func(t *testing.T) { testI2VLoop(t, g, r) })
		t.Run(r.name+"/end_to_end", func(t *testing.T) { testI2VEndToEnd(t, g, r) })
	}
}
