package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Int8Linear is TurboDiffusion's W8A8 layer (backend.DiTOps): x [..., K]
// quantised per 128x128 tile, int8 GEMM against w [N, K] with scale
// [ceil(N/128), K/128], rounded to x's dtype, then bias [N] (or nil) added
// in that dtype. Bit-exact with the CUDA reference for BF16 x (see package
// quant). F32 x (which the reference's kernels do not take) is quantised
// the same way and skips the bf16 roundings.
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
	xq := make([]int8, m*k)
	xr, xc := quant.ScaleShape(m, k)
	sx := make([]float32, xr*xc)
	quant.QuantizeInto(xq, sx, xt.F, m, k)
	y := make([]float32, m*n)
	b.int8GEMM(y, xq, sx, wt.I, st.F, m, n, k)
	bf16 := xt.dt == tensor.BF16
	b.parallelFor(m, func(lo, hi int) {
		for i := lo * n; i < hi*n; i++ {
			v := y[i]
			if bf16 {
				v = tensor.RoundBF16(v)
			}
			if bv != nil {
				v += bv[i%n]
				if bf16 {
					v = tensor.RoundBF16(v)
				}
			}
			y[i] = v
		}
	})
	shape := append(append([]int(nil), xt.shape[:len(xt.shape)-1]...), n)
	return b.track(&Tensor{shape: shape, dt: xt.dt, F: y})
}

// int8GEMM computes the reference kernel's float32 accumulators (see
// quant.GEMM) on the SIMD float GEMM: int8 codes are integers, so each
// 128-wide block's products (|p| ≤ 2^14) and partial sums (|s| ≤ 2^21)
// are exact in float32 in any order, and the per-block dot products equal
// the kernel's int32 ones bit for bit. The block results are then folded
// in ascending order with the kernel's fma(dot, sx·sw, acc).
func (b *Backend) int8GEMM(y []float32, xq []int8, sx []float32, wq []int8, sw []float32, m, n, k int) {
	const blk = quant.Block
	kb := k / blk
	xf := make([]float32, m*blk)
	wf := make([]float32, n*blk)
	d := make([]float32, m*n)
	for kbi := 0; kbi < kb; kbi++ {
		toFloatBlock(xf, xq, m, k, kbi)
		toFloatBlock(wf, wq, n, k, kbi)
		b.gemm(m, n, blk, xf, blk, wf, blk, d, n, nil)
		b.parallelFor(m, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				sxr := sx[(r/blk)*kb+kbi]
				dr, yr := d[r*n:r*n+n], y[r*n:r*n+n]
				for j := range dr {
					yr[j] = quant.FMA32(dr[j], sxr*sw[(j/blk)*kb+kbi], yr[j])
				}
			}
		})
	}
}

// toFloatBlock copies column block kbi (128 wide) of the int8 matrix
// q [rows, k] into dst [rows, 128] as float32.
func toFloatBlock(dst []float32, q []int8, rows, k, kbi int) {
	const blk = quant.Block
	for r := 0; r < rows; r++ {
		src := q[r*k+kbi*blk : r*k+kbi*blk+blk]
		out := dst[r*blk : r*blk+blk]
		for i, v := range src {
			out[i] = float32(v)
		}
	}
}
