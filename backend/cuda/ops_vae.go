package cuda

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// This file holds the VAE ops (backend.VAEOps): kernels in conv3d.cu and
// vae.cu, the attention's GEMMs through cuBLASLt.

var _ backend.VAE = (*Backend)(nil)

// convMT picks the bf16 conv kernel's output-channel tile (32·MT rows) that
// wastes the fewest rows on Cout, preferring the larger tile on a tie: the
// Wan VAE's widths 96 and 192 get 96, 384 and its multiples 128.
func convMT(cout int) int {
	best, bestPad := 4, math.MaxInt
	for mt := 4; mt >= 1; mt-- {
		bm := 32 * mt
		if pad := (cout + bm - 1) / bm * bm; pad < bestPad {
			best, bestPad = mt, pad
		}
	}
	return best
}

// convWide selects the bf16 conv kernels with 256-position tiles
// (conv3d_bf16_m<MT>_w: half the shared-memory traffic per multiply-add, one
// block per SM) over the 128-position ones (two blocks per SM) for outputs
// that use MT ≥ 2. BenchmarkConv3dBF16 measured the wide tiles faster on
// every decoder shape (H100, 2026-11-26); both stay tested.
var convWide = true // H100: 146-164 vs 104-119 TFLOP/s on the decoder's 3x3x3 convs (PERF.md)

// convTile returns the bf16 conv kernel for cout output channels, its tile
// (rows, positions) and its dynamic shared memory in bytes (conv3d.cu).
func convTile(cout int) (name string, bm, bn, smem int) {
	mt := convMT(cout)
	nb, suffix := 1, ""
	if convWide && mt >= 2 {
		nb, suffix = 2, "_w"
	}
	bm, bn = 32*mt, 128*nb
	const bk = 32
	smem = 2 * (bm*(bk+8) + bk*(bn+8)) * 2
	return fmt.Sprintf("conv3d_bf16_m%d%s", mt, suffix), bm, bn, smem
}

// Conv3d implements backend.VAEOps. BF16 input runs, on sm_90 with stride 1
// and Cin a multiple of 32, the TMA + wgmma kernel of conv3d_sm90a.cu
// (conv_sm90.go); otherwise the mma.sync implicit GEMM (weights repacked to
// bf16 [Cout][tap][Cin rounded up to 32] per call), or for Cout ≤ 4 a
// direct kernel. F32 input runs a direct fp32 convolution.
func (b *Backend) Conv3d(xt, wt, biast backend.Tensor, p backend.Conv3dParams) backend.Tensor {
	return b.Conv3dWithHistory(nil, xt, wt, biast, p)
}

// convSmallMax is the largest Cout the direct bf16 kernel takes, and
// convSmallW its limit on taps·Cin (float4 weights in 48 KiB of shared
// memory; conv3d.cu).
const convSmallMax, convSmallW = 4, 3072

// Conv3dWithHistory implements backend.Conv3dHistory: the bf16 kernels read
// the frames of hist [Cin,Th,H,W] and then those of x [Cin,T,H,W] as one
// input, so the chunk is never concatenated in memory. F32 input
// concatenates.
func (b *Backend) Conv3dWithHistory(ht, xt, wt, biast backend.Tensor, p backend.Conv3dParams) backend.Tensor {
	out, _ := b.conv3d(ht, xt, nil, wt, biast, nil, p, 0)
	return out
}

// conv3d is Conv3dWithHistory; a non-nil gamma (only where
// convNormFusable said yes) also applies the RMS norm + SiLU to the input
// in the sm_90a kernel's packing pass, which then also returns the last
// keep raw frames (tail; nil for keep 0), and adds the residual rt (nil for
// none) in its epilogue.
func (b *Backend) conv3d(ht, xt, gt, wt, biast, rt backend.Tensor, p backend.Conv3dParams, keep int) (out, tail backend.Tensor) {
	return b.conv3dAll(ht, xt, gt, wt, biast, rt, p, keep, false)
}

// conv3dUp is the convolution of UpsampleNearest2x(x), only where the
// sm_90a kernel runs (Conv3dUpsample2x checks).
func (b *Backend) conv3dUp(xt, wt, biast backend.Tensor, p backend.Conv3dParams) (out, tail backend.Tensor) {
	return b.conv3dAll(nil, xt, nil, wt, biast, nil, p, 0, true)
}

// convExtra are the sm_90a kernel's TAEHV fusions (backend.ConvFusion, run
// by ops_taehv.go): grow > 1 reads x [grow·C,T,H,W] as [C,grow·T,H,W] (no
// history), relu applies max(·, 0) after the residual.
type convExtra struct {
	grow int
	relu bool
	// xpk: x is in the packed layout (no pack pass); ypk: write the output
	// packed; rpk: the residual is packed (ops_taehv.go).
	xpk, ypk, rpk bool
}

// conv3dAll is conv3d with up: x is read through a nearest 2x upsampling.
func (b *Backend) conv3dAll(ht, xt, gt, wt, biast, rt backend.Tensor, p backend.Conv3dParams, keep int, up bool) (out, tail backend.Tensor) {
	x, w := T(xt), T(wt)
	checkFloat("Conv3d input", x)
	checkFloat("Conv3d weight", w)
	var hp uintptr
	th := 0
	xshape := x.shape
	if ht != nil {
		h := T(ht)
		if h.dt != x.dt || len(h.shape) != 4 || len(x.shape) != 4 || h.shape[0] != x.shape[0] ||
			h.shape[2] != x.shape[2] || h.shape[3] != x.shape[3] {
			backend.Fail("cuda: Conv3d: history %v %v does not precede input %v %v along time", h.dt, h.shape, x.dt, x.shape)
		}
		if x.dt != tensor.BF16 {
			in := b.Concat(1, ht, xt)
			defer b.Free(in)
			return b.Conv3d(in, wt, biast, p), nil
		}
		hp, th = h.buf.ptr, h.shape[1]
		xshape = []int{x.shape[0], th + x.shape[1], x.shape[2], x.shape[3]}
	}
	if up {
		if len(x.shape) != 4 {
			backend.Fail("cuda: Conv3d: upsampled input %v is not [C,T,H,W]", x.shape)
		}
		xshape = []int{x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3]}
	}
	os := backend.Conv3dOutShape(xshape, w.shape, p)
	cout, cin := w.shape[0], w.shape[1]
	kt, kh, kw := w.shape[2], w.shape[3], w.shape[4]
	var bp uintptr
	var bdt int32
	if biast != nil {
		bt := T(biast)
		checkFloat("Conv3d bias", bt)
		if !backend.SameShape(bt.shape, []int{cout}) {
			backend.Fail("cuda: Conv3d: bias shape %v, want [%d] for weight %v", bt.shape, cout, w.shape)
		}
		bp, bdt = bt.buf.ptr, dtCode(bt.dt)
	}
	st, sh, sw := p.Strides()
	ti, hi, wi := xshape[1], xshape[2], xshape[3]
	to, ho, wo := os[1], os[2], os[3]
	P := int64(to) * int64(ho) * int64(wo)
	// The kernels index dimensions and the packed weight row in int32
	// (offsets are int64), and the f32 kernel's grid has ⌈Cout/8⌉ rows.
	if int64(cin+31)*int64(kt*kh*kw) >= math.MaxInt32 || cout > 8*65535 {
		backend.Fail("cuda: Conv3d: weight %v is too large for the kernels", w.shape)
	}
	geom := []any{int32(cin), int32(ti), int32(hi), int32(wi), int32(cout), int32(to), int32(ho), int32(wo)}
	defer b.enter()()
	y := b.newTensor(x.dt, os)
	if P == 0 || cout == 0 {
		if gt != nil {
			backend.Fail("cuda: Conv3d: internal error: fused RMS norm requested for an empty convolution")
		}
		return y, nil
	}
	if x.dt == tensor.BF16 {
		tp, hpd := ti+p.PadT[0]+p.PadT[1], hi+p.PadH[0]+p.PadH[1]
		padded := int64(tp) * int64(hpd) * int64(wi+p.PadW[0]+p.PadW[1])
		if convPackGridOK(tp, hpd) && b.convHopperApplies(cin, cout, [3]int{st, sh, sw}, padded, int64(kt*kh*kw)) {
			var g *Tensor
			if gt != nil {
				g = T(gt)
			}
			var rp uintptr
			if rt != nil {
				r := T(rt)
				if r.dt != x.dt || !backend.SameShape(r.shape, os) {
					backend.Fail("cuda: Conv3d: residual %v %v, want %v %v", r.dt, r.shape, x.dt, os)
				}
				rp = r.buf.ptr
			}
			t := b.conv3dHopper(y, x, hp, th, g, w, bp, bdt, rp, xshape, p, keep, up, convExtra{})
			if t == nil {
				return y, nil // no typed nil in the interface
			}
			return y, t
		}
	}
	if gt != nil || rt != nil || up {
		backend.Fail("cuda: Conv3d: internal error: a fusion requested where the sm_90a kernel does not run")
	}
	if x.dt == tensor.BF16 && cout <= convSmallMax && kt*kh*kw*cin <= convSmallW {
		ntap := kt * kh * kw
		wp := b.newTensor(tensor.F32, []int{ntap, cin, convSmallMax})
		defer b.Free(wp)
		if n := wp.n(); n > 0 {
			b.launch(b.fn("conv3d.cu", "conv_wpack_small_kernel"), b.gridFor(n), block256, 0, wp.buf.ptr, w.buf.ptr, dtCode(w.dt),
				int32(cout), int32(cin), int32(ntap))
		}
		args := append([]any{y.buf.ptr, x.buf.ptr, hp, int32(th), wp.buf.ptr, bp, bdt}, geom...)
		args = append(args, int32(kt), int32(kh), int32(kw), int32(st), int32(sh), int32(sw),
			int32(p.PadT[0]), int32(p.PadH[0]), int32(p.PadW[0]))
		b.launch(b.fn("conv3d.cu", "conv3d_bf16_small"), [3]int{int((P + 511) / 512), 1, 1}, block256, 0, args...)
		return y, nil
	}
	if x.dt == tensor.BF16 {
		ntap := kt * kh * kw
		cinp := (cin + 31) / 32 * 32
		wr := b.newTensor(tensor.BF16, []int{cout, ntap, cinp})
		defer b.Free(wr)
		if n := wr.n(); n > 0 {
			b.launch(b.fn("conv3d.cu", "conv_wpack_kernel"), b.gridFor(n), block256, 0, wr.buf.ptr, w.buf.ptr, dtCode(w.dt),
				int32(cout), int32(cin), int32(ntap), int32(cinp))
		}
		name, bm, bn, smem := convTile(cout)
		tiles := int64((cout+bm-1)/bm) * ((P + int64(bn) - 1) / int64(bn))
		if tiles >= math.MaxInt32 {
			backend.Fail("cuda: Conv3d: output %v needs %d tiles, more than one launch takes", os, tiles)
		}
		args := append([]any{y.buf.ptr, x.buf.ptr, hp, int32(th), wr.buf.ptr, bp, bdt}, geom...)
		args = append(args, int32(ntap), int32(kh), int32(kw), int32(st), int32(sh), int32(sw),
			int32(p.PadT[0]), int32(p.PadH[0]), int32(p.PadW[0]), int32(cinp))
		b.launch(b.fn("conv3d.cu", name), [3]int{int(tiles), 1, 1}, block256, smem, args...)
		return y, nil
	}
	args := append([]any{y.buf.ptr, x.buf.ptr, w.buf.ptr, dtCode(w.dt), bp, bdt}, geom...)
	args = append(args, int32(kt), int32(kh), int32(kw), int32(st), int32(sh), int32(sw),
		int32(p.PadT[0]), int32(p.PadH[0]), int32(p.PadW[0]))
	b.launch(b.fn("conv3d.cu", "conv3d_f32_kernel"), [3]int{int((P + 127) / 128), (cout + 7) / 8, 1}, [3]int{128, 1, 1}, 0, args...)
	return y, nil
}

// ChannelRMSNorm implements backend.VAEOps (fused with SiLU when silu is
// set), one thread per position.
func (b *Backend) ChannelRMSNorm(xt, gt backend.Tensor, silu bool) backend.Tensor {
	x, g := T(xt), T(gt)
	checkFloat("ChannelRMSNorm x", x)
	checkFloat("ChannelRMSNorm gamma", g)
	if len(x.shape) < 2 {
		backend.Fail("cuda: ChannelRMSNorm: want x [C,...], got %v", x.shape)
	}
	C := x.shape[0]
	if !backend.SameShape(g.shape, []int{C}) {
		backend.Fail("cuda: ChannelRMSNorm: gamma shape %v, want [%d] for x %v", g.shape, C, x.shape)
	}
	var P int64
	if C > 0 {
		P = x.n() / int64(C)
	}
	s := int32(0)
	if silu {
		s = 1
	}
	scale := float32(math.Sqrt(float64(C)))
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if P > 0 && C > 0 {
		b.launch(b.fn("vae.cu", "channel_rmsnorm_kernel"), b.gridFor(P), block256, 0, y.buf.ptr, x.buf.ptr, dtCode(x.dt),
			g.buf.ptr, dtCode(g.dt), int32(C), P, scale, s)
	}
	return y
}

// UpsampleNearest2x implements backend.VAEOps.
func (b *Backend) UpsampleNearest2x(xt backend.Tensor) backend.Tensor {
	x := T(xt)
	checkFloat("UpsampleNearest2x", x)
	if len(x.shape) != 4 {
		backend.Fail("cuda: UpsampleNearest2x: want x [C,T,H,W], got %v", x.shape)
	}
	C, T0, H, W := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	defer b.enter()()
	y := b.newTensor(x.dt, []int{C, T0, 2 * H, 2 * W})
	if n := y.n(); n > 0 {
		b.launch(b.fn("vae.cu", "upsample2x_kernel"), b.gridFor(n), block256, 0, y.buf.ptr, x.buf.ptr, int32(x.dt.Size()),
			int64(C*T0), int32(H), int32(W))
	}
	return y
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

// FrameAttention implements backend.VAEOps. Per frame: q and k go
// token-major, S = q·kᵀ [P,P] is one cuBLASLt GEMM into float32, a kernel
// turns each row into probabilities exp(s/√C − max) rounded to qkv's dtype
// (in place for F32) and its 1/Σ, a second GEMM (in qkv's dtype, float32
// out) gives Oᵀ = v·probᵀ [C,P], and a last kernel scales by 1/Σ and
// rounds into the channel-first output. Memory: P² floats for S plus P²
// bf16 probabilities (234 MB at the 480p latent's 60×104 pixels).
func (b *Backend) FrameAttention(qkvt backend.Tensor) backend.Tensor {
	x := T(qkvt)
	checkFloat("FrameAttention qkv", x)
	if len(x.shape) != 4 || x.shape[0]%3 != 0 || x.shape[0] == 0 {
		backend.Fail("cuda: FrameAttention: want qkv [3C,T,H,W], got %v", x.shape)
	}
	C, T0, H, W := x.shape[0]/3, x.shape[1], x.shape[2], x.shape[3]
	P := int64(H) * int64(W)
	scale := float32(1 / math.Sqrt(float64(C)))
	defer b.enter()()
	out := b.newTensor(x.dt, []int{C, T0, H, W})
	if C == 0 || T0 == 0 || P == 0 {
		return out
	}
	es := int64(x.dt.Size())
	// Frame strides padded to 256 bytes: cuBLASLt's heuristic assumes
	// operands that aligned unless told otherwise.
	fs := roundUp(P*int64(C), 256/es)
	qk := b.newTensor(x.dt, []int{int(2 * int64(T0) * fs)})
	defer b.Free(qk)
	v := b.newTensor(x.dt, []int{int(int64(T0) * fs)})
	defer b.Free(v)
	s := b.newTensor(tensor.F32, []int{int(P), int(P)})
	defer b.Free(s)
	prob := s // float32 probabilities overwrite the scores in place
	if x.dt != tensor.F32 {
		prob = b.newTensor(x.dt, []int{int(P), int(P)})
		defer b.Free(prob)
	}
	o := b.newTensor(tensor.F32, []int{C, int(P)})
	defer b.Free(o)
	inv := b.newTensor(tensor.F32, []int{int(P)})
	defer b.Free(inv)

	b.launch(b.fn("vae.cu", "attn_qk_tokens_kernel"), [3]int{int((P + 31) / 32), (C + 31) / 32, 2 * T0}, [3]int{32, 8, 1}, 0,
		qk.buf.ptr, x.buf.ptr, int32(es), int32(C), int32(T0), P, fs)
	nv := int64(T0) * int64(C) * P
	b.launch(b.fn("vae.cu", "attn_v_frames_kernel"), b.gridFor(nv), block256, 0, v.buf.ptr, x.buf.ptr, int32(es),
		int32(C), int32(T0), P, fs)

	kS := gemmKey{m: int(P), n: int(P), k: C, ab: cudaType(x.dt), cd: cudaR32F, bias: -1}
	pS, err := b.plan(kS)
	if err != nil {
		backend.FailErr(err)
	}
	kO := gemmKey{m: C, n: int(P), k: int(P), ab: cudaType(x.dt), cd: cudaR32F, bias: -1}
	pO, err := b.plan(kO)
	if err != nil {
		backend.FailErr(err)
	}
	for t := 0; t < T0; t++ {
		q := qk.buf.ptr + uintptr(int64(t)*fs*es)
		k := qk.buf.ptr + uintptr(int64(T0+t)*fs*es)
		b.gemm(pS, kS, q, k, s.buf.ptr, 0)
		b.launch(b.fn("vae.cu", "attn_softmax_kernel"), [3]int{int(P), 1, 1}, block256, 0, s.buf.ptr, prob.buf.ptr,
			dtCode(x.dt), inv.buf.ptr, P, scale)
		b.gemm(pO, kO, v.buf.ptr+uintptr(int64(t)*fs*es), prob.buf.ptr, o.buf.ptr, 0)
		n := int64(C) * P
		b.launch(b.fn("vae.cu", "attn_out_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, dtCode(x.dt), o.buf.ptr,
			inv.buf.ptr, int32(C), int32(T0), int32(t), P)
	}
	return out
}
