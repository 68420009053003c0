package sampler

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Device is what RCM.SampleOn needs of a backend: memory, and the rCM
// steps as ops on a state it keeps (backend.RCMOps). The CUDA backend is
// one; HostOps is the host reference.
type Device interface {
	Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor
	Download(t backend.Tensor) []float32
	Free(t backend.Tensor)
	// Sync waits for the work queued so far.
	Sync()
	backend.RCMOps
}

// DeviceVelocity evaluates the network on a device latent: x is the model
// input (dtype NetDType, the latent's shape), the result the velocity as
// an F32 tensor of x's element count, which SampleOn frees once used. x must
// not be retained, modified or freed.
type DeviceVelocity func(st Step, x backend.Tensor) (backend.Tensor, error)

// SampleOn is Sample with the latent kept on dev between steps: the state,
// the network input and the velocity never cross to the host; only each
// step's noise is uploaded (drawn on the host while the network runs, the
// same draws in the same order as Sample) and the final latent downloaded.
// Its result equals Sample's bit for bit (dev's ops are the host loop's
// arithmetic). Tensors it allocates are freed before it returns.
//
// The host waits for each step to finish on the device (after queuing the
// update and the next input, so the device idles only for the launch of
// the next network's first op): v runs when the previous step is done, so
// a caller's progress reports and cancellation stay step by step.
func (c RCM) SampleOn(dev Device, shape []int, noise Noise, v DeviceVelocity) (out []float32, err error) {
	if err := checkNetDType(c.NetDType); err != nil {
		return nil, err
	}
	s, err := RCMTimes(c.Steps, c.SigmaMax)
	if err != nil {
		return nil, err
	}
	n := tensor.NumElements(shape)
	if n <= 0 {
		return nil, fmt.Errorf("sampler: latent shape %v has no elements", shape)
	}
	// Every tensor is released on every path, a failing op's panic
	// included (Recover runs last, after the releases).
	defer backend.Recover(&err)
	var e, x, in, vel, fin backend.Tensor
	release := func(t *backend.Tensor) {
		if *t != nil {
			dev.Free(*t)
			*t = nil
		}
	}
	defer func() {
		for _, t := range []*backend.Tensor{&e, &x, &in, &vel, &fin} {
			release(t)
		}
	}()
	eps := make([]float32, n)
	if err := noise.Normal(eps); err != nil {
		return nil, fmt.Errorf("sampler: initial noise: %w", err)
	}
	e = dev.Upload(tensor.F32, shape, eps)
	x = dev.RCMInit(e, s[0])
	release(&e)
	in = dev.RCMInput(x, c.NetDType)
	for i := 0; i < c.Steps; i++ {
		cur, next := s[i], s[i+1]
		st := Step{Index: i, Time: cur, Timestep: RCMTimestep(cur, c.NetDType)}
		var drawErr error
		drawn := make(chan struct{})
		if !c.ODE {
			go func() {
				defer close(drawn)
				drawErr = noise.Normal(eps)
			}()
		}
		var err error
		vel, err = v(st, in)
		release(&in)
		if !c.ODE {
			<-drawn
		}
		if err != nil {
			vel = nil // a failing network's result is not ours to free
			return nil, fmt.Errorf("sampler: step %d (timestep %g): %w", st.Index, st.Timestep, err)
		}
		if got := tensor.NumElements(vel.Shape()); got != n || vel.DType() != tensor.F32 {
			return nil, fmt.Errorf("sampler: step %d: velocity is %v %v, want float32 with %d values (latent %v)", i, vel.DType(), vel.Shape(), n, shape)
		}
		if c.ODE {
			dev.RCMUpdate(x, vel, nil, cur, next)
		} else {
			if drawErr != nil {
				return nil, fmt.Errorf("sampler: step %d noise: %w", i, drawErr)
			}
			e = dev.Upload(tensor.F32, shape, eps)
			dev.RCMUpdate(x, vel, e, cur, next)
			release(&e)
		}
		release(&vel)
		if i+1 < c.Steps {
			in = dev.RCMInput(x, c.NetDType)
		}
		dev.Sync()
	}
	fin = dev.RCMInput(x, tensor.F32)
	return dev.Download(fin), nil
}

// HostOps is Device in host memory, built from the host loop's own
// functions: the reference the device ops are tested against, and a way to
// run SampleOn without a GPU. Its tensors are *HostTensor.
type HostOps struct{}

// HostTensor is a HostOps tensor: F32 and BF16 values in F, an F64 state
// in D.
type HostTensor struct {
	shape []int
	dt    tensor.DType
	F     []float32
	D     []float64
	freed bool
}

func (t *HostTensor) Shape() []int        { return t.shape }
func (t *HostTensor) DType() tensor.DType { return t.dt }

// host asserts a live HostTensor of dtype dt (any float dtype when dt is
// Invalid).
func host(what string, t backend.Tensor, dt tensor.DType) *HostTensor {
	h, ok := t.(*HostTensor)
	switch {
	case !ok || h == nil:
		backend.Fail("sampler: HostOps %s: not a host tensor (%T)", what, t)
	case h.freed:
		backend.Fail("sampler: HostOps %s: use of a freed tensor", what)
	case dt != tensor.Invalid && h.dt != dt:
		backend.Fail("sampler: HostOps %s: dtype %v, want %v", what, h.dt, dt)
	}
	return h
}

// Upload copies data, rounded to dt (F32 or BF16).
func (HostOps) Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	if dt != tensor.F32 && dt != tensor.BF16 {
		backend.Fail("sampler: HostOps Upload: dtype %v, want float32 or bfloat16", dt)
	}
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("sampler: HostOps Upload: shape %v holds %d values, got %d", shape, tensor.NumElements(shape), len(data))
	}
	f := append([]float32(nil), data...)
	if dt == tensor.BF16 {
		tensor.RoundBF16Slice(f)
	}
	return &HostTensor{shape: append([]int(nil), shape...), dt: dt, F: f}
}

// Download copies an F32 or BF16 tensor's values.
func (HostOps) Download(t backend.Tensor) []float32 {
	h := host("Download", t, tensor.Invalid)
	if h.dt == tensor.F64 {
		backend.Fail("sampler: HostOps Download: an F64 state; RCMInput converts it")
	}
	return append([]float32(nil), h.F...)
}

// Sync does nothing: host ops are done when they return.
func (HostOps) Sync() {}

// Free marks t freed; later use fails.
func (HostOps) Free(t backend.Tensor) {
	if h, ok := t.(*HostTensor); ok && h != nil {
		h.freed, h.F, h.D = true, nil, nil
	}
}

// RCMInit is rcmInit.
func (HostOps) RCMInit(eps backend.Tensor, s0 float64) backend.Tensor {
	e := host("RCMInit noise", eps, tensor.F32)
	x := &HostTensor{shape: append([]int(nil), e.shape...), dt: tensor.F64, D: make([]float64, len(e.F))}
	rcmInit(x.D, e.F, s0)
	return x
}

// RCMInput is rcmInput.
func (HostOps) RCMInput(x backend.Tensor, dt tensor.DType) backend.Tensor {
	s := host("RCMInput state", x, tensor.F64)
	if dt != tensor.F32 && dt != tensor.BF16 {
		backend.Fail("sampler: HostOps RCMInput: dtype %v, want float32 or bfloat16", dt)
	}
	out := &HostTensor{shape: append([]int(nil), s.shape...), dt: dt, F: make([]float32, len(s.D))}
	rcmInput(out.F, s.D, dt)
	return out
}

// RCMUpdate is rcmSDEUpdate, or rcmODEUpdate without eps.
func (HostOps) RCMUpdate(x, v, eps backend.Tensor, cur, next float64) {
	s := host("RCMUpdate state", x, tensor.F64)
	vt := host("RCMUpdate velocity", v, tensor.F32)
	if len(vt.F) != len(s.D) {
		backend.Fail("sampler: HostOps RCMUpdate: velocity has %d values, state %d", len(vt.F), len(s.D))
	}
	if eps == nil {
		rcmODEUpdate(s.D, vt.F, cur, next)
		return
	}
	e := host("RCMUpdate noise", eps, tensor.F32)
	if len(e.F) != len(s.D) {
		backend.Fail("sampler: HostOps RCMUpdate: noise has %d values, state %d", len(e.F), len(s.D))
	}
	rcmSDEUpdate(s.D, vt.F, e.F, cur, next)
}
