package pipeline

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/memplan"
)

// Budget is the memory a machine offers a request: Host is system memory;
// Device what this process can use on the GPU (its free memory plus the
// blocks the pool holds) and DeviceTotal the GPU's size, both 0 when the
// engine runs on the CPU (then the plan's device part is host memory too).
type Budget struct{ Host, Device, DeviceTotal int64 }

// CheckPlan refuses run when its plan (memplan.Plan) does not fit in b: the
// GPU part with memplan.Fit's headroom, the host part against b.Host. The
// refusal is a *FieldError (CodeMemory) saying what the plan needs and the
// largest 4k+1 frame count whose plan fits at the run's size.
func CheckPlan(run memplan.Run, b Budget) error {
	fits := func(frames int) (bool, memplan.Estimate, error) {
		q := run
		q.Frames = frames
		est, err := memplan.Plan(q)
		if err != nil {
			return false, est, err
		}
		host := est.Host
		if b.DeviceTotal == 0 {
			host += est.GPU()
		} else if !memplan.Fit(est, b.Device, b.DeviceTotal) {
			return false, est, nil
		}
		return b.Host == 0 || host <= b.Host, est, nil
	}
	ok, est, err := fits(run.Frames)
	if err != nil || ok {
		return err
	}
	// The largest 4k+1 frame count that fits at this size (the plan grows
	// with the frame count).
	lo, hi := -1, (run.Frames-1)/4 // in k; lo fits (or -1: none)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if ok, _, err := fits(4*mid + 1); err != nil {
			return err
		} else if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	fit := "no frame count fits at this size: choose a smaller size"
	if lo >= 0 {
		fit = fmt.Sprintf("at %dx%d up to %d frames fit", run.Width, run.Height, 4*lo+1)
	}
	var need string
	if b.DeviceTotal > 0 && !memplan.Fit(est, b.Device, b.DeviceTotal) {
		need = fmt.Sprintf("needs about %s of GPU memory at its peak (%s) and %s kept free, the GPU has %s available",
			memplan.FormatGiB(est.GPU()), est.Peak.Name, memplan.FormatGiB(memplan.Headroom(b.DeviceTotal)), memplan.FormatGiB(b.Device))
	} else {
		host := est.Host
		if b.DeviceTotal == 0 {
			host += est.GPU()
		}
		need = fmt.Sprintf("needs about %s of memory, the machine has %s", memplan.FormatGiB(host), memplan.FormatGiB(b.Host))
	}
	return fieldErr(FieldFrames, CodeMemory, run.Frames, "%s; %s", need, fit)
}

// CheckRequest checks a request as Generate would, without running it:
// its settings against Options.Limits, its attention against the loaded
// weights, its LoRAs against the DiT (CheckLoRA), and its memory plan against the machine (CheckPlan). A server
// calls it before queueing a job, while Generate may run on another
// goroutine, so the plan reads no engine state: it is the worst case over
// what may be loaded when the job runs (the DiT and VAE resident from
// earlier jobs, the text encoder loading because the prompt is not
// cached). Generate's own check (Options.CheckMemory) plans again with
// what is loaded then.
func (e *Engine) CheckRequest(r Request) error {
	if err := r.ValidateLimits(e.opt.Limits); err != nil {
		return err
	}
	if err := e.checkAttention(r); err != nil {
		return err
	}
	if err := e.CheckLoRA(r.LoRA, r.Image != ""); err != nil {
		return err
	}
	run, _, err := e.planRun(r)
	if err != nil {
		return err
	}
	run.TextEncoder, run.Warm = true, true
	run.KeepTextEncoder = e.opt.KeepTextEncoder
	run.LoRA = len(e.opt.LoRA) > 0 || len(r.LoRA) > 0
	return CheckPlan(run, e.budget())
}

// budget is the machine's memory: total host memory, and what the GPU
// offers this process (0 on a CPU backend), read once.
func (e *Engine) budget() Budget {
	e.infoMu.Lock()
	defer e.infoMu.Unlock()
	if e.machine == nil {
		host, _ := memplan.HostTotal() // 0 (unknown): no host guard
		b := Budget{Host: host}
		if dm, ok := e.dit.(deviceMemory); ok {
			free, total := dm.MemInfo()
			_, _, held := dm.MemStats()
			b.Device, b.DeviceTotal = free+held, total
		}
		e.machine = &b
	}
	return *e.machine
}
