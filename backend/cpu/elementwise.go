package cpu

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// minParallel is the element count below which elementwise ops stay on one
// goroutine (spawning costs more than the work).
const minParallel = 1 << 15

// elementwise runs f over [0,n) in parallel chunks when n is large.
func (b *Backend) elementwise(n int, f func(lo, hi int)) {
	if n < minParallel {
		f(0, n)
		return
	}
	b.parallelFor(n, f)
}

// suffixOperand checks that b's shape is a suffix of a's (broadcast over
// the leading dims) and returns both tensors.
func suffixOperand(op string, a, b backend.Tensor) (*Tensor, *Tensor) {
	ca, cb := floatT(op, a), floatT(op, b)
	if len(cb.shape) > len(ca.shape) || !backend.SameShape(ca.shape[len(ca.shape)-len(cb.shape):], cb.shape) {
		backend.Fail("cpu: %s: shape %v is neither %v nor a suffix of it", op, cb.shape, ca.shape)
	}
	if len(cb.F) == 0 && len(ca.F) != 0 {
		backend.Fail("cpu: %s: empty operand %v for %v", op, cb.shape, ca.shape)
	}
	return ca, cb
}

// binary applies f elementwise with suffix broadcasting of b, rounding once
// to a's dtype.
func (be *Backend) binary(op string, a, b backend.Tensor, f func(x, y float32) float32) backend.Tensor {
	ca, cb := suffixOperand(op, a, b)
	out := be.newOut(ca.dt, ca.shape)
	nb := len(cb.F)
	if nb == 0 {
		return out
	}
	be.elementwise(len(out.F), func(lo, hi int) {
		forRuns(lo, hi, nb, func(i, j, n int) {
			x, y, o := ca.F[i:i+n], cb.F[j:j+n], out.F[i:i+n]
			for t := range o {
				o[t] = f(x[t], y[t])
			}
		})
		roundSlice(out.dt, out.F[lo:hi])
	})
	return out
}

// forRuns splits [lo,hi) of a tensor whose operand repeats with period n
// (suffix broadcasting) into runs: f(i, j, cnt) covers elements i..i+cnt
// that use operand elements j..j+cnt, so inner loops need no modulo.
func forRuns(lo, hi, n int, f func(i, j, cnt int)) {
	for i := lo; i < hi; {
		j := i % n
		cnt := min(n-j, hi-i)
		f(i, j, cnt)
		i += cnt
	}
}

// Add returns a+b (b a suffix of a's shape), in a's dtype.
func (be *Backend) Add(a, b backend.Tensor) backend.Tensor {
	return be.binary("Add", a, b, func(x, y float32) float32 { return x + y })
}

// Mul returns a*b (b a suffix of a's shape), in a's dtype.
func (be *Backend) Mul(a, b backend.Tensor) backend.Tensor {
	return be.binary("Mul", a, b, func(x, y float32) float32 { return x * y })
}

// unary applies f elementwise, rounding once to x's dtype.
func (b *Backend) unary(op string, x backend.Tensor, f func(v float32) float32) backend.Tensor {
	c := floatT(op, x)
	out := b.newOut(c.dt, c.shape)
	b.elementwise(len(out.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out.F[i] = f(c.F[i])
		}
		roundSlice(out.dt, out.F[lo:hi])
	})
	return out
}

// Scale returns a*s in a's dtype.
func (b *Backend) Scale(a backend.Tensor, s float32) backend.Tensor {
	return b.unary("Scale", a, func(v float32) float32 { return v * s })
}

// SiLU returns x/(1+exp(-x)), as PyTorch's kernel writes it.
func (b *Backend) SiLU(x backend.Tensor) backend.Tensor {
	return b.unary("SiLU", x, silu)
}

func silu(v float32) float32 {
	return v / float32(1+float32(math.Exp(float64(-v))))
}

// GELUTanh returns 0.5·x·(1+tanh(√(2/π)·(x+0.044715·x³))) in float32
// (PyTorch's approximate="tanh", same operation order); tanh is tanhf,
// within a couple of ulp like CUDA's.
func (b *Backend) GELUTanh(x backend.Tensor) backend.Tensor {
	c := floatT("GELUTanh", x)
	out := b.newOut(c.dt, c.shape)
	b.elementwise(len(out.F), func(lo, hi int) {
		geluTanhInto(out.F[lo:hi], c.F[lo:hi])
		roundSlice(out.dt, out.F[lo:hi])
	})
	return out
}

const (
	geluBeta  = float32(0.7978845608028654) // √(2/π)
	geluKappa = float32(0.044715)
)

func geluTanh(v float32) float32 {
	cube := float32(float32(v*v) * v)
	inner := float32(geluBeta * float32(v+float32(geluKappa*cube)))
	t := tanhf(inner)
	return float32(float32(0.5)*v) * float32(1+t)
}
