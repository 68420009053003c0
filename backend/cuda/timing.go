package cuda

import (
	"math"
	"sort"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// TimeGPU runs f warm times, then iters times, each bracketed by CUDA
// events on the stream, and returns the per-run GPU times in milliseconds
// sorted ascending (so [len/2] is the median). f queues work through this
// backend's ops; it must not call Sync.
func (b *Backend) TimeGPU(warm, iters int, f func()) (ms []float64, err error) {
	defer backend.Recover(&err)
	for i := 0; i < warm; i++ {
		f()
	}
	b.Sync()
	var ev [2]uintptr
	func() {
		defer b.enter()()
		for i := range ev {
			b.must("cuEventCreate", call(b.drv.cuEventCreate, uintptr(unsafe.Pointer(&ev[i])), eventDefault))
		}
	}()
	defer func() {
		defer b.enter()()
		for _, e := range ev {
			call(b.drv.cuEventDestroy, e)
		}
	}()
	for i := 0; i < iters; i++ {
		b.record(ev[0])
		f()
		b.record(ev[1])
		func() {
			defer b.enter()()
			b.must("cuEventSynchronize", call(b.drv.cuEventSynchronize, ev[1]))
			var t float32
			b.must("cuEventElapsedTime", call(b.drv.cuEventElapsedTime, uintptr(unsafe.Pointer(&t)), ev[0], ev[1]))
			ms = append(ms, float64(t))
		}()
	}
	sort.Float64s(ms)
	return ms, nil
}

func (b *Backend) record(ev uintptr) {
	defer b.enter()()
	b.must("cuEventRecord", call(b.drv.cuEventRecord, ev, b.stream))
}

// Median of sorted times.
func Median(ms []float64) float64 {
	if len(ms) == 0 {
		return math.NaN()
	}
	return ms[len(ms)/2]
}

// MemInfo is the driver's free and total device memory; under a
// MemCapEnv cap, the cap and what is left of it (if less).
func (b *Backend) MemInfo() (free, total int64) {
	defer b.enter()()
	var f, t uint64
	call(b.drv.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t)))
	free, total = int64(f), int64(t)
	if b.memCap > 0 {
		free = min(free, max(0, b.memCap-b.pool.held()))
		total = min(total, b.memCap)
	}
	return free, total
}
