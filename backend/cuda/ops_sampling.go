package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The rCM sampler's steps on the device (backend.RCMOps, kernels/rcm.cu).

var _ backend.RCMOps = (*Backend)(nil)

// checkRCM fails unless t is a live tensor of dtype dt with n elements.
func checkRCM(what string, t *Tensor, dt tensor.DType, n int64) {
	if t.dt != dt {
		backend.Fail("cuda: %s: dtype %v, want %v", what, t.dt, dt)
	}
	if t.n() != n {
		backend.Fail("cuda: %s: %d elements (shape %v), want %d", what, t.n(), t.shape, n)
	}
	_ = t.Ptr() // fails on a freed tensor
}

// RCMInit returns the F64 state float64(eps)·s0.
func (b *Backend) RCMInit(eps backend.Tensor, s0 float64) backend.Tensor {
	e := T(eps)
	checkRCM("RCMInit noise", e, tensor.F32, e.n())
	defer b.enter()()
	x := b.newTensor(tensor.F64, e.shape)
	if n := e.n(); n > 0 {
		b.launch(b.fn("rcm.cu", "rcm_init_kernel"), b.gridFor(n), block256, 0, x.buf.ptr, e.buf.ptr, n, s0)
	}
	return x
}

// RCMInput returns the state rounded to dt (float64 → float32 → dt).
func (b *Backend) RCMInput(x backend.Tensor, dt tensor.DType) backend.Tensor {
	s := T(x)
	checkRCM("RCMInput state", s, tensor.F64, s.n())
	dc := dtCode(dt)
	defer b.enter()()
	out := b.newTensor(dt, s.shape)
	if n := s.n(); n > 0 {
		b.launch(b.fn("rcm.cu", "rcm_input_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, dc, s.buf.ptr, n)
	}
	return out
}

// RCMUpdate advances the state in place: the SDE step with eps, the ODE
// step without.
func (b *Backend) RCMUpdate(x, v, eps backend.Tensor, cur, next float64) {
	s := T(x)
	n := s.n()
	checkRCM("RCMUpdate state", s, tensor.F64, n)
	vt := T(v)
	checkRCM("RCMUpdate velocity", vt, tensor.F32, n)
	var et *Tensor
	if eps != nil {
		et = T(eps)
		checkRCM("RCMUpdate noise", et, tensor.F32, n)
	}
	defer b.enter()()
	if n == 0 {
		return
	}
	if et == nil {
		b.launch(b.fn("rcm.cu", "rcm_ode_kernel"), b.gridFor(n), block256, 0, s.buf.ptr, vt.buf.ptr, n, cur-next)
		return
	}
	b.launch(b.fn("rcm.cu", "rcm_sde_kernel"), b.gridFor(n), block256, 0, s.buf.ptr, vt.buf.ptr, et.buf.ptr, n, cur,
		1-next, float32(next))
}
