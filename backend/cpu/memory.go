package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Upload copies data into a new tensor of dtype dt, rounding to dt.
func (b *Backend) Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	checkShapeDims("Upload", shape)
	return b.newTensor(dt, shape, append([]float32(nil), data...))
}

// UploadInt8 copies int8 data into a new I8 tensor.
func (b *Backend) UploadInt8(shape []int, data []int8) backend.Tensor {
	checkShapeDims("UploadInt8", shape)
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("cpu: UploadInt8: shape %v holds %d elements, data has %d", shape, tensor.NumElements(shape), len(data))
	}
	return b.track(&Tensor{shape: append([]int(nil), shape...), dt: tensor.I8, I: append([]int8(nil), data...)})
}

// Download returns a copy of a float tensor's values.
func (b *Backend) Download(t backend.Tensor) []float32 {
	c := floatT("Download", t)
	return append([]float32(nil), c.F...)
}

// Free drops t's storage, shared with its Reshape views as on the GPU;
// later use of t or of a view fails with a clear error, so a CPU test
// catches what would be a use-after-free on the device.
func (b *Backend) Free(t backend.Tensor) {
	r := T(t).root()
	b.arena.Freed(r)
	release(r)
}

// release drops a root tensor's storage (idempotent).
func release(c *Tensor) {
	c.F, c.I, c.freed = nil, nil, true
}

// Sync is a no-op: CPU ops complete before they return.
func (b *Backend) Sync() {}

// checkShapeDims fails on negative dimensions.
func checkShapeDims(op string, shape []int) {
	for _, s := range shape {
		if s < 0 {
			backend.Fail("cpu: %s: negative dimension in shape %v", op, shape)
		}
	}
}

// floatT is T for ops that need an F32 or BF16 tensor.
func floatT(op string, t backend.Tensor) *Tensor {
	c := T(t)
	if c.dt != tensor.F32 && c.dt != tensor.BF16 {
		backend.Fail("cpu: %s: want a float32 or bfloat16 tensor, got %v %v", op, c.dt, c.shape)
	}
	return c
}

// newOut allocates an uninitialised float tensor of dtype dt.
func (b *Backend) newOut(dt tensor.DType, shape []int) *Tensor {
	return b.track(&Tensor{shape: append([]int(nil), shape...), dt: dt, F: make([]float32, tensor.NumElements(shape))})
}

// roundSlice rounds x in place to dt's precision (a no-op for F32).
func roundSlice(dt tensor.DType, x []float32) {
	if dt == tensor.BF16 {
		roundBF16(x)
	}
}
