package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
)

// TestEngineFreesEverything: an engine's whole life — load, two requests
// (the second hits the text cache), live previews, Close — leaves no
// allocation outside a scope behind (the backend's Loose count is back
// where it started), for text-to-video with the Wan VAE (whole and tiled)
// and the tiny VAE, and image-to-video with two experts. The GPU backend
// has no garbage-collector cleanup, so anything counted here would be
// device memory lost until the process ends.
func TestEngineFreesEverything(t *testing.T) {
	be := cpu.New()
	engineFreesEverything(t, be, be.Loose, false)
}

// TestEngineFreesEverythingOnGPU is TestEngineFreesEverything on the CUDA
// backend, whose ops have temporaries of their own.
func TestEngineFreesEverythingOnGPU(t *testing.T) {
	g := gpu(t)
	engineFreesEverything(t, g, g.Loose, true)
}

// gpuRun lets a GPU run without the tiny-VAE set (it does not fit what
// travels to the GPU machine) skip that one case.
func engineFreesEverything(t *testing.T, be backend.Core, loose func() int, gpuRun bool) {
	fx := newI2VFixture(t)
	cpuBE := cpu.New()
	loraSpec := lora.Spec{Path: writeTinyLoRA(t, fx.dir), Scale: 0.7}
	for _, c := range []struct {
		name  string
		files func(t *testing.T) (string, Files)
		opt   func(*Options)
		req   Request
	}{
		{name: "t2v wan vae sla",
			files: func(t *testing.T) (string, Files) { return tinyFiles(t, Files{VAE: golden.Path(t, "vae.safetensors")}) },
			opt:   func(o *Options) { o.Attention, o.TopK = backend.SLA, 0.25 },
			req:   Request{Prompt: "a fox", Steps: 2, SigmaMax: 80, Size: Size{256, 128}, Frames: 5, Samples: 1}},
		{name: "t2v wan vae tiled",
			files: func(t *testing.T) (string, Files) { return tinyFiles(t, Files{VAE: golden.Path(t, "vae.safetensors")}) },
			opt:   func(o *Options) { o.VAETile = 8 },
			req:   Request{Prompt: "a fox", Steps: 2, SigmaMax: 80, Size: Size{128, 64}, Frames: 5, Samples: 1}},
		{name: "t2v tiny vae",
			files: func(t *testing.T) (string, Files) {
				if _, err := os.Stat(filepath.Join(golden.Dir(), golden.TAEHVDir, "manifest.json")); err != nil && gpuRun {
					t.Skipf("the tiny-VAE set is not beside this GPU run's conformance set (%v): its CUDA ops are covered by the TAEHV tests", err)
				}
				return tinyFiles(t, Files{TinyVAE: golden.TAEHVWeights(t)})
			},
			req: Request{Prompt: "a fox", Steps: 2, SigmaMax: 80, Size: Size{128, 64}, Frames: 5, Samples: 1}},
		{name: "i2v request LoRA",
			files: func(t *testing.T) (string, Files) { return fx.dir, fx.files },
			req:   Request{Prompt: "a fox", Image: fx.image, Steps: 2, SigmaMax: 200, Size: Size{64, 32}, Frames: 5, Samples: 1, LoRA: []lora.Spec{loraSpec}}},
		{name: "i2v offload, LoRA at load",
			files: func(t *testing.T) (string, Files) { return fx.dir, fx.files },
			opt:   func(o *Options) { o.Offload, o.LoRA = true, []lora.Spec{loraSpec} },
			req:   Request{Prompt: "a fox", Image: fx.image, Steps: 2, SigmaMax: 200, Size: Size{64, 32}, Frames: 5, Samples: 1}},
		{name: "i2v offload, request LoRA",
			files: func(t *testing.T) (string, Files) { return fx.dir, fx.files },
			opt:   func(o *Options) { o.Offload = true },
			req:   Request{Prompt: "a fox", Image: fx.image, Steps: 2, SigmaMax: 200, Size: Size{64, 32}, Frames: 5, Samples: 1, LoRA: []lora.Spec{loraSpec}}},
		{name: "i2v two experts",
			files: func(t *testing.T) (string, Files) { return fx.dir, fx.files },
			req:   Request{Prompt: "a fox", Image: fx.image, Steps: 2, SigmaMax: 200, Size: Size{64, 32}, Frames: 5, Samples: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, files := c.files(t)
			before := loose()
			opt := Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}, CacheDir: filepath.Join(dir, "cache")}
			if c.opt != nil {
				c.opt(&opt)
			}
			eng, err := New(be, cpuBE, opt)
			if err != nil {
				t.Fatal(err)
			}
			req := c.req
			previews := 0
			req.OnPreview = func(Preview) { previews++ }
			for i := 0; i < 2; i++ {
				req.Seed = uint64(i + 1)
				if _, err := eng.Generate(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
			if previews == 0 {
				t.Error("no previews: the preview path was not exercised")
			}
			t.Logf("%d previews; %d allocations outside scopes while the engine is open", previews, loose()-before)
			eng.Close()
			if n := loose() - before; n != 0 {
				t.Errorf("after Close, %d allocations outside every scope were never freed", n)
			}
		})
	}
}
