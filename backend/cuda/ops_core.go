package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

var block256 = [3]int{256, 1, 1}

// Cast converts to dt (a copy, rounding to nearest even).
func (b *Backend) Cast(t backend.Tensor, dt tensor.DType) backend.Tensor {
	x := T(t)
	checkFloat("Cast input", x)
	dc := dtCode(dt)
	defer b.enter()()
	out := b.newTensor(dt, x.shape)
	if n := x.n(); n > 0 {
		b.launch(b.fn("elementwise.cu", "cast_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, dc, x.buf.ptr, dtCode(x.dt), n)
	}
	return out
}

// Permute reorders dims: out.shape[i] = t.shape[perm[i]].
func (b *Backend) Permute(t backend.Tensor, perm ...int) backend.Tensor {
	x := T(t)
	nd := len(x.shape)
	if len(perm) != nd {
		backend.Fail("cuda: Permute: %d axes given for a %d-d tensor (shape %v)", len(perm), nd, x.shape)
	}
	if nd > 6 {
		backend.Fail("cuda: Permute: at most 6 dims supported, got shape %v", x.shape)
	}
	seen := make([]bool, nd)
	inStride := make([]int64, nd)
	st := int64(1)
	for i := nd - 1; i >= 0; i-- {
		inStride[i] = st
		st *= int64(x.shape[i])
	}
	var od, os [6]int64
	shape := make([]int, nd)
	for i, p := range perm {
		if p < 0 || p >= nd || seen[p] {
			backend.Fail("cuda: Permute: %v is not a permutation of %d axes", perm, nd)
		}
		seen[p] = true
		shape[i] = x.shape[p]
		od[i] = int64(x.shape[p])
		os[i] = inStride[p]
	}
	defer b.enter()()
	out := b.newTensor(x.dt, shape)
	if n := x.n(); n > 0 {
		b.launch(b.fn("layout.cu", "permute_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, x.buf.ptr,
			int32(x.dt.Size()), n, int32(nd), od[0], od[1], od[2], od[3], od[4], od[5], os[0], os[1], os[2], os[3], os[4], os[5])
	}
	return out
}

// splitAt views shape as [outer, shape[dim], inner].
func splitAt(shape []int, dim int) (outer, mid, inner int64) {
	outer, inner = 1, 1
	for i, s := range shape {
		switch {
		case i < dim:
			outer *= int64(s)
		case i > dim:
			inner *= int64(s)
		}
	}
	return outer, int64(shape[dim]), inner
}

// copy3 copies an [outer, cnt, inner] block between tensors (caller holds
// the device).
func (b *Backend) copy3(dst, src *Tensor, outer, cnt, inner, sdim, soff, ddim, doff int64) {
	n := outer * cnt * inner
	if n == 0 {
		return
	}
	es := int32(src.dt.Size())
	if es != 2 && es != 4 {
		backend.Fail("cuda: copy of %v tensors not supported", src.dt)
	}
	b.launch(b.fn("layout.cu", "copy3_kernel"), b.gridFor(n), block256, 0, dst.buf.ptr, src.buf.ptr, es,
		outer, cnt, inner, sdim, soff, ddim, doff)
}

// Slice copies t[start:end] along dim.
func (b *Backend) Slice(t backend.Tensor, dim, start, end int) backend.Tensor {
	x := T(t)
	if dim < 0 || dim >= len(x.shape) || start < 0 || end > x.shape[dim] || start > end {
		backend.Fail("cuda: Slice: [%d:%d] along dim %d out of range for shape %v", start, end, dim, x.shape)
	}
	shape := append([]int(nil), x.shape...)
	shape[dim] = end - start
	outer, mid, inner := splitAt(x.shape, dim)
	defer b.enter()()
	out := b.newTensor(x.dt, shape)
	b.copy3(out, x, outer, int64(end-start), inner, mid, int64(start), int64(end-start), 0)
	return out
}

// Concat joins tensors of one dtype along dim.
func (b *Backend) Concat(dim int, ts ...backend.Tensor) backend.Tensor {
	if len(ts) == 0 {
		backend.Fail("cuda: Concat of no tensors")
	}
	xs := make([]*Tensor, len(ts))
	for i, t := range ts {
		xs[i] = T(t)
	}
	first := xs[0]
	if dim < 0 || dim >= len(first.shape) {
		backend.Fail("cuda: Concat: dim %d out of range for shape %v", dim, first.shape)
	}
	shape := append([]int(nil), first.shape...)
	shape[dim] = 0
	for i, x := range xs {
		if x.dt != first.dt || len(x.shape) != len(first.shape) {
			backend.Fail("cuda: Concat: tensor %d is %v %v, tensor 0 is %v %v", i, x.dt, x.shape, first.dt, first.shape)
		}
		for d := range x.shape {
			if d != dim && x.shape[d] != first.shape[d] {
				backend.Fail("cuda: Concat along dim %d: tensor %d has shape %v, tensor 0 has %v", dim, i, x.shape, first.shape)
			}
		}
		shape[dim] += x.shape[dim]
	}
	defer b.enter()()
	out := b.newTensor(first.dt, shape)
	off := int64(0)
	for _, x := range xs {
		outer, mid, inner := splitAt(x.shape, dim)
		b.copy3(out, x, outer, mid, inner, mid, 0, int64(shape[dim]), off)
		off += mid
	}
	return out
}

// suffixOf checks that b's shape is a suffix of a's (broadcast over the
// leading dims) and returns b's element count.
func suffixOf(op string, a, bt *Tensor) int64 {
	if len(bt.shape) > len(a.shape) {
		backend.Fail("cuda: %s: shape %v does not broadcast to %v", op, bt.shape, a.shape)
	}
	off := len(a.shape) - len(bt.shape)
	for i, s := range bt.shape {
		if a.shape[off+i] != s {
			backend.Fail("cuda: %s: shape %v does not broadcast to %v (must be a suffix)", op, bt.shape, a.shape)
		}
	}
	return bt.n()
}

func (b *Backend) binop(name string, op int32, at, bt backend.Tensor) backend.Tensor {
	a, c := T(at), T(bt)
	checkFloat(name, a)
	checkFloat(name, c)
	nb := suffixOf(name, a, c)
	defer b.enter()()
	out := b.newTensor(a.dt, a.shape)
	if op == 0 && nb == a.n() && c.dt == tensor.BF16 && b.ewVec(3, out, a, c, 0, 0, 0, 0, 8) {
		return out
	}
	if n := a.n(); n > 0 {
		b.launch(b.fn("elementwise.cu", "binop_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, a.buf.ptr, dtCode(a.dt),
			c.buf.ptr, dtCode(c.dt), n, max(nb, 1), op)
	}
	return out
}

// Add returns a+b (b a suffix-shaped broadcast), in a's dtype.
func (b *Backend) Add(a, c backend.Tensor) backend.Tensor { return b.binop("Add", 0, a, c) }

// Mul returns a*b with Add's broadcasting.
func (b *Backend) Mul(a, c backend.Tensor) backend.Tensor { return b.binop("Mul", 1, a, c) }

func (b *Backend) unary(name string, op int32, t backend.Tensor, s float32) backend.Tensor {
	x := T(t)
	checkFloat(name, x)
	defer b.enter()()
	out := b.newTensor(x.dt, x.shape)
	if op == 2 && b.ewVec(2, out, x, nil, 0, 0, 0, 0, 8) {
		return out
	}
	if n := x.n(); n > 0 {
		b.launch(b.fn("elementwise.cu", "unary_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, x.buf.ptr, dtCode(x.dt), n, op, s)
	}
	return out
}

// Scale returns a*s.
func (b *Backend) Scale(a backend.Tensor, s float32) backend.Tensor { return b.unary("Scale", 0, a, s) }

// SiLU returns x*sigmoid(x).
func (b *Backend) SiLU(x backend.Tensor) backend.Tensor { return b.unary("SiLU", 1, x, 0) }

// GELUTanh is GELU's tanh approximation in float32.
func (b *Backend) GELUTanh(x backend.Tensor) backend.Tensor { return b.unary("GELUTanh", 2, x, 0) }
