package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The CPU backend's Streamer: host and device memory are the same, every op
// has finished when it returns, so a copy is a copy and a fence is nothing.
// It lets the models' offload path run (and be tested) without a GPU.

// HostUpload keeps data as a tensor of dtype dt.
func (b *Backend) HostUpload(dt tensor.DType, shape []int, data []float32) backend.HostTensor {
	return b.Upload(dt, shape, data).(*Tensor)
}

// HostUploadInt8 keeps int8 codes.
func (b *Backend) HostUploadInt8(shape []int, data []int8) backend.HostTensor {
	return b.UploadInt8(shape, data).(*Tensor)
}

// Alloc returns a zero tensor.
func (b *Backend) Alloc(dt tensor.DType, shape []int) backend.Tensor {
	checkShapeDims("Alloc", shape)
	if dt == tensor.I8 {
		return &Tensor{shape: append([]int(nil), shape...), dt: dt, I: make([]int8, tensor.NumElements(shape))}
	}
	return NewTensor(dt, shape, make([]float32, tensor.NumElements(shape)))
}

// CopyIn copies now.
func (b *Backend) CopyIn(dst []backend.Tensor, src []backend.HostTensor) backend.Fence {
	if len(dst) != len(src) {
		backend.Fail("cpu: CopyIn: %d destinations for %d sources", len(dst), len(src))
	}
	for i := range dst {
		d, s := T(dst[i]), T(src[i].(*Tensor))
		if d.dt != s.dt || !backend.SameShape(d.shape, s.shape) {
			backend.Fail("cpu: CopyIn: %v %v into %v %v", s.dt, s.shape, d.dt, d.shape)
		}
		copy(d.F, s.F)
		copy(d.I, s.I)
	}
	return nil
}

// Await does nothing: copies are done when CopyIn returns.
func (b *Backend) Await(backend.Fence) {}

// FreeHost drops a host tensor.
func (b *Backend) FreeHost(h backend.HostTensor) { b.Free(h.(*Tensor)) }

var _ backend.Streamer = (*Backend)(nil)
