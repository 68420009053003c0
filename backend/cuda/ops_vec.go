package cuda

import "github.com/turbodiffusion-go/turbodiffusion/tensor"

// bf16 fast paths (kernels/vec.cu): 16-byte accesses for the DiT's
// memory-bound ops. Each returns false when its conditions do not hold and
// the general kernel must run. Caller holds the device.

// rowVec picks chunks-per-thread and block size for a row of D bf16 values.
func rowVec(D int) (vpt, threads int, ok bool) {
	if D%8 != 0 || D == 0 {
		return 0, 0, false
	}
	chunks := D / 8
	for _, v := range []int{1, 2, 4} {
		if chunks <= 256*v {
			t := (chunks + v - 1) / v
			return v, (t + 31) / 32 * 32, true
		}
	}
	return 0, 0, false
}

var vecSuffix = map[int]string{1: "1", 2: "2", 4: "4"}

func (b *Backend) lnVec(y, x *Tensor, rows int64, D int, wp uintptr, wdt int32, bp uintptr, bdt int32,
	sp uintptr, sdt int32, cp uintptr, cdt int32, nv int64, eps float32) bool {
	vpt, th, ok := rowVec(D)
	if !ok || x.dt != tensor.BF16 || y.dt != tensor.BF16 || (nv != 0 && nv%8 != 0) {
		return false
	}
	b.launch(b.fn("vec.cu", "ln_bf16_v"+vecSuffix[vpt]), [3]int{int(rows), 1, 1}, [3]int{th, 1, 1}, 0,
		y.buf.ptr, x.buf.ptr, wp, wdt, bp, bdt, sp, sdt, cp, cdt, nv, int32(D), eps)
	return true
}

func (b *Backend) rmsVec(y, x *Tensor, rows int64, D int, wp uintptr, wdt int32, eps float32, mode int32) bool {
	vpt, th, ok := rowVec(D)
	if !ok || x.dt != tensor.BF16 {
		return false
	}
	b.launch(b.fn("vec.cu", "rms_bf16_v"+vecSuffix[vpt]), [3]int{int(rows), 1, 1}, [3]int{th, 1, 1}, 0,
		y.buf.ptr, x.buf.ptr, wp, wdt, int32(D), eps, mode)
	return true
}

// ewVec runs ew_bf16_kernel op on bf16 x (and y) with operand vectors of nv
// elements.
func (b *Backend) ewVec(op int32, out, x, y *Tensor, ap uintptr, adt int32, bp uintptr, bdt int32, nv int64) bool {
	n := x.n()
	if x.dt != tensor.BF16 || out.dt != tensor.BF16 || n%8 != 0 || nv%8 != 0 || (y != nil && y.dt != tensor.BF16) {
		return false
	}
	var yp uintptr
	if y != nil {
		yp = y.buf.ptr
	}
	b.launch(b.fn("vec.cu", "ew_bf16_kernel"), b.gridFor(n/8), block256, 0, out.buf.ptr, x.buf.ptr, yp, ap, adt, bp, bdt,
		n/8, max(nv, 8), op)
	return true
}

func (b *Backend) ropeVec(y, x, a *Tensor, rows, L int64, heads, d int) bool {
	if x.dt != tensor.BF16 || d%8 != 0 {
		return false
	}
	n8 := rows * int64(heads*d) / 8
	b.launch(b.fn("vec.cu", "rope_bf16_kernel"), b.gridFor(n8), block256, 0, y.buf.ptr, x.buf.ptr, a.buf.ptr, rows, L,
		int32(heads), int32(d))
	return true
}
