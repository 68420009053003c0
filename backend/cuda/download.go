package cuda

import (
	"math"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Downloads that overlap the next work (backend.AsyncDownloader): the copy
// runs on the copy stream behind an event recorded on the compute stream,
// into page-locked host buffers kept for reuse, and the source tensor is
// held (out of every scope, so the pool cannot hand its block out again)
// until the host has seen the copy's event, then freed. The VAE decode queues chunk t+1
// before it reads chunk t, so the GPU never waits for the host's copies.

var _ backend.AsyncDownloader = (*Backend)(nil)

// pinnedBuf is a page-locked host buffer of the download pool.
type pinnedBuf struct {
	ptr  uintptr
	size int64
}

// pinnedKeep is how many free download buffers the backend keeps.
const pinnedKeep = 4

// takePinned returns a pinned buffer of at least n bytes: the smallest
// free one that fits, else a new one (rounded up to 2 MiB). Caller holds
// the device.
func (b *Backend) takePinned(n int64) pinnedBuf {
	best := -1
	for i, p := range b.pinnedFree {
		if p.size >= n && (best < 0 || p.size < b.pinnedFree[best].size) {
			best = i
		}
	}
	if best >= 0 {
		p := b.pinnedFree[best]
		b.pinnedFree = append(b.pinnedFree[:best], b.pinnedFree[best+1:]...)
		return p
	}
	size := max(roundUp(n, 2<<20), 2<<20)
	var ptr uintptr
	b.must("cuMemHostAlloc (download buffer)", call(b.drv.cuMemHostAlloc, uintptr(unsafe.Pointer(&ptr)), uintptr(size), hostAllocPortable))
	return pinnedBuf{ptr: ptr, size: size}
}

// putPinned returns a buffer to the pool, releasing the smallest when more
// than pinnedKeep are free. Caller holds the device.
func (b *Backend) putPinned(p pinnedBuf) {
	b.pinnedFree = append(b.pinnedFree, p)
	if len(b.pinnedFree) <= pinnedKeep {
		return
	}
	small := 0
	for i, q := range b.pinnedFree {
		if q.size < b.pinnedFree[small].size {
			small = i
		}
	}
	call(b.drv.cuMemFreeHost, b.pinnedFree[small].ptr)
	b.pinnedFree = append(b.pinnedFree[:small], b.pinnedFree[small+1:]...)
}

// pending is one download in flight.
type pending struct {
	b      *Backend
	src    *Tensor // copied from; freed once the copy is done
	host   pinnedBuf
	ev     uintptr // on the copy stream after the copy; 0 when nothing was copied
	frames []int   // [F,H,W] for DownloadFramesAsync, nil for DownloadAsync
	done   bool
}

// DownloadAsync implements backend.AsyncDownloader.
func (b *Backend) DownloadAsync(t backend.Tensor) backend.Pending {
	ct := T(t)
	checkFloat("DownloadAsync", ct)
	defer b.enter()()
	b.arena.Persist(ct) // held until copied, whatever scope made it
	return b.queueDownload(ct, nil)
}

// DownloadFramesAsync implements backend.AsyncDownloader: one kernel
// writes the frames' bytes (a quarter of a bf16 video's float32 values)
// and only those are copied.
func (b *Backend) DownloadFramesAsync(t backend.Tensor, rng rgb24.Range) backend.Pending {
	ct := T(t)
	checkFloat("DownloadFramesAsync", ct)
	if len(ct.shape) != 4 || ct.shape[0] != 3 {
		backend.Fail("cuda: DownloadFramesAsync: want a video [3,F,H,W], got %v", ct.shape)
	}
	if rng != rgb24.Unit && rng != rgb24.Signed {
		backend.Fail("cuda: DownloadFramesAsync: unknown value range %d", rng)
	}
	F, H, W := ct.shape[1], ct.shape[2], ct.shape[3]
	defer b.enter()()
	out := b.newTensor(tensor.I8, []int{F, H, W, 3})
	b.arena.Persist(out)
	if n := int64(F) * int64(H) * int64(W); n > 0 {
		b.launch(b.fn("vae.cu", "video_rgb24_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, ct.buf.ptr, dtCode(ct.dt),
			n, int32(btoi(rng == rgb24.Signed)))
	}
	b.Free(ct) // read by a kernel queued on this stream: safe to reuse after it
	return b.queueDownload(out, []int{F, H, W})
}

// queueDownload copies src to a pinned buffer on the copy stream after the
// work queued so far. Caller holds the device.
func (b *Backend) queueDownload(src *Tensor, frames []int) *pending {
	n := src.bytes()
	p := &pending{b: b, src: src, host: b.takePinned(n), frames: frames}
	if n == 0 {
		return p
	}
	cs := b.copyStream()
	after := b.newEvent()
	b.must("cuEventRecord", call(b.drv.cuEventRecord, after, b.stream))
	b.must("cuStreamWaitEvent", call(b.drv.cuStreamWaitEvent, cs, after, 0))
	b.must("cuEventDestroy", call(b.drv.cuEventDestroy, after)) // released once the wait is done
	b.must("cuMemcpyDtoHAsync (copy stream)", call(b.drv.cuMemcpyDtoHAsync, p.host.ptr, src.buf.ptr, uintptr(n), cs))
	p.ev = b.newEvent()
	b.must("cuEventRecord", call(b.drv.cuEventRecord, p.ev, cs))
	return p
}

// wait blocks until the copy is done (the device is held only for the
// CUDA calls, not while the caller reads the buffer).
func (p *pending) wait(what string) {
	if p.done {
		backend.Fail("cuda: %s: the download was already finished", what)
	}
	p.done = true
	b := p.b
	defer b.enter()()
	if p.ev == 0 {
		return
	}
	r := call(b.drv.cuEventSynchronize, p.ev)
	call(b.drv.cuEventDestroy, p.ev)
	p.ev = 0
	if r != 0 {
		b.Free(p.src)
		p.host = pinnedBuf{} // the copy may not have ended: never reuse it
		b.must("cuEventSynchronize (download; a kernel queued earlier may have failed)", r)
	}
}

// release gives the pinned buffer back and frees the source.
func (p *pending) release() {
	b := p.b
	b.Free(p.src)
	if p.host.ptr != 0 {
		defer b.enter()()
		b.putPinned(p.host)
		p.host = pinnedBuf{}
	}
}

// Floats implements backend.Pending.
func (p *pending) Floats() []float32 {
	if p.frames != nil {
		backend.Fail("cuda: Pending.Floats on a frames download")
	}
	p.wait("Pending.Floats")
	defer p.release()
	out := make([]float32, p.src.n())
	if len(out) > 0 {
		widen(out, hostBytes(p.host.ptr, p.src.bytes()), p.src.dt)
	}
	return out
}

// Frames implements backend.Pending.
func (p *pending) Frames() [][]uint8 {
	if p.frames == nil {
		backend.Fail("cuda: Pending.Frames on a float download")
	}
	p.wait("Pending.Frames")
	defer p.release()
	F, size := p.frames[0], 3*p.frames[1]*p.frames[2]
	out := make([][]uint8, F)
	var h []byte
	if size > 0 {
		h = hostBytes(p.host.ptr, int64(F)*int64(size))
	}
	parallel.For(F, func(lo, hi int) {
		for f := lo; f < hi; f++ {
			out[f] = make([]uint8, size)
			copy(out[f], h[f*size:])
		}
	})
	return out
}

// Discard implements backend.Pending: it still waits for the copy, which
// writes the pinned buffer, before releasing anything.
func (p *pending) Discard() {
	if p.done {
		return
	}
	defer func() { recover() }() // a broken context: the error was or will be reported elsewhere
	p.wait("Pending.Discard")
	p.release()
}

// widen converts the host copy h of a float tensor of dtype dt to float32
// (exact: bf16 widens without rounding), over all cores: a decoded chunk is
// ~10^7 values.
func widen(dst []float32, h []byte, dt tensor.DType) {
	if dt == tensor.F32 {
		src := unsafe.Slice((*float32)(unsafe.Pointer(&h[0])), len(dst))
		parallel.For((len(dst)+bf16Chunk-1)/bf16Chunk, func(lo, hi int) {
			copy(dst[lo*bf16Chunk:min(hi*bf16Chunk, len(dst))], src[lo*bf16Chunk:])
		})
		return
	}
	u := unsafe.Slice((*uint16)(unsafe.Pointer(&h[0])), len(dst))
	parallel.For((len(dst)+bf16Chunk-1)/bf16Chunk, func(lo, hi int) {
		for x := lo * bf16Chunk; x < min(hi*bf16Chunk, len(dst)); x++ {
			dst[x] = math.Float32frombits(uint32(u[x]) << 16)
		}
	})
}
