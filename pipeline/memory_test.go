package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

// smallGPU is the CPU backend reporting a device of a given size, so the
// memory check runs as on a GPU.
type smallGPU struct {
	*cpu.Backend
	free, total int64
}

func (g smallGPU) MemInfo() (int64, int64)         { return g.free, g.total }
func (g smallGPU) MemStats() (int64, int64, int64) { return 0, 0, 0 }
func (g smallGPU) Name() string                    { return "small-gpu" }

// TestCheckMemory: a run whose estimate exceeds the device is refused
// before any model loads, naming what would fit; one that fits runs; the
// estimate uses the actual encoder's and VAE's sizes.
func TestCheckMemory(t *testing.T) {
	fx := newI2VFixture(t)
	files := fx.t2vFiles(t)
	req := Request{Prompt: "a fox", Steps: 1, SigmaMax: 80, Size: Size{32, 32}, Frames: 1, Seed: 3, Samples: 1}
	newEngine := func(free int64) *Engine {
		g := smallGPU{Backend: cpu.New(), free: free, total: free}
		eng, err := New(g, g, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}, CheckMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		return eng
	}
	eng := newEngine(4 << 30)
	est, _, err := eng.MemoryPlan(req)
	if err != nil {
		t.Fatal(err)
	}
	// The tiny encoder, DiT and VAE (the conformance set's) are a few MiB:
	// the estimate must not assume umT5-XXL or the real VAE.
	if est.GPU() > 100<<20 {
		t.Errorf("estimate %s for the tiny models", memplan.FormatGiB(est.GPU()))
	}
	loads := 0
	eng.Progress = func(ev Event) {
		if strings.HasPrefix(ev.Stage, "load") {
			loads++
		}
	}
	if _, err := eng.Generate(context.Background(), req); err != nil {
		t.Fatalf("a run that fits: %v", err)
	}
	tiny := newEngine(est.GPU() / 2)
	tiny.Progress = func(ev Event) {
		if strings.HasPrefix(ev.Stage, "load") {
			t.Errorf("stage %s ran although the run does not fit", ev.Stage)
		}
	}
	_, err = tiny.Generate(context.Background(), req)
	var me *MemoryError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "GPU has") || !strings.Contains(err.Error(), "--no-memory-check") {
		t.Fatalf("want a MemoryError, got %v", err)
	}
	t.Log(err)
}

// TestMemoryAdvice: the refusal for the 14B at 720p on a 24 GiB card names
// the -quant checkpoint and 480p, with their estimates.
func TestMemoryAdvice(t *testing.T) {
	c, _ := wan.Preset("Wan2.1-T2V-14B")
	run := memplan.Run{DiT: wan.FileInfo{Config: c, ProjL: true}, Opt: wan.Options{Attention: backend.SLA},
		Width: 1280, Height: 720, Frames: 81, TextEncoder: true, ReleaseDiT: true}
	est, err := memplan.Plan(run)
	if err != nil {
		t.Fatal(err)
	}
	const card = 24 << 30
	free := int64(card - 700<<20) // what a 24 GiB card has free with a CUDA context
	if memplan.Fit(est, free, card) {
		t.Fatalf("the 14B bf16 at 720p (%s) fits a 24 GiB card?", memplan.FormatGiB(est.GPU()))
	}
	adv := memplan.Advice(run, est, free, card, memplan.Options(run, "TurboWan2.1-T2V-14B-720P-quant.pth"))
	t.Log(adv)
	for _, want := range []string{"TurboWan2.1-T2V-14B-720P-quant.pth (about", "--resolution 480p with a -quant checkpoint", "DiT forward"} {
		if !strings.Contains(adv, want) {
			t.Errorf("advice lacks %q", want)
		}
	}
}
