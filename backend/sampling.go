package backend

import "github.com/turbodiffusion-go/turbodiffusion/tensor"

// RCMOps is an optional op set: the rCM sampler's elementwise steps on a
// state kept on the device (sampler.RCM.SampleOn), so a GPU loop moves no
// latent across the bus between network evaluations. The state is an F64
// tensor because the reference keeps it in float64; every op computes
// exactly what the sampler's host loop computes (sampler/rcm.go), bit for
// bit, so the loop's result does not depend on where it runs.
type RCMOps interface {
	// RCMInit returns the state x = float64(ε)·s0, a new F64 tensor of
	// eps's shape (eps is F32).
	RCMInit(eps Tensor, s0 float64) Tensor
	// RCMInput returns the state rounded to dt (F32 or BF16) as PyTorch's
	// x.to(dt) does: float64 → float32 → dt, each to nearest even. With dt
	// F32 it is also the loop's final latent.
	RCMInput(x Tensor, dt tensor.DType) Tensor
	// RCMUpdate advances x in place from RF time cur to next given the
	// velocity v (F32, x's element count). With eps (F32) it is the SDE
	// step x ← float64((1−next)·(x − float64(cur·v))) +
	// float64(float32(float32(next)·ε)), with eps nil the ODE step
	// x ← x − float64((cur−next)·v); every product and sum rounded on its
	// own (no fused multiply-add).
	RCMUpdate(x, v, eps Tensor, cur, next float64)
}
