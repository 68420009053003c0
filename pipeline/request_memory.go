package pipeline

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

// Memory is a coarse estimate of what one request needs, in bytes: Device
// on the GPU (weights resident during the request, the DiT's activations
// or the VAE decode's peak, whichever is larger), Host in system memory
// (frames, latents, decode buffers). On a CPU backend both are host memory.
// It is a per-request guard against asking for far more than the machine
// has, not a planner: it errs on the large side by tens of percent.
type Memory struct {
	Host, Device int64
	// Weights is the part of Device that is model weights.
	Weights int64
}

// Per-request constants of the estimate, from the measurements in
// docs/PERF.md: the 1.3B forward at 480p×81 frames peaks 1.5 GiB above
// its weights, the 14B one 3.1 GiB (both ≈ 2 bytes × L × (8·D + FFN)), and
// the VAE decode peaks at 3.5 GiB for 832×480 frames whatever their count
// (it decodes in chunks of 4 frames): ≈ 9.5 KB per output pixel.
const (
	vaeBytesPerPixel = 9500
	memorySlack      = 512 << 20 // workspaces, allocator rounding, the text context
)

// EstimateMemory estimates what r needs on a DiT of configuration c whose
// weights take weights bytes on the device.
func EstimateMemory(r Request, c wan.Config, weights int64) Memory {
	frames, size := int64(max(r.Frames, 1)), r.Size
	samples := int64(max(r.Samples, 1))
	T := (frames-1)/4 + 1
	pix := int64(size.W) * int64(size.H)
	tokens := T * pix / 256
	latent := 16 * T * pix / 64 * 4 // float32
	dit := 2*tokens*(8*int64(c.Dim)+int64(c.FFNDim)) + 4*latent
	vae := vaeBytesPerPixel * pix
	m := Memory{Weights: weights}
	m.Device = weights + max(dit, vae) + memorySlack
	// Host: the decoded frames (twice when several samples are tiled or the
	// encoder queues a copy), the sampler's latents, a decoded chunk.
	m.Host = 2*frames*pix*3*samples + latent*(samples+6) + 2*4*3*4*pix + memorySlack
	return m
}

// Budget is the memory a machine offers a request: Host is system memory,
// Device the GPU's (0 when the engine runs on the CPU: then the estimate's
// device part is host memory too).
type Budget struct{ Host, Device int64 }

// CheckMemory refuses r when its estimate exceeds the budget, with a
// *FieldError (CodeMemory) saying how much it needs and how many frames
// would fit at its size.
func CheckMemory(r Request, c wan.Config, weights int64, b Budget) error {
	fits := func(frames int) (bool, Memory) {
		q := r
		q.Frames = frames
		m := EstimateMemory(q, c, weights)
		host, dev := m.Host, m.Device
		if b.Device == 0 {
			host += dev
		} else if dev > b.Device {
			return false, m
		}
		return b.Host == 0 || host <= b.Host, m
	}
	ok, m := fits(r.Frames)
	if ok {
		return nil
	}
	// The largest 4k+1 frame count that fits at this size.
	lo, hi := -1, (r.Frames-1)/4 // in k; lo fits (or -1: none)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if ok, _ := fits(4*mid + 1); ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	fit := "no frame count fits at this size: choose a smaller size"
	if lo >= 0 {
		fit = fmt.Sprintf("at %dx%d up to %d frames fit", r.Size.W, r.Size.H, 4*lo+1)
	}
	var need string
	if b.Device > 0 && m.Device > b.Device {
		need = fmt.Sprintf("needs about %s of GPU memory (%s of it weights), the GPU has %s", gib(m.Device), gib(m.Weights), gib(b.Device))
	} else {
		host := m.Host
		if b.Device == 0 {
			host += m.Device
		}
		need = fmt.Sprintf("needs about %s of memory, the machine has %s", gib(host), gib(b.Host))
	}
	return fieldErr(FieldFrames, CodeMemory, r.Frames, "%s; %s", need, fit)
}

func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

// HostMemory is the machine's total memory (Linux /proc/meminfo), or 0
// when it cannot be read.
func HostMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// CheckRequest checks a request as Generate would, without running it:
// its settings against Options.Limits, its attention against the loaded
// weights, and its memory estimate against the machine (CheckMemory; the
// DiT's configuration is read from its file's header once). A server calls
// it before queueing a job; it is safe to call while Generate runs on
// another goroutine.
func (e *Engine) CheckRequest(r Request) error {
	if err := r.ValidateLimits(e.opt.Limits); err != nil {
		return err
	}
	if err := e.checkAttention(r); err != nil {
		return err
	}
	fi, err := e.ditInfo()
	if err != nil {
		return err
	}
	dt := int64(e.opt.DType.Size())
	if fi.Quantized {
		dt = 1
	}
	weights := fi.Params * dt
	if e.opt.KeepExperts && r.Image != "" {
		weights *= 2
	}
	return CheckMemory(r, fi.Config, weights, e.budget())
}

// budget is the machine's memory: total host memory, and the GPU's total
// (0 on a CPU backend), read once.
func (e *Engine) budget() Budget {
	e.infoMu.Lock()
	defer e.infoMu.Unlock()
	if e.machine == nil {
		b := Budget{Host: HostMemory()}
		if mi, ok := e.dit.(interface{ MemInfo() (free, total int64) }); ok {
			_, b.Device = mi.MemInfo()
		}
		e.machine = &b
	}
	return *e.machine
}

// ditInfo is the DiT's (or the high-noise expert's) configuration, read
// from its file's header once (not from the loaded model, which Generate
// may be changing on another goroutine).
func (e *Engine) ditInfo() (wan.FileInfo, error) {
	e.infoMu.Lock()
	defer e.infoMu.Unlock()
	if e.fileInfo != nil {
		return *e.fileInfo, nil
	}
	path := e.opt.DiT
	if path == "" {
		path = e.opt.DiTHigh
	}
	f, err := e.opt.OpenCheckpoint(path)
	if err != nil {
		return wan.FileInfo{}, err
	}
	defer f.Close()
	fi, err := wan.DetectConfig(f)
	if err != nil {
		return wan.FileInfo{}, err
	}
	e.fileInfo = &fi
	return fi, nil
}
