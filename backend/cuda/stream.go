package cuda

import (
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The Streamer capability (backend.Streamer): weights in page-locked host
// memory, copied into reused device tensors on a second stream. CopyIn
// records an event on the compute stream and makes the copy stream wait
// for it, so a destination is overwritten only after the work that reads
// it; Await makes the compute stream wait for the copies' event. The
// destinations are long-lived tensors the caller owns (never pool blocks
// freed and reused while a copy may still write them).

// hostTensor is pinned host memory holding a tensor's bytes.
type hostTensor struct {
	ptr   uintptr
	bytes int64
	dt    tensor.DType
	shape []int
}

func (h *hostTensor) Shape() []int        { return h.shape }
func (h *hostTensor) DType() tensor.DType { return h.dt }

// fence is an event recorded on the copy stream after a CopyIn's copies.
type fence struct{ ev uintptr }

// pinned allocates n bytes of page-locked host memory.
func (b *Backend) pinned(n int64) uintptr {
	var p uintptr
	b.must("cuMemHostAlloc (pinned host memory for --offload)", call(b.drv.cuMemHostAlloc, uintptr(unsafe.Pointer(&p)), uintptr(max(n, 1)), hostAllocPortable))
	return p
}

// HostUpload keeps data as dt (bf16 rounded on the host) in pinned memory.
func (b *Backend) HostUpload(dt tensor.DType, shape []int, data []float32) backend.HostTensor {
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("cuda: HostUpload: shape %v holds %d elements, data has %d", shape, tensor.NumElements(shape), len(data))
	}
	if dt != tensor.F32 && dt != tensor.BF16 {
		backend.Fail("cuda: HostUpload: dtype %v, want float32 or bfloat16", dt)
	}
	defer b.enter()()
	n := int64(len(data)) * int64(dt.Size())
	h := &hostTensor{ptr: b.pinned(n), bytes: n, dt: dt, shape: append([]int(nil), shape...)}
	if len(data) == 0 {
		return h
	}
	hb := hostBytes(h.ptr, n)
	if dt == tensor.F32 {
		copy(unsafe.Slice((*float32)(unsafe.Pointer(&hb[0])), len(data)), data)
		return h
	}
	u := unsafe.Slice((*uint16)(unsafe.Pointer(&hb[0])), len(data))
	parallel.For((len(u)+bf16Chunk-1)/bf16Chunk, func(lo, hi int) {
		for x := lo * bf16Chunk; x < min(hi*bf16Chunk, len(u)); x++ {
			u[x] = tensor.BF16FromF32(data[x])
		}
	})
	return h
}

// HostUploadInt8 keeps int8 codes in pinned memory.
func (b *Backend) HostUploadInt8(shape []int, data []int8) backend.HostTensor {
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("cuda: HostUploadInt8: shape %v holds %d elements, data has %d", shape, tensor.NumElements(shape), len(data))
	}
	defer b.enter()()
	h := &hostTensor{ptr: b.pinned(int64(len(data))), bytes: int64(len(data)), dt: tensor.I8, shape: append([]int(nil), shape...)}
	if len(data) > 0 {
		copy(hostBytes(h.ptr, int64(len(data))), unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), len(data)))
	}
	return h
}

// Alloc returns an uninitialised device tensor.
func (b *Backend) Alloc(dt tensor.DType, shape []int) backend.Tensor {
	defer b.enter()()
	return b.newTensor(dt, shape)
}

// copyStream returns the copy stream, created on first use. Caller holds
// the device.
func (b *Backend) copyStream() uintptr {
	if b.copyStr == 0 {
		b.must("cuStreamCreate (copy stream)", call(b.drv.cuStreamCreate, uintptr(unsafe.Pointer(&b.copyStr)), streamNonBlocking))
	}
	return b.copyStr
}

func (b *Backend) newEvent() uintptr {
	var ev uintptr
	b.must("cuEventCreate", call(b.drv.cuEventCreate, uintptr(unsafe.Pointer(&ev)), eventDisableTiming))
	return ev
}

// CopyIn queues src[i] → dst[i] on the copy stream after the compute
// stream's queued work.
func (b *Backend) CopyIn(dst []backend.Tensor, src []backend.HostTensor) backend.Fence {
	if len(dst) != len(src) {
		backend.Fail("cuda: CopyIn: %d destinations for %d sources", len(dst), len(src))
	}
	defer b.enter()()
	cs := b.copyStream()
	after := b.newEvent()
	b.must("cuEventRecord", call(b.drv.cuEventRecord, after, b.stream))
	b.must("cuStreamWaitEvent", call(b.drv.cuStreamWaitEvent, cs, after, 0))
	b.must("cuEventDestroy", call(b.drv.cuEventDestroy, after)) // released once the wait is done
	for i := range dst {
		d := T(dst[i])
		h, ok := src[i].(*hostTensor)
		if !ok || h.ptr == 0 {
			backend.Fail("cuda: CopyIn: source %d is not a live CUDA host tensor", i)
		}
		if d.dt != h.dt || !backend.SameShape(d.shape, h.shape) {
			backend.Fail("cuda: CopyIn: %v %v into %v %v", h.dt, h.shape, d.dt, d.shape)
		}
		if h.bytes > 0 {
			b.must("cuMemcpyHtoDAsync (copy stream)", call(b.drv.cuMemcpyHtoDAsync, d.buf.ptr, h.ptr, uintptr(h.bytes), cs))
		}
	}
	done := b.newEvent()
	b.must("cuEventRecord", call(b.drv.cuEventRecord, done, cs))
	return &fence{ev: done}
}

// Await makes the compute stream wait for f's copies.
func (b *Backend) Await(f backend.Fence) {
	fc, ok := f.(*fence)
	if !ok || fc == nil || fc.ev == 0 {
		backend.Fail("cuda: Await: not a fence of this backend (%T)", f)
	}
	defer b.enter()()
	b.must("cuStreamWaitEvent", call(b.drv.cuStreamWaitEvent, b.stream, fc.ev, 0))
	b.must("cuEventDestroy", call(b.drv.cuEventDestroy, fc.ev))
	fc.ev = 0
}

// FreeHost releases pinned memory; the copy stream is drained first so no
// queued copy still reads it.
func (b *Backend) FreeHost(h backend.HostTensor) {
	ht, ok := h.(*hostTensor)
	if !ok || ht.ptr == 0 {
		return
	}
	defer b.enter()()
	if b.copyStr != 0 {
		b.must("cuStreamSynchronize (copy stream)", call(b.drv.cuStreamSynchronize, b.copyStr))
	}
	b.must("cuMemFreeHost", call(b.drv.cuMemFreeHost, ht.ptr))
	ht.ptr = 0
}

var _ backend.Streamer = (*Backend)(nil)
