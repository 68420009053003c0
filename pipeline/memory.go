package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// deviceMemory is what a backend with device memory reports (the CUDA
// backend): the driver's free and total bytes, and its pool's bytes in
// live tensors, their high-water mark and the bytes it holds (live and
// cached for reuse).
type deviceMemory interface {
	MemInfo() (free, total int64)
	MemStats() (inUse, peak, held int64)
}

// MemoryError is a request refused because its estimated peak does not fit
// in the device's memory; it says which options would fit.
type MemoryError struct {
	Estimate         memplan.Estimate
	Available, Total int64
	Advice           string
}

func (e *MemoryError) Error() string {
	return "not enough GPU memory: " + e.Advice + " (--no-memory-check runs anyway)"
}

// MemoryPlan estimates the peak memory of r on this engine as it stands
// (models already loaded count as resident). It reads only checkpoint
// headers (and, for the prompt cache, tokenizes the prompt). It reads the
// engine's loaded models, so it runs on Generate's goroutine; CheckRequest
// plans without them.
func (e *Engine) MemoryPlan(r Request) (memplan.Estimate, memplan.Run, error) {
	run, prompts, err := e.planRun(r)
	if err != nil {
		return memplan.Estimate{}, memplan.Run{}, err
	}
	run.TextEncoder = e.enc == nil && !e.cached(prompts)
	run.KeepTextEncoder = e.opt.KeepTextEncoder || e.enc != nil
	run.Warm = e.model != nil || e.decoder != nil || e.experts[0] != nil || e.experts[1] != nil
	run.LoRA = len(e.loras) > 0 || len(r.LoRA) > 0
	est, err := memplan.Plan(run)
	return est, run, err
}

// planRun is the memplan.Run of r from the engine's options and the
// checkpoints' headers alone, without the flags that depend on what is
// loaded (TextEncoder, KeepTextEncoder, Warm, LoRA), and the prompts the
// text encoder would embed. It reads no state Generate changes.
func (e *Engine) planRun(r Request) (memplan.Run, []string, error) {
	path := e.opt.DiT
	if r.Image != "" {
		path = e.opt.DiTHigh
	}
	run, err := e.planBase(path)
	if err != nil {
		return memplan.Run{}, nil, err
	}
	run.Width, run.Height, run.Frames, run.Samples = r.Size.W, r.Size.H, r.Frames, r.Samples
	run.Texts = 1
	prompts := []string{r.Prompt}
	if r.Sampler == "unipc" {
		run.Texts = 2
		neg := r.Negative
		if neg == "" {
			neg = NegativePrompt
		}
		prompts = append(prompts, neg)
	}
	return run, prompts, nil
}

// planBase is the part of a run that the engine's options and the DiT's
// (at path), VAE's and text encoder's headers fix, read once per path.
func (e *Engine) planBase(path string) (memplan.Run, error) {
	if path == "" {
		return memplan.Run{}, fmt.Errorf("no DiT checkpoint to plan for")
	}
	e.infoMu.Lock()
	defer e.infoMu.Unlock()
	if run, ok := e.plans[path]; ok {
		return run, nil
	}
	f, err := e.opt.OpenCheckpoint(path)
	if err != nil {
		return memplan.Run{}, err
	}
	fi, err := wan.DetectConfig(f)
	f.Close()
	if err != nil {
		return memplan.Run{}, err
	}
	run := memplan.Run{DiT: fi, Opt: e.planOptions(), KeepExperts: e.opt.KeepExperts,
		ReleaseDiT: e.opt.ReleaseDiT, VAETile: e.opt.VAETile}
	// The VAE's and text encoder's sizes from their headers (defaults when
	// a header cannot be read: the load reports that error itself).
	if f, err := e.opt.OpenCheckpoint(e.opt.VAE); err == nil {
		run.VAE, _ = wanvae.ReadConfig(f)
		f.Close()
	}
	if e.opt.TextEncoder != "" {
		if f, err := e.opt.OpenCheckpoint(e.opt.TextEncoder); err == nil {
			run.Encoder, _, _ = umt5.DetectConfig(f)
			f.Close()
		}
	}
	if e.plans == nil {
		e.plans = map[string]memplan.Run{}
	}
	e.plans[path] = run
	return run, nil
}

// cached reports whether every prompt's embedding is in the prompt cache
// (then the text encoder never loads).
func (e *Engine) cached(prompts []string) bool {
	if e.cache == nil {
		return false
	}
	for _, p := range prompts {
		ids, length, err := e.tokenize(p)
		if err != nil {
			return false
		}
		key, err := umt5.NewCacheKey(ids, length, e.opt.TextEncoder, tensor.BF16)
		if err != nil {
			return false
		}
		if _, ok, err := e.cache.Get(key); !ok || err != nil {
			return false
		}
	}
	return true
}

// CheckMemory refuses r with a *MemoryError when its estimated peak does
// not fit in what the device has (free memory plus the blocks this process
// holds); it returns nil on backends without device memory. The note says
// what was estimated, for the caller to show.
func (e *Engine) CheckMemory(r Request) (note string, err error) {
	dm, ok := e.dit.(deviceMemory)
	if !ok {
		return "", nil
	}
	est, run, err := e.MemoryPlan(r)
	if err != nil {
		return "", err
	}
	free, total := dm.MemInfo()
	_, _, held := dm.MemStats()
	avail := free + held
	note = fmt.Sprintf("memory: about %s of GPU memory at the peak (%s), %s available",
		memplan.FormatGiB(est.GPU()), est.Peak.Name, memplan.FormatGiB(avail))
	if h, ok := memplan.HostAvailable(); ok && est.Host > h {
		note += fmt.Sprintf("; warning: about %s of host memory needed, %s available", memplan.FormatGiB(est.Host), memplan.FormatGiB(h))
	}
	if memplan.Fit(est, avail, total) {
		return note, nil
	}
	quantFile := ""
	if !run.DiT.Quantized {
		base := filepath.Base(e.opt.DiT)
		if r.Image != "" {
			base = filepath.Base(e.opt.DiTHigh)
		}
		ext := filepath.Ext(base)
		quantFile = "the -quant checkpoint (" + strings.TrimSuffix(base, ext) + "-quant" + ext + ")"
		if r.Image != "" {
			quantFile = "the experts' -quant checkpoints"
		}
	}
	adv := memplan.Advice(run, est, avail, total, memplan.Options(run, quantFile))
	return note, &MemoryError{Estimate: est, Available: avail, Total: total, Advice: adv}
}
