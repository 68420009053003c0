package cuda

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/sizeclass"
)

// pool reuses device allocations. Blocks are rounded to size classes
// (sizeclass.Round: powers of two up to 1 MiB, then multiples of 2 MiB)
// and kept on free lists instead of going back to the driver: a denoising
// step asks for the same sizes again and again, and cuMemFree synchronises
// the device.
//
// Freed memory may be handed out again while earlier kernels that read it
// are still queued: that is safe because every kernel runs on one stream, in
// order.
type pool struct {
	mu     sync.Mutex
	free   map[int64][]uintptr
	cached int64 // bytes on free lists
	inUse  int64 // bytes handed out
	peak   int64 // high-water mark of inUse
	total  int64 // bytes held from the driver
	// arena is the backend's scope stack, told when freeBuf frees a
	// buffer's cached forms (initArena sets it).
	arena *backend.Arena[*buffer]
	// live counts the blocks handed out per size class and atPeak is a
	// copy of it taken at the high-water mark, both only while tracing
	// (MemTraceEnv): what a peak is made of, for checking the memory
	// planner block by block.
	live, atPeak map[int64]int
}

// MemTraceEnv set to "1" makes the pool record the live blocks at its
// high-water mark (PeakBlocks); `bench` prints them.
const MemTraceEnv = "TURBODIFFUSION_MEM_TRACE"

// handOut counts a block of class c handed out. Caller holds p.mu.
func (p *pool) handOut(c int64) {
	p.inUse += c
	if p.live != nil {
		p.live[c]++
	}
	if p.inUse > p.peak {
		p.peak = p.inUse
		p.snapshot()
	}
}

// snapshot records the live blocks as the peak's. Caller holds p.mu.
func (p *pool) snapshot() {
	if p.live == nil {
		return
	}
	clear(p.atPeak)
	for c, n := range p.live {
		if n > 0 {
			p.atPeak[c] = n
		}
	}
}

// PeakBlocks is the number of live blocks per size class at the pool's
// high-water mark (since the last ResetPeak), or nil when not tracing
// (MemTraceEnv).
func (b *Backend) PeakBlocks() map[int64]int {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	if b.pool.atPeak == nil {
		return nil
	}
	out := make(map[int64]int, len(b.pool.atPeak))
	for c, n := range b.pool.atPeak {
		out[c] = n
	}
	return out
}

func (p *pool) take(c int64) (uintptr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.free[c]
	if len(l) == 0 {
		return 0, false
	}
	ptr := l[len(l)-1]
	p.free[c] = l[:len(l)-1]
	p.cached -= c
	p.handOut(c)
	return ptr, true
}

// release puts a block back; it is called from Free and from a scope's
// End, and makes no CUDA call.
func (p *pool) release(ptr uintptr, c int64) {
	p.mu.Lock()
	p.free[c] = append(p.free[c], ptr)
	p.cached += c
	p.inUse -= c
	if p.live != nil {
		p.live[c]--
	}
	p.mu.Unlock()
}

// alloc returns device memory of at least n bytes. Caller holds the device
// (enter). On out-of-memory it first gives every cached block back to the
// driver, and only then fails, saying how much was asked and how much is
// free.
func (b *Backend) alloc(n int64) (uintptr, int64) {
	c := sizeclass.Round(n)
	if p, ok := b.pool.take(c); ok {
		return p, c
	}
	for attempt := 0; ; attempt++ {
		var dptr uintptr
		r := uintptr(cudaErrorOutOfMemory)
		if b.memCap <= 0 || b.pool.held()+c <= b.memCap {
			r = call(b.drv.cuMemAlloc, uintptr(unsafe.Pointer(&dptr)), uintptr(c))
		}
		if r == 0 {
			b.pool.mu.Lock()
			b.pool.total += c
			b.pool.handOut(c)
			b.pool.mu.Unlock()
			return dptr, c
		}
		if r != cudaErrorOutOfMemory {
			backend.FailErr(b.drv.check(fmt.Sprintf("cuMemAlloc(%d bytes)", c), r))
		}
		switch attempt {
		case 0: // cached blocks of other sizes
			b.trim()
		default:
			var free, total uint64
			call(b.drv.cuMemGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))
			b.pool.mu.Lock()
			inUse := b.pool.inUse
			b.pool.mu.Unlock()
			capNote := ""
			if b.memCap > 0 {
				capNote = fmt.Sprintf(" (capped at %s by %s)", fmtBytes(b.memCap), MemCapEnv)
			}
			backend.Fail("cuda: out of device memory: asked for %s (%s rounded); the GPU has %s free of %s%s, this process holds %s in live tensors",
				fmtBytes(n), fmtBytes(c), fmtBytes(int64(free)), fmtBytes(int64(total)), capNote, fmtBytes(inUse))
		}
	}
}

// trim returns every cached block to the driver. Caller holds the device.
func (b *Backend) trim() {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	for c, l := range b.pool.free {
		for _, p := range l {
			call(b.drv.cuMemFree, p)
			b.pool.total -= c
		}
		delete(b.pool.free, c)
	}
	b.pool.cached = 0
}

// held is the bytes the pool holds from the driver.
func (p *pool) held() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// MemCapEnv caps the device memory this process allocates (e.g. "24GiB",
// "20000MiB", bytes): allocations beyond it fail as if the GPU were full
// and MemInfo reports the capped figures, so a smaller card can be
// emulated on a larger one (the memory planner and --offload are checked
// this way).
const MemCapEnv = "TURBODIFFUSION_MEM_CAP"

// parseBytes reads "24GiB", "24G", "512MiB", "512M" or a byte count.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suf); ok {
			s, mult = strings.TrimSpace(rest), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%s=%q: want a size such as 24GiB or 20000MiB", MemCapEnv, s)
	}
	return int64(v * float64(mult)), nil
}

// MemStats reports the pool: bytes in live tensors, their high-water mark,
// and bytes held from the driver (live + cached).
func (b *Backend) MemStats() (inUse, peak, held int64) {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	return b.pool.inUse, b.pool.peak, b.pool.total
}

// ResetPeak restarts the high-water mark at the current use.
func (b *Backend) ResetPeak() {
	b.pool.mu.Lock()
	b.pool.peak = b.pool.inUse
	b.pool.snapshot()
	b.pool.mu.Unlock()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
