package cpu

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// This file holds the tiny VAE ops (backend.TinyVAEOps) of the CPU backend.

var _ backend.TinyVAE = (*Backend)(nil)

// ConvFused implements backend.TinyVAEOps as its definition: the unfused
// ops one after another.
func (b *Backend) ConvFused(x, w, bias backend.Tensor, p backend.Conv3dParams, f backend.ConvFusion) backend.Tensor {
	return backend.ConvFusedUnfused(b, x, w, bias, p, f)
}

// ReLU returns max(x, 0) (exact in any dtype).
func (b *Backend) ReLU(x backend.Tensor) backend.Tensor {
	return b.unary("ReLU", x, func(v float32) float32 { return max(v, 0) })
}

// ScaledTanh returns s·tanh(x/s) in float32 (tanh in float64), rounded once.
func (b *Backend) ScaledTanh(x backend.Tensor, s float32) backend.Tensor {
	return b.unary("ScaledTanh", x, func(v float32) float32 {
		return s * float32(math.Tanh(float64(v/s)))
	})
}

// Clamp returns min(max(x, lo), hi); NaN stays NaN.
func (b *Backend) Clamp(x backend.Tensor, lo, hi float32) backend.Tensor {
	return b.unary("Clamp", x, func(v float32) float32 {
		if v < lo {
			return lo
		}
		if v > hi {
			return hi
		}
		return v
	})
}
