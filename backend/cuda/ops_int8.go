package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// int8Linear is TurboDiffusion's W8A8 layer (backend.DiTOps.Int8Linear) on
// the GPU (kernels/int8_linear.cu): x [..., K] (BF16, or F32 as the CPU
// backend allows) quantised per 128x128 tile, int8 GEMM against w [N, K]
// with scale [ceil(N/128), K/128], rounded to x's dtype, then bias [N] (or
// nil) added in that dtype. Bit-exact with the CPU backend.
func (b *Backend) int8Linear(xt, wt, st, biast backend.Tensor) backend.Tensor {
	defer keepAlive(xt, wt, st, biast) // until the kernels are queued (see keepAlive)
	x, w, s := T(xt), T(wt), T(st)
	checkFloat("Int8Linear input", x)
	if w.dt != tensor.I8 || len(w.shape) != 2 {
		backend.Fail("cuda: Int8Linear: weight must be a 2-D int8 tensor [N, K], got %v %v", w.dt, w.shape)
	}
	n, k := w.shape[0], w.shape[1]
	if len(x.shape) == 0 || x.shape[len(x.shape)-1] != k {
		backend.Fail("cuda: Int8Linear: input shape %v does not end in the weight's K=%d (weight %v)", x.shape, k, w.shape)
	}
	if k <= 0 || k%quant.Block != 0 {
		backend.Fail("cuda: Int8Linear: K=%d is not a positive multiple of %d (the int8 GEMM needs whole 128-blocks)", k, quant.Block)
	}
	sr, sc := quant.ScaleShape(n, k)
	if s.dt != tensor.F32 || len(s.shape) != 2 || s.shape[0] != sr || s.shape[1] != sc {
		backend.Fail("cuda: Int8Linear: weight scale is %v %v, want float32 [%d, %d] for weight %v", s.dt, s.shape, sr, sc, w.shape)
	}
	var bp uintptr
	var bdt int32
	if biast != nil {
		bt := T(biast)
		checkFloat("Int8Linear bias", bt)
		if len(bt.shape) != 1 || bt.shape[0] != n {
			backend.Fail("cuda: Int8Linear: bias shape %v, want [%d]", bt.shape, n)
		}
		bp, bdt = bt.buf.ptr, dtCode(bt.dt)
	}
	m := int(x.n()) / k
	defer b.enter()()
	out := b.newTensor(x.dt, append(append([]int(nil), x.shape[:len(x.shape)-1]...), n))
	if m == 0 || n == 0 {
		return out
	}
	xr, xc := quant.ScaleShape(m, k)
	xq := b.newTensor(tensor.I8, []int{m, k})
	defer b.Free(xq)
	sx := b.newTensor(tensor.F32, []int{xr, xc})
	defer b.Free(sx)
	b.launch(b.fn("int8_linear.cu", "int8_quant_kernel"), [3]int{xc, xr, 1}, block256, 0,
		xq.buf.ptr, sx.buf.ptr, x.buf.ptr, dtCode(x.dt), int32(m), int32(k))
	const smem = 4 * 128 * 144 // two stages of 128-row X and W tiles, 144-byte rows
	b.launch(b.fn("int8_linear.cu", "int8_gemm_kernel"), [3]int{(n + 127) / 128, (m + 127) / 128, 1}, block256, smem,
		out.buf.ptr, dtCode(out.dt), xq.buf.ptr, sx.buf.ptr, w.buf.ptr, s.buf.ptr, bp, bdt, int32(m), int32(n), int32(k))
	return out
}
