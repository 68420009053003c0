package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// This file holds the tiny VAE ops (backend.TinyVAEOps): elementwise
// kernels in taehv.cu; ConvFused on the sm_90a convolution where it runs.

var _ backend.TinyVAE = (*Backend)(nil)

// ConvFused implements backend.TinyVAEOps. Where the sm_90a convolution
// runs (bf16, Cin a multiple of 32, stride 1, sm_90) everything is one
// pack and one conv launch: the packing pass reads the history, the grown
// frames and the upsampling in place, and the epilogue adds the bias and
// the residual and applies the ReLU. Elsewhere the unfused ops run one
// after another (backend.ConvFusedUnfused).
func (b *Backend) ConvFused(xt, wt, biast backend.Tensor, p backend.Conv3dParams, f backend.ConvFusion) backend.Tensor {
	if f.Grow <= 1 && !f.Up && f.Res == nil && !f.ReLU {
		return b.Conv3dWithHistory(f.Hist, xt, wt, biast, p)
	}
	if b.convFusedApplies(xt, wt, p, f) {
		out, _ := b.conv3dAll(f.Hist, xt, nil, wt, biast, f.Res, p, 0, f.Up, convExtra{grow: f.Grow, relu: f.ReLU})
		return out
	}
	return backend.ConvFusedUnfused(b, xt, wt, biast, p, f)
}

// convFusedApplies tells whether ConvFused(x, w, p, f) runs as one sm_90a
// convolution: the conditions conv3dAll checks for its fast path.
func (b *Backend) convFusedApplies(xt, wt backend.Tensor, p backend.Conv3dParams, f backend.ConvFusion) bool {
	x, w := T(xt), T(wt)
	if x.dt != tensor.BF16 || len(x.shape) != 4 || len(w.shape) != 5 {
		return false
	}
	if f.Hist != nil && (f.Grow > 1 || f.Up) {
		return false
	}
	c, t, h, wd := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	if f.Grow > 1 {
		if c%f.Grow != 0 {
			return false
		}
		c, t = c/f.Grow, t*f.Grow
	}
	if f.Hist != nil {
		hs := T(f.Hist)
		if hs.dt != x.dt || len(hs.shape) != 4 || hs.shape[0] != c || hs.shape[2] != h || hs.shape[3] != wd {
			return false
		}
		t += hs.shape[1]
	}
	if f.Up {
		h, wd = 2*h, 2*wd
	}
	if w.shape[1] != c {
		return false
	}
	tp, hp := t+p.PadT[0]+p.PadT[1], h+p.PadH[0]+p.PadH[1]
	padded := int64(tp) * int64(hp) * int64(wd+p.PadW[0]+p.PadW[1])
	st, sh, sw := p.Strides()
	return convPackGridOK(tp, hp) && b.convHopperApplies(c, w.shape[0], [3]int{st, sh, sw}, padded, int64(w.shape[2]*w.shape[3]*w.shape[4]))
}

// act runs taehv_act_kernel (op 0 ReLU, 1 scaled tanh, 2 clamp).
func (b *Backend) act(name string, xt backend.Tensor, op int32, a, c float32) backend.Tensor {
	defer keepAlive(xt)
	x := T(xt)
	checkFloat(name, x)
	defer b.enter()()
	out := b.newTensor(x.dt, x.shape)
	if n := x.n(); n > 0 {
		b.launch(b.fn("taehv.cu", "taehv_act_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, x.buf.ptr, dtCode(x.dt), n, op, a, c)
	}
	return out
}

// ReLU implements backend.TinyVAEOps.
func (b *Backend) ReLU(x backend.Tensor) backend.Tensor { return b.act("ReLU", x, 0, 0, 0) }

// ScaledTanh implements backend.TinyVAEOps.
func (b *Backend) ScaledTanh(x backend.Tensor, s float32) backend.Tensor {
	if s == 0 {
		backend.Fail("cuda: ScaledTanh: scale 0")
	}
	return b.act("ScaledTanh", x, 1, s, 0)
}

// Clamp implements backend.TinyVAEOps.
func (b *Backend) Clamp(x backend.Tensor, lo, hi float32) backend.Tensor {
	return b.act("Clamp", x, 2, lo, hi)
}
