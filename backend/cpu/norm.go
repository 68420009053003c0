package cpu

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// normParam checks an optional per-channel parameter of a norm over d
// channels and returns its values (nil when absent).
func normParam(op, what string, p backend.Tensor, d int) []float32 {
	if p == nil {
		return nil
	}
	c := floatT(op+" "+what, p)
	if len(c.F) != d || len(c.shape) == 0 || c.shape[len(c.shape)-1] != d {
		backend.Fail("cpu: %s: %s has shape %v, want [%d]", op, what, c.shape, d)
	}
	return c.F
}

// rows runs f over the rows of x (last dim d) in parallel.
func (b *Backend) rows(n, d int, f func(r int)) {
	run := func(lo, hi int) {
		for r := lo; r < hi; r++ {
			f(r)
		}
	}
	if n*d < minParallel {
		run(0, n)
		return
	}
	b.parallelFor(n, run)
}

// rsqrt is 1/√v rounded to float32 (what CUDA's rsqrtf/1/sqrtf give to
// within an ulp).
func rsqrt(v float32) float32 { return float32(1 / math.Sqrt(float64(v))) }

// LayerNorm normalises over the last dim with a two-pass mean and variance
// in float32 (eps inside the sqrt), then y = x̂·w + b in float32 (w, b
// optional), rounded once to out.
func (b *Backend) LayerNorm(x, w, bias backend.Tensor, eps float32, out tensor.DType) backend.Tensor {
	c := floatT("LayerNorm", x)
	if out != tensor.F32 && out != tensor.BF16 {
		backend.Fail("cpu: LayerNorm: output dtype must be float32 or bfloat16, got %v", out)
	}
	if len(c.shape) == 0 {
		backend.Fail("cpu: LayerNorm: scalar input")
	}
	d := c.shape[len(c.shape)-1]
	wv := normParam("LayerNorm", "weight", w, d)
	bv := normParam("LayerNorm", "bias", bias, d)
	o := b.newOut(out, c.shape)
	if d == 0 {
		return o
	}
	b.rows(len(c.F)/d, d, func(r int) {
		xr, yr := c.F[r*d:(r+1)*d], o.F[r*d:(r+1)*d]
		mean := sum32(xr) / float32(d)
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= d; i += 4 {
			a0, a1, a2, a3 := xr[i]-mean, xr[i+1]-mean, xr[i+2]-mean, xr[i+3]-mean
			s0 += float32(a0 * a0)
			s1 += float32(a1 * a1)
			s2 += float32(a2 * a2)
			s3 += float32(a3 * a3)
		}
		for ; i < d; i++ {
			a := xr[i] - mean
			s0 += float32(a * a)
		}
		rs := rsqrt(((s0+s1)+(s2+s3))/float32(d) + eps)
		for i, v := range xr {
			y := float32((v - mean) * rs)
			if wv != nil {
				y = float32(y * wv[i])
			}
			if bv != nil {
				y += bv[i]
			}
			yr[i] = y
		}
		roundSlice(out, yr)
	})
	return o
}

// sum32 sums x in float32 with four partial sums.
func sum32(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i]
		s1 += x[i+1]
		s2 += x[i+2]
		s3 += x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// RMSNorm computes x̂ = x·rsqrt(mean(x²)+eps) in float32 over the last dim
// and multiplies by w (nil: no weight). NormFast rounds x̂·w once to x's
// dtype; NormDefault (WanRMSNorm, T5's norm) rounds x̂ to x's dtype first
// and rounds the product again. With a float32 w and bf16 x PyTorch's
// NormDefault would promote the product to float32; here the result always
// has x's dtype.
func (b *Backend) RMSNorm(x, w backend.Tensor, eps float32, mode backend.NormMode) backend.Tensor {
	c := floatT("RMSNorm", x)
	if mode != backend.NormFast && mode != backend.NormDefault {
		backend.Fail("cpu: RMSNorm: unknown norm mode %d", mode)
	}
	if len(c.shape) == 0 {
		backend.Fail("cpu: RMSNorm: scalar input")
	}
	d := c.shape[len(c.shape)-1]
	wv := normParam("RMSNorm", "weight", w, d)
	o := b.newOut(c.dt, c.shape)
	if d == 0 {
		return o
	}
	b.rows(len(c.F)/d, d, func(r int) {
		xr, yr := c.F[r*d:(r+1)*d], o.F[r*d:(r+1)*d]
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= d; i += 4 {
			s0 += float32(xr[i] * xr[i])
			s1 += float32(xr[i+1] * xr[i+1])
			s2 += float32(xr[i+2] * xr[i+2])
			s3 += float32(xr[i+3] * xr[i+3])
		}
		for ; i < d; i++ {
			s0 += float32(xr[i] * xr[i])
		}
		rs := rsqrt(((s0+s1)+(s2+s3))/float32(d) + eps)
		for i, v := range xr {
			yr[i] = v * rs
		}
		if wv == nil {
			roundSlice(c.dt, yr)
			return
		}
		if mode == backend.NormDefault {
			roundSlice(c.dt, yr)
		}
		for i := range yr {
			yr[i] *= wv[i]
		}
		roundSlice(c.dt, yr)
	})
	return o
}
