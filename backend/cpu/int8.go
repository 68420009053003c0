package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Int8Linear is TurboDiffusion's W8A8 layer (backend.DiTOps): x [..., K]
// quantised per 128x128 tile, int8 GEMM against w [N, K] with scale
// [ceil(N/128), K/128], rounded to x's dtype, then bias [N] (or nil) added
// in that dtype. Bit-exact with the CUDA reference (see package quant).
func (b *Backend) Int8Linear(x, w, scale, bias backend.Tensor) backend.Tensor {
	xt, wt, st := T(x), T(w), T(scale)
	if xt.dt != tensor.BF16 && xt.dt != tensor.F32 {
		backend.Fail("cpu: Int8Linear: input must be bfloat16 or float32, got %v %v", xt.dt, xt.shape)
	}
	if wt.dt != tensor.I8 || len(wt.shape) != 2 {
		backend.Fail("cpu: Int8Linear: weight must be a 2-D int8 tensor [N, K], got %v %v", wt.dt, wt.shape)
	}
	n, k := wt.shape[0], wt.shape[1]
	if len(xt.shape) == 0 || xt.shape[len(xt.shape)-1] != k {
		backend.Fail("cpu: Int8Linear: input shape %v does not end in the weight's K=%d (weight %v)", xt.shape, k, wt.shape)
	}
	if k%quant.Block != 0 {
		backend.Fail("cpu: Int8Linear: K=%d is not a multiple of %d (the int8 GEMM needs whole 128-blocks)", k, quant.Block)
	}
	sr, sc := quant.ScaleShape(n, k)
	if st.dt != tensor.F32 {
		backend.Fail("cpu: Int8Linear: scale must be float32, got %v", st.dt)
	}
	backend.CheckShape("Int8Linear scale", scale, sr, sc)
	var bv []float32
	if bias != nil {
		bt := T(bias)
		if bt.dt != tensor.BF16 && bt.dt != tensor.F32 {
			backend.Fail("cpu: Int8Linear: bias must be a float tensor, got %v", bt.dt)
		}
		backend.CheckShape("Int8Linear bias", bias, n)
		bv = bt.F
	}
	m := len(xt.F) / k
	y, err := quant.Linear(xt.F, m, k, wt.I, st.F, n, bv, xt.dt == tensor.BF16)
	if err != nil {
		backend.FailErr(err)
	}
	shape := append(append([]int(nil), xt.shape[:len(xt.shape)-1]...), n)
	return &Tensor{shape: shape, dt: xt.dt, F: y}
}
