package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// This file holds the tiny VAE ops (backend.TinyVAEOps): elementwise
// kernels in taehv.cu; ConvFused on the sm_90a convolution where it runs.
//
// The packed layout. TAEHV is a chain of 3x3 convolutions; the sm_90a
// kernel reads its input from a zero-padded channels-last copy that a
// packing pass writes (conv_pack_cl). A ConvFused result marked
// Intermediate is written by the conv's epilogue straight in that form, so
// the next convolution reads it without a packing pass: [rows][C] bf16,
// frame t, row h, column w of a logical [C,T,H,W] at row
// ((t+1)·(H+2) + h+1)·(W+2) + w+1 — a leading zero frame (a kt = 2
// conv's causal zero past) and one-pixel zero borders (3x3 padding). The
// epilogue computes on the padded grid (H+2)·(W+2) anyway: output row r
// lands at row r + (H+2)(W+2) + (W+2) + 1, and the rows that are no output
// position are exactly the borders, written as zeros; only the first
// (H+2)(W+2) + (W+3) rows need clearing beforehand. A packed tensor can
// also be a convolution's residual (read channels-last in the epilogue).

var _ backend.TinyVAE = (*Backend)(nil)

// packedRows is the packed layout's row count for T frames of H×W.
func packedRows(t, h, w int) int { return (t+1)*(h+2)*(w+2) + (w + 2) + 1 }

// anyT is T that also accepts a packed tensor.
func anyT(t backend.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok || c == nil {
		backend.Fail("cuda backend: tensor %T is not a CUDA tensor", t)
	}
	if c.buf.freed {
		backend.Fail("cuda: use of a freed tensor (shape %v)", c.shape)
	}
	return c
}

// newPacked allocates a packed [c,t,h,w] with its leading rows cleared.
// Caller holds the device.
func (b *Backend) newPacked(c, t, h, w int) *Tensor {
	y := b.newTensor(tensor.BF16, []int{packedRows(t, h, w), c})
	y.shape, y.packed = []int{c, t, h, w}, true
	head := int64((h+2)*(w+2)+w+3) * int64(c) * 2
	b.must("cuMemsetD8Async", call(b.drv.cuMemsetD8Async, y.buf.ptr, 0, uintptr(head), b.stream))
	return y
}

// unpack copies a packed tensor out channel-first.
func (b *Backend) unpack(x *Tensor) *Tensor {
	defer b.enter()()
	out := b.newTensor(tensor.BF16, x.shape)
	if n := out.n(); n > 0 {
		b.launch(b.fn("taehv.cu", "taehv_unpack_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, x.buf.ptr,
			int32(x.shape[0]), int32(x.shape[1]), int32(x.shape[2]), int32(x.shape[3]))
	}
	return out
}

// ConvFused implements backend.TinyVAEOps. Where the sm_90a convolution
// runs (bf16, Cin a multiple of 32, stride 1, sm_90) everything is one
// launch after at most one packing pass: the pass reads the history, the
// grown frames and the upsampling in place (none for a packed input), and
// the epilogue adds the bias and the residual, applies the ReLU and writes
// channel-first or, for an Intermediate result, packed. Elsewhere packed
// operands are unpacked and the unfused ops run one after another
// (backend.ConvFusedUnfused).
func (b *Backend) ConvFused(xt, wt, biast backend.Tensor, p backend.Conv3dParams, f backend.ConvFusion) backend.Tensor {
	x, w := anyT(xt), T(wt)
	var r *Tensor
	if f.Res != nil {
		r = anyT(f.Res)
	}
	if y := b.convFusedHopper(x, w, biast, r, p, f); y != nil {
		return y
	}
	if x.packed {
		u := b.unpack(x)
		defer b.Free(u)
		xt = u
	}
	if r != nil && r.packed {
		u := b.unpack(r)
		defer b.Free(u)
		f.Res = u
	}
	if f.Grow <= 1 && !f.Up && f.Res == nil && !f.ReLU {
		return b.Conv3dWithHistory(f.Hist, xt, wt, biast, p)
	}
	return backend.ConvFusedUnfused(b, xt, wt, biast, p, f)
}

// packedReadable tells whether a convolution with weight shape ws and
// params p reads a packed input in place: stride 1, 3x3 with padding 1 or
// 1x1 without, and kt = 2 with the causal frame of padding or kt = 1
// without.
func packedReadable(ws []int, p backend.Conv3dParams) bool {
	st, sh, sw := p.Strides()
	if st != 1 || sh != 1 || sw != 1 || p.PadT[1] != 0 {
		return false
	}
	k := func(k int, pad [2]int) bool {
		return (k == 3 && pad == [2]int{1, 1}) || (k == 1 && pad == [2]int{0, 0})
	}
	t := (ws[2] == 2 && p.PadT[0] == 1) || (ws[2] == 1 && p.PadT[0] == 0)
	return t && k(ws[3], p.PadH) && k(ws[4], p.PadW)
}

// convFusedHopper runs ConvFused on the sm_90a kernel and returns its
// result, or nil where that kernel does not take it.
func (b *Backend) convFusedHopper(x, w *Tensor, biast backend.Tensor, r *Tensor, p backend.Conv3dParams, f backend.ConvFusion) backend.Tensor {
	if x.dt != tensor.BF16 || len(x.shape) != 4 || len(w.shape) != 5 {
		return nil
	}
	if f.Hist != nil && (f.Grow > 1 || f.Up) {
		return nil
	}
	c, t, h, wd := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	var hp uintptr
	th := 0
	if x.packed {
		if f.Hist != nil || f.Grow > 1 || f.Up || !packedReadable(w.shape, p) {
			return nil
		}
	} else {
		if f.Grow > 1 {
			if c%f.Grow != 0 {
				return nil
			}
			c, t = c/f.Grow, t*f.Grow
		}
		if f.Hist != nil {
			hs := anyT(f.Hist)
			if hs.packed || hs.dt != x.dt || len(hs.shape) != 4 || hs.shape[0] != c || hs.shape[2] != h || hs.shape[3] != wd {
				return nil
			}
			hp, th = hs.buf.ptr, hs.shape[1]
			t += th
		}
		if f.Up {
			h, wd = 2*h, 2*wd
		}
	}
	if w.shape[1] != c {
		return nil
	}
	xshape := []int{c, t, h, wd}
	var hpd, wpd int
	var rows int64
	if x.packed {
		hpd, wpd = h+2, wd+2
		rows = int64(packedRows(t, h, wd))
	} else {
		tp := t + p.PadT[0] + p.PadT[1]
		hpd, wpd = h+p.PadH[0]+p.PadH[1], wd+p.PadW[0]+p.PadW[1]
		if !convPackGridOK(tp, hpd) {
			return nil
		}
		rows = int64(tp) * int64(hpd) * int64(wpd)
	}
	st, sh, sw := p.Strides()
	if !b.convHopperApplies(c, w.shape[0], [3]int{st, sh, sw}, rows, int64(w.shape[2]*w.shape[3]*w.shape[4])) {
		return nil
	}
	os := backend.Conv3dOutShape(xshape, w.shape, p)
	cout := os[0]
	// The packed layout fits an output whose padded grid is the conv's own.
	gridFits := hpd == os[2]+2 && wpd == os[3]+2 && cout%8 == 0
	ex := convExtra{grow: f.Grow, relu: f.ReLU, xpk: x.packed, ypk: f.Intermediate && gridFits}
	var rp uintptr
	if r != nil {
		if r.dt != tensor.BF16 || !backend.SameShape(r.shape, os) {
			backend.Fail("cuda: ConvFused: residual %v %v, want bf16 %v", r.dt, r.shape, os)
		}
		if r.packed && !gridFits {
			return nil
		}
		rp, ex.rpk = r.buf.ptr, r.packed
	}
	var bp uintptr
	var bdt int32
	if biast != nil {
		bt := T(biast)
		checkFloat("ConvFused bias", bt)
		if !backend.SameShape(bt.shape, []int{cout}) {
			backend.Fail("cuda: ConvFused: bias shape %v, want [%d] for weight %v", bt.shape, cout, w.shape)
		}
		bp, bdt = bt.buf.ptr, dtCode(bt.dt)
	}
	defer b.enter()()
	var y *Tensor
	if ex.ypk {
		y = b.newPacked(cout, os[1], os[2], os[3])
	} else {
		y = b.newTensor(tensor.BF16, os)
	}
	if tensor.NumElements(os) == 0 {
		return y
	}
	b.conv3dHopper(y, x, hp, th, nil, w, bp, bdt, rp, xshape, p, 0, f.Up, ex)
	return y
}

// act runs taehv_act_kernel (op 0 ReLU, 1 scaled tanh, 2 clamp).
func (b *Backend) act(name string, xt backend.Tensor, op int32, a, c float32) backend.Tensor {
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
