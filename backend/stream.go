package backend

import "github.com/turbodiffusion-go/turbodiffusion/tensor"

// HostTensor is a tensor's contents kept in host memory by a Streamer.
type HostTensor interface {
	Shape() []int
	DType() tensor.DType
}

// Fence marks copies queued by Streamer.CopyIn.
type Fence interface{}

// Streamer is an optional backend capability for weights that do not fit
// on the device (the DiT's --offload): they stay in page-locked host memory
// and are copied into reused device tensors ahead of use, on a copy stream
// that runs while the compute stream works.
type Streamer interface {
	// HostUpload keeps data as dtype dt (F32 or BF16, values rounded to
	// dt) in host memory; HostUploadInt8 keeps int8 codes.
	HostUpload(dt tensor.DType, shape []int, data []float32) HostTensor
	HostUploadInt8(shape []int, data []int8) HostTensor
	// Alloc returns a device tensor with unspecified contents.
	Alloc(dt tensor.DType, shape []int) Tensor
	// CopyIn queues the copies src[i] → dst[i] (equal dtypes and shapes) to
	// start once the work queued so far has finished (it may still read
	// dst), and returns their fence.
	CopyIn(dst []Tensor, src []HostTensor) Fence
	// Await makes the work queued after it wait for f's copies.
	Await(f Fence)
	// FreeHost releases a host tensor.
	FreeHost(h HostTensor)
}
