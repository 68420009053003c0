package cuda

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"
)

// A kernelProfile times every kernel launch (and cuBLASLt GEMM) between
// StartProfile and StopProfile with a pair of CUDA events each, to find
// where a model's GPU time goes. It is for benchmarks: events serialise
// nothing, but creating two per launch costs host time.
type kernelProfile struct {
	names []string
	evs   []uintptr // pairs: before, after
}

// ProfileEntry is one kernel's total over a profile.
type ProfileEntry struct {
	Name  string
	Calls int
	MS    float64
}

// StartProfile begins timing every launch on this backend.
func (b *Backend) StartProfile() {
	defer b.enter()()
	b.prof = &kernelProfile{}
}

// profMark records an event for launch name (before when open, else
// after); the caller holds the device.
func (b *Backend) profMark(name string, open bool) {
	var ev uintptr
	b.must("cuEventCreate", call(b.drv.cuEventCreate, uintptr(unsafe.Pointer(&ev)), eventDefault))
	b.must("cuEventRecord", call(b.drv.cuEventRecord, ev, b.stream))
	if open {
		b.prof.names = append(b.prof.names, name)
	}
	b.prof.evs = append(b.prof.evs, ev)
}

// StopProfile waits for the queued work and returns the time per kernel
// name, largest first.
func (b *Backend) StopProfile() []ProfileEntry {
	defer b.enter()()
	p := b.prof
	b.prof = nil
	if p == nil || len(p.evs) == 0 {
		return nil
	}
	b.must("cuEventSynchronize", call(b.drv.cuEventSynchronize, p.evs[len(p.evs)-1]))
	tot := map[string]*ProfileEntry{}
	for i, n := range p.names {
		var t float32
		b.must("cuEventElapsedTime", call(b.drv.cuEventElapsedTime, uintptr(unsafe.Pointer(&t)), p.evs[2*i], p.evs[2*i+1]))
		e := tot[n]
		if e == nil {
			e = &ProfileEntry{Name: n}
			tot[n] = e
		}
		e.Calls++
		e.MS += float64(t)
	}
	for _, ev := range p.evs {
		call(b.drv.cuEventDestroy, ev)
	}
	out := make([]ProfileEntry, 0, len(tot))
	for _, e := range tot {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MS > out[j].MS })
	return out
}

// FormatProfile renders a profile as a table with each entry's share of
// total (ms; the whole timed span, so the remainder shows time outside
// kernels).
func FormatProfile(ps []ProfileEntry, total float64) string {
	var sb strings.Builder
	sum := 0.0
	for _, e := range ps {
		sum += e.MS
		fmt.Fprintf(&sb, "%10.2f ms %5.1f%% %6d× %s\n", e.MS, 100*e.MS/total, e.Calls, e.Name)
	}
	fmt.Fprintf(&sb, "%10.2f ms %5.1f%% outside kernels (copies, host)\n", total-sum, 100*(total-sum)/total)
	return sb.String()
}
