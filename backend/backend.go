// Package backend is the contract the models are written against. A Backend
// owns tensor memory and executes ops; models never see how (pure Go on the
// CPU, CUDA kernels and cuBLASLt on the GPU).
//
// Numerics: a float tensor has dtype F32 or BF16. A BF16 tensor's values are
// always exactly representable in bfloat16. Unless an op says otherwise it
// computes in float32 from its inputs and rounds its result once to the
// output dtype, which is the dtype of its first (activation) operand. This
// reproduces the reference's bf16 path, where every PyTorch op rounds its
// output.
//
// Errors: ops do not return errors; a failure (shape mismatch, out of device
// memory, a CUDA error) panics with a *backend.Error. Model entry points turn
// that back into an ordinary error with `defer backend.Recover(&err)`, so a
// forward pass reads like the math and still never crashes the process.
package backend

import (
	"errors"
	"fmt"
	"slices"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Tensor is an array owned by one Backend. Shapes are row-major, the last
// dimension contiguous.
type Tensor interface {
	Shape() []int
	DType() tensor.DType
}

// Core is what every backend provides: memory, layout and elementwise ops.
type Core interface {
	// Name is "cpu" or "cuda".
	Name() string

	// Upload copies host data into a new tensor of dtype dt (F32 or BF16;
	// values are rounded to dt).
	Upload(dt tensor.DType, shape []int, data []float32) Tensor
	// UploadInt8 copies int8 data (quantised weights) into a new I8 tensor.
	UploadInt8(shape []int, data []int8) Tensor
	// Download copies a float tensor back to the host as float32.
	Download(t Tensor) []float32
	// Free releases t's memory (shared with its views) now; using t
	// afterwards is an error. Inside a scope there is rarely a need.
	Free(t Tensor)
	// Scoper: Begin opens a scope that owns what the ops allocate next.
	Scoper
	// Sync waits for all queued work.
	Sync()

	// Reshape returns t viewed with another shape of the same element count.
	Reshape(t Tensor, shape ...int) Tensor
	// Cast converts to dtype dt (a copy; rounding to nearest even).
	Cast(t Tensor, dt tensor.DType) Tensor
	// Permute reorders dimensions: out.shape[i] = t.shape[perm[i]].
	Permute(t Tensor, perm ...int) Tensor
	// Slice copies t[start:end] along dim.
	Slice(t Tensor, dim, start, end int) Tensor
	// Concat joins tensors of equal dtype along dim.
	Concat(dim int, ts ...Tensor) Tensor

	// Add returns a+b. b has a's shape or a suffix of it (broadcast over the
	// leading dimensions). The result has a's dtype.
	Add(a, b Tensor) Tensor
	// Mul returns a*b with the broadcasting of Add.
	Mul(a, b Tensor) Tensor
	// Scale returns a*s.
	Scale(a Tensor, s float32) Tensor
	// SiLU returns x*sigmoid(x).
	SiLU(x Tensor) Tensor
	// GELUTanh returns the tanh approximation of GELU, computed in float32.
	GELUTanh(x Tensor) Tensor
}

// Error is what a backend op panics with; Recover turns it into an error.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail panics with a *Error built from a format string. Backends and models
// call it for conditions that make the current computation impossible.
func Fail(format string, args ...any) {
	panic(&Error{Err: fmt.Errorf(format, args...)})
}

// FailErr panics with err wrapped in a *Error.
func FailErr(err error) { panic(&Error{Err: err}) }

// Recover, deferred with the address of a named error result, converts a
// panic carrying *Error into that error. Any other panic is re-raised: it is
// a bug, not bad input.
func Recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if e, ok := r.(*Error); ok {
		var inner error = e
		if e.Err != nil {
			inner = e.Err
		}
		if *err == nil {
			*err = inner
		} else {
			*err = errors.Join(*err, inner)
		}
		return
	}
	panic(r)
}

// CheckShape fails unless t has exactly the wanted shape; what names the
// tensor in the message.
func CheckShape(what string, t Tensor, want ...int) {
	got := t.Shape()
	if !SameShape(got, want) {
		Fail("%s: want shape %v, got %v", what, want, got)
	}
}

// SameShape reports whether two shapes are equal.
func SameShape(a, b []int) bool { return slices.Equal(a, b) }
