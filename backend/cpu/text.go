package cpu

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

var _ backend.Text = (*Backend)(nil)

// textFloat asserts a float (F32/BF16) CPU tensor for a text op.
func textFloat(op, what string, t backend.Tensor) *Tensor {
	c := T(t)
	if c.dt != tensor.F32 && c.dt != tensor.BF16 {
		backend.Fail("cpu: %s: %s must be float32 or bfloat16, got %v %v", op, what, c.dt, c.shape)
	}
	return c
}

// rounder returns the rounding function of dtype dt.
func rounder(dt tensor.DType) func(float32) float32 {
	if dt == tensor.BF16 {
		return tensor.RoundBF16
	}
	return func(f float32) float32 { return f }
}

// RelPosAttention implements backend.TextOps on the CPU, one (head, query)
// row per task.
func (b *Backend) RelPosAttention(q, k, v, relBias backend.Tensor, heads, keyLen int) backend.Tensor {
	const op = "RelPosAttention"
	cq, ck, cv := textFloat(op, "q", q), textFloat(op, "k", k), textFloat(op, "v", v)
	cb := textFloat(op, "relBias", relBias)
	if len(cq.shape) != 2 || len(ck.shape) != 2 || !backend.SameShape(ck.shape, cv.shape) {
		backend.Fail("cpu: %s: want q [Lq, heads·d] and k, v [Lk, heads·d], got q %v k %v v %v", op, cq.shape, ck.shape, cv.shape)
	}
	lq, lk, hd := cq.shape[0], ck.shape[0], cq.shape[1]
	if ck.shape[1] != hd || heads <= 0 || hd%heads != 0 {
		backend.Fail("cpu: %s: q %v and k %v do not split into %d heads", op, cq.shape, ck.shape, heads)
	}
	if !backend.SameShape(cb.shape, []int{heads, lq + lk - 1}) {
		backend.Fail("cpu: %s: relBias shape %v, want [%d %d]", op, cb.shape, heads, lq+lk-1)
	}
	if keyLen < 1 || keyLen > lk {
		backend.Fail("cpu: %s: keyLen %d outside [1, %d]", op, keyLen, lk)
	}
	d := hd / heads
	rnd := rounder(cq.dt)
	out := b.newTensor(cq.dt, []int{lq, hd}, make([]float32, lq*hd))
	b.parallelFor(heads*lq, func(lo, hi int) {
		p := make([]float32, keyLen)
		acc := make([]float32, d)
		for task := lo; task < hi; task++ {
			h, i := task/lq, task%lq
			qi := cq.F[i*hd+h*d : i*hd+h*d+d]
			bias := cb.F[h*(lq+lk-1)+lq-1-i:]
			mx := float32(math.Inf(-1))
			for j := range p {
				var s float32
				kj := ck.F[j*hd+h*d : j*hd+h*d+d]
				for c, x := range qi {
					s += x * kj[c]
				}
				l := rnd(rnd(s) + bias[j])
				p[j] = l
				mx = max(mx, l)
			}
			var sum float32
			for j, l := range p {
				e := float32(math.Exp(float64(l - mx)))
				p[j] = e
				sum += e
			}
			clear(acc)
			for j, e := range p {
				pj := rnd(e / sum)
				vj := cv.F[j*hd+h*d : j*hd+h*d+d]
				for c, x := range vj {
					acc[c] += pj * x
				}
			}
			o := out.F[i*hd+h*d : i*hd+h*d+d]
			for c, a := range acc {
				o[c] = rnd(a)
			}
		}
	})
	return out
}

// GELUTanhSteps implements backend.TextOps on the CPU.
func (b *Backend) GELUTanhSteps(x backend.Tensor) backend.Tensor {
	cx := textFloat("GELUTanhSteps", "x", x)
	rnd := rounder(cx.dt)
	out := b.newTensor(cx.dt, cx.shape, make([]float32, len(cx.F)))
	const (
		c0 = float32(0.044715)
		c1 = float32(0.7978845608028654) // √(2/π)
	)
	b.parallelFor(len(cx.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := cx.F[i]
			p := rnd(rnd(v*v) * v)
			s := rnd(v + rnd(c0*p))
			th := rnd(float32(math.Tanh(float64(rnd(c1 * s)))))
			out.F[i] = rnd(rnd(0.5*v) * rnd(1+th))
		}
	})
	return out
}
