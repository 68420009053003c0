package cpu

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Reshape returns a view of t (sharing storage) with another shape of the
// same element count. One dimension may be -1 (inferred).
func (b *Backend) Reshape(t backend.Tensor, shape ...int) backend.Tensor {
	c := T(t)
	n := tensor.NumElements(c.shape)
	s := append([]int(nil), shape...)
	infer, known := -1, 1
	for i, d := range s {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			backend.Fail("cpu: Reshape %v to %v: invalid dimension %d", c.shape, shape, d)
		default:
			known *= d
		}
	}
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			backend.Fail("cpu: Reshape %v to %v: cannot infer the -1 dimension", c.shape, shape)
		}
		s[infer] = n / known
		known = n
	}
	if known != n {
		backend.Fail("cpu: Reshape %v (%d elements) to %v (%d elements)", c.shape, n, shape, known)
	}
	return &Tensor{shape: s, dt: c.dt, F: c.F, I: c.I, base: c.root()}
}

// Cast converts a float tensor to F32 or BF16 (a copy, rounding to nearest
// even).
func (b *Backend) Cast(t backend.Tensor, dt tensor.DType) backend.Tensor {
	c := floatT("Cast", t)
	if dt != tensor.F32 && dt != tensor.BF16 {
		backend.Fail("cpu: Cast %v %v: target dtype must be float32 or bfloat16, got %v", c.dt, c.shape, dt)
	}
	out := b.newOut(dt, c.shape)
	copy(out.F, c.F)
	if dt == tensor.BF16 && c.dt != tensor.BF16 {
		b.parallelFor(len(out.F), func(lo, hi int) { roundBF16(out.F[lo:hi]) })
	}
	return out
}

// Permute reorders dimensions: out.shape[i] = t.shape[perm[i]].
func (b *Backend) Permute(t backend.Tensor, perm ...int) backend.Tensor {
	c := floatT("Permute", t)
	nd := len(c.shape)
	if len(perm) != nd {
		backend.Fail("cpu: Permute %v: perm %v has %d entries, want %d", c.shape, perm, len(perm), nd)
	}
	seen := make([]bool, nd)
	for _, p := range perm {
		if p < 0 || p >= nd || seen[p] {
			backend.Fail("cpu: Permute %v: %v is not a permutation of 0..%d", c.shape, perm, nd-1)
		}
		seen[p] = true
	}
	inStride := strides(c.shape)
	outShape := make([]int, nd)
	st := make([]int, nd) // input stride of each output dim
	for i, p := range perm {
		outShape[i] = c.shape[p]
		st[i] = inStride[p]
	}
	out := b.newOut(c.dt, outShape)
	if nd == 0 || len(out.F) == 0 {
		copy(out.F, c.F)
		return out
	}
	last := outShape[nd-1]
	rows := len(out.F) / last
	ls := st[nd-1]
	b.parallelFor(rows, func(lo, hi int) {
		idx := make([]int, nd-1)
		// decompose lo into the output index of the leading nd-1 dims
		r := lo
		for i := nd - 2; i >= 0; i-- {
			idx[i] = r % outShape[i]
			r /= outShape[i]
		}
		for row := lo; row < hi; row++ {
			base := 0
			for i := 0; i < nd-1; i++ {
				base += idx[i] * st[i]
			}
			dst := out.F[row*last : (row+1)*last]
			for j := range dst {
				dst[j] = c.F[base+j*ls]
			}
			for i := nd - 2; i >= 0; i-- {
				idx[i]++
				if idx[i] < outShape[i] {
					break
				}
				idx[i] = 0
			}
		}
	})
	return out
}

// strides returns row-major element strides of shape.
func strides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// Slice copies t[start:end] along dim.
func (b *Backend) Slice(t backend.Tensor, dim, start, end int) backend.Tensor {
	c := floatT("Slice", t)
	if dim < 0 || dim >= len(c.shape) {
		backend.Fail("cpu: Slice %v: dim %d out of range", c.shape, dim)
	}
	if start < 0 || end > c.shape[dim] || start > end {
		backend.Fail("cpu: Slice %v: range [%d:%d] invalid for dim %d of size %d", c.shape, start, end, dim, c.shape[dim])
	}
	outShape := append([]int(nil), c.shape...)
	outShape[dim] = end - start
	out := b.newOut(c.dt, outShape)
	outer := tensor.NumElements(c.shape[:dim])
	inner := tensor.NumElements(c.shape[dim+1:])
	src, n := c.shape[dim]*inner, (end-start)*inner
	for o := 0; o < outer; o++ {
		copy(out.F[o*n:(o+1)*n], c.F[o*src+start*inner:o*src+end*inner])
	}
	return out
}

// Concat joins float tensors of equal dtype along dim; all other dims must
// match.
func (b *Backend) Concat(dim int, ts ...backend.Tensor) backend.Tensor {
	if len(ts) == 0 {
		backend.Fail("cpu: Concat: no tensors")
	}
	cs := make([]*Tensor, len(ts))
	for i, t := range ts {
		cs[i] = floatT("Concat", t)
	}
	first := cs[0]
	if dim < 0 || dim >= len(first.shape) {
		backend.Fail("cpu: Concat: dim %d out of range for shape %v", dim, first.shape)
	}
	outShape := append([]int(nil), first.shape...)
	outShape[dim] = 0
	for i, c := range cs {
		if c.dt != first.dt {
			backend.Fail("cpu: Concat: tensor %d has dtype %v, tensor 0 has %v", i, c.dt, first.dt)
		}
		if len(c.shape) != len(first.shape) {
			backend.Fail("cpu: Concat: tensor %d has shape %v, tensor 0 has %v", i, c.shape, first.shape)
		}
		for d := range c.shape {
			if d != dim && c.shape[d] != first.shape[d] {
				backend.Fail("cpu: Concat along %d: tensor %d has shape %v, tensor 0 has %v", dim, i, c.shape, first.shape)
			}
		}
		outShape[dim] += c.shape[dim]
	}
	out := b.newOut(first.dt, outShape)
	outer := tensor.NumElements(first.shape[:dim])
	inner := tensor.NumElements(first.shape[dim+1:])
	row := outShape[dim] * inner
	off := 0
	for _, c := range cs {
		n := c.shape[dim] * inner
		for o := 0; o < outer; o++ {
			copy(out.F[o*row+off:o*row+off+n], c.F[o*n:(o+1)*n])
		}
		off += n
	}
	return out
}
