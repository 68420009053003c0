package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// buffer is one pool block. Views (Reshape) share it. Its scope returns it
// to the pool at End (scope.go); outside scopes, its owner's Free does.
type buffer struct {
	ptr   uintptr
	class int64
	freed bool
}

// Tensor is a CUDA tensor: F32, BF16 or I8, contiguous row-major.
type Tensor struct {
	shape []int
	dt    tensor.DType
	buf   *buffer
	// packed marks a bf16 [C,T,H,W] kept in the tiny VAE's padded
	// channels-last layout (ops_taehv.go): only ConvFused reads it, every
	// other op refuses it.
	packed bool
}

func (t *Tensor) Shape() []int        { return t.shape }
func (t *Tensor) DType() tensor.DType { return t.dt }

// Ptr is the device address of the first element.
func (t *Tensor) Ptr() uintptr {
	if t.buf.freed {
		backend.Fail("cuda: use of a freed tensor (shape %v)", t.shape)
	}
	return t.buf.ptr
}

func (t *Tensor) n() int64     { return int64(tensor.NumElements(t.shape)) }
func (t *Tensor) bytes() int64 { return t.n() * int64(t.dt.Size()) }

// T asserts that t is a live CUDA tensor.
func T(t backend.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok || c == nil {
		backend.Fail("cuda backend: tensor %T is not a CUDA tensor", t)
	}
	if c.buf.freed {
		backend.Fail("cuda: use of a freed tensor (shape %v)", c.shape)
	}
	if c.packed {
		backend.Fail("cuda: tensor %v is in the tiny VAE's packed layout (a ConvFused Intermediate): only ConvFused reads it", c.shape)
	}
	return c
}

// newTensor allocates an uninitialised tensor. Caller holds the device.
func (b *Backend) newTensor(dt tensor.DType, shape []int) *Tensor {
	for _, s := range shape {
		if s < 0 {
			backend.Fail("cuda: negative dimension in shape %v", shape)
		}
	}
	n := int64(tensor.NumElements(shape)) * int64(dt.Size())
	p, c := b.alloc(n)
	buf := &buffer{ptr: p, class: c}
	b.pool.own(&b.arena, buf)
	if n > c {
		backend.Fail("cuda: internal error: pool block of %d bytes for a %d-byte tensor %v", c, n, shape)
	}
	if b.Poison && n > 0 {
		if r := call(b.drv.cuMemsetD8Async, p, 0xFF, uintptr(n), b.stream); r != 0 {
			backend.Fail("cuda: poisoning new tensor %v %v (%d bytes at %#x, block %d): %s", dt, shape, n, p, c, b.drv.errText(r))
		}
	}
	return &Tensor{shape: append([]int(nil), shape...), dt: dt, buf: buf}
}

// dtCode is the run-time dtype code the kernels take (common.cuh).
func dtCode(dt tensor.DType) int32 {
	switch dt {
	case tensor.F32:
		return 1
	case tensor.BF16:
		return 2
	}
	backend.Fail("cuda: dtype %v is not a float tensor type (want float32 or bfloat16)", dt)
	return 0
}

func checkFloat(what string, t *Tensor) {
	if t.dt != tensor.F32 && t.dt != tensor.BF16 {
		backend.Fail("cuda: %s: dtype %v, want float32 or bfloat16", what, t.dt)
	}
}

// staging is a pinned host buffer for transfers; ev marks when the copy
// that last used it finished.
type staging struct {
	ptr  uintptr
	size int64
	ev   uintptr
}

const stageBytes = 16 << 20

// bf16Chunk is the unit of work of the parallel bf16 rounding in Upload.
const bf16Chunk = 64 << 10

func (b *Backend) stageBuf(i int) *staging {
	s := &b.stage[i]
	if s.ptr == 0 {
		b.must("cuMemHostAlloc", call(b.drv.cuMemHostAlloc, uintptr(unsafe.Pointer(&s.ptr)), stageBytes, hostAllocPortable))
		b.must("cuEventCreate", call(b.drv.cuEventCreate, uintptr(unsafe.Pointer(&s.ev)), eventDefault))
		s.size = stageBytes
	}
	return s
}

func hostBytes(p uintptr, n int64) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), p)), n) //nolint:govet // pinned C memory
}

// Upload copies host float32 data into a new tensor, converting on the host
// into pinned memory and copying in 16 MiB chunks, double-buffered.
func (b *Backend) Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("cuda: Upload: shape %v holds %d elements, data has %d", shape, tensor.NumElements(shape), len(data))
	}
	if dt != tensor.F32 && dt != tensor.BF16 {
		backend.Fail("cuda: Upload: dtype %v, want float32 or bfloat16", dt)
	}
	defer b.enter()()
	t := b.newTensor(dt, shape)
	es := int64(dt.Size())
	per := stageBytes / es
	for i, k := int64(0), 0; i < int64(len(data)); i, k = i+per, k^1 {
		j := min(i+per, int64(len(data)))
		s := b.stageBuf(k)
		b.must("cuEventSynchronize", call(b.drv.cuEventSynchronize, s.ev))
		h := hostBytes(s.ptr, (j-i)*es)
		if dt == tensor.F32 {
			copy(unsafe.Slice((*float32)(unsafe.Pointer(&h[0])), j-i), data[i:j])
		} else {
			u := unsafe.Slice((*uint16)(unsafe.Pointer(&h[0])), j-i)
			src := data[i:j]
			// Rounding to bf16 is the host's part of every upload (latents
			// each step, weights at load): spread it over the cores.
			parallel.For((len(u)+bf16Chunk-1)/bf16Chunk, func(lo, hi int) {
				for x := lo * bf16Chunk; x < min(hi*bf16Chunk, len(u)); x++ {
					u[x] = tensor.BF16FromF32(src[x])
				}
			})
		}
		b.must("cuMemcpyHtoDAsync", call(b.drv.cuMemcpyHtoDAsync, t.buf.ptr+uintptr(i*es), s.ptr, uintptr((j-i)*es), b.stream))
		b.must("cuEventRecord", call(b.drv.cuEventRecord, s.ev, b.stream))
	}
	return t
}

// UploadInt8 copies int8 data into a new I8 tensor.
func (b *Backend) UploadInt8(shape []int, data []int8) backend.Tensor {
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("cuda: UploadInt8: shape %v holds %d elements, data has %d", shape, tensor.NumElements(shape), len(data))
	}
	defer b.enter()()
	t := b.newTensor(tensor.I8, shape)
	for i, k := int64(0), 0; i < int64(len(data)); i, k = i+stageBytes, k^1 {
		j := min(i+stageBytes, int64(len(data)))
		s := b.stageBuf(k)
		b.must("cuEventSynchronize", call(b.drv.cuEventSynchronize, s.ev))
		h := hostBytes(s.ptr, j-i)
		copy(h, unsafe.Slice((*byte)(unsafe.Pointer(&data[i])), j-i))
		b.must("cuMemcpyHtoDAsync", call(b.drv.cuMemcpyHtoDAsync, t.buf.ptr+uintptr(i), s.ptr, uintptr(j-i), b.stream))
		b.must("cuEventRecord", call(b.drv.cuEventRecord, s.ev, b.stream))
	}
	return t
}

// Download copies a float tensor back as float32 (waits for queued work).
func (b *Backend) Download(t backend.Tensor) []float32 {
	ct := T(t)
	checkFloat("Download", ct)
	defer b.enter()()
	n := ct.n()
	out := make([]float32, n)
	es := int64(ct.dt.Size())
	per := stageBytes / es
	s := b.stageBuf(0)
	for i := int64(0); i < n; i += per {
		j := min(i+per, n)
		b.must("cuMemcpyDtoHAsync", call(b.drv.cuMemcpyDtoHAsync, s.ptr, ct.buf.ptr+uintptr(i*es), uintptr((j-i)*es), b.stream))
		b.must("cuStreamSynchronize (a kernel queued earlier may have failed)", call(b.drv.cuStreamSynchronize, b.stream))
		h := hostBytes(s.ptr, (j-i)*es)
		dst := out[i:j]
		// Spread over the cores: a decoded video is ~10^8 values, and one
		// core widening them took longer than the decode itself.
		if ct.dt == tensor.F32 {
			src := unsafe.Slice((*float32)(unsafe.Pointer(&h[0])), j-i)
			parallel.For((len(dst)+bf16Chunk-1)/bf16Chunk, func(lo, hi int) {
				copy(dst[lo*bf16Chunk:min(hi*bf16Chunk, len(dst))], src[lo*bf16Chunk:])
			})
		} else {
			u := unsafe.Slice((*uint16)(unsafe.Pointer(&h[0])), j-i)
			parallel.For((len(dst)+bf16Chunk-1)/bf16Chunk, func(lo, hi int) {
				for x := lo * bf16Chunk; x < min(hi*bf16Chunk, len(dst)); x++ {
					dst[x] = math.Float32frombits(uint32(u[x]) << 16)
				}
			})
		}
	}
	return out
}

// Free returns t's memory to the pool now.
func (b *Backend) Free(t backend.Tensor) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		return
	}
	b.arena.Freed(ct.buf)
	b.pool.freeBuf(ct.buf)
}

// Reshape views t with another shape of the same element count.
func (b *Backend) Reshape(t backend.Tensor, shape ...int) backend.Tensor {
	ct := T(t)
	shape = append([]int(nil), shape...)
	neg := -1
	known := 1
	for i, s := range shape {
		if s == -1 && neg < 0 {
			neg = i
			continue
		}
		known *= s
	}
	if neg >= 0 && known > 0 {
		shape[neg] = int(ct.n()) / known
	}
	if int64(tensor.NumElements(shape)) != ct.n() {
		backend.Fail("cuda: Reshape: cannot view shape %v (%d elements) as %v", ct.shape, ct.n(), shape)
	}
	return &Tensor{shape: shape, dt: ct.dt, buf: ct.buf}
}

func (b *Backend) String() string {
	return fmt.Sprintf("cuda(%s, %s)", b.info.Name, b.info.Arch)
}
