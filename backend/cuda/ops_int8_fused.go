package cuda

import (
	"os"
	"sync/atomic"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// W8A8 with activations that travel quantised between the block's ops
// (models/wan uses these when the block Linears are int8):
//
//   - AddLayerNormInt8: the residual update and modulated LayerNorm of
//     AddLayerNorm / LayerNorm / LayerNormModulate, returning the normed
//     rows as int8 codes and 128×128 tile scales instead of bf16: the
//     LayerNorm then one quantiser pass, which the q/k/v projections share
//     (they used to quantise the same rows three times). With Int8LNQEnv=1
//     one cluster kernel does both (kernels/int8_act_sm90a.cu; measured
//     slower on the H200, see docs/PERF.md, so not the default);
//   - Int8LinearQ: Int8Linear on such codes (no quantiser pass);
//   - Int8LinearGELUQ: Int8Linear then GELUTanh then the quantiser of the
//     next Int8Linear: the GEMM, then one pass that reads the bf16 hidden
//     activation once and writes GELU's codes (int8_quant_gelu_bf16_kernel)
//     instead of a GELU pass and a quantiser pass. Int8GELUQEnv=gemm does
//     GELU and the quantiser in the GEMM's epilogue instead
//     (int8_gemm_tma_n128p_i2f_gq; slower: the epilogue's tanh is not
//     overlapped with the tensor cores); gemmx in the epilogue of the
//     cross-tile stream (int8_gemm_tma_n128px_i2f_gq), where the next
//     tile's wgmmas run during it.
//
// Each result is bit-identical to the unfused ops on the GPU (the bf16
// tensor they would store, then int8QuantAct), which is what they compute
// where a fused kernel does not apply (not sm_90, a width without a
// compiled instance, the mma.sync GEMM, or Int8FuseEnv=0).

// Int8FuseEnv set to "0" runs the fused ops as their unfused GPU ops (the
// baseline the benchmarks and tests compare with).
const Int8FuseEnv = "TURBODIFFUSION_INT8_FUSE"

// Int8LNQEnv set to "1" makes AddLayerNormInt8 use the cluster kernel that
// normalises and quantises in one pass.
const Int8LNQEnv = "TURBODIFFUSION_INT8_LNQ"

// Int8GELUQEnv set to "gemm" (or "gemmx": the cross-tile GEMM) makes
// Int8LinearGELUQ apply GELU and the quantiser in the GEMM's epilogue.
const Int8GELUQEnv = "TURBODIFFUSION_INT8_GELUQ"

var (
	int8FuseOff   = os.Getenv(Int8FuseEnv) == "0"
	int8LNQOn     = os.Getenv(Int8LNQEnv) == "1"
	int8GELUQMode = os.Getenv(Int8GELUQEnv)
)

// int8FusedLaunches counts launches of the fused kernels, so that tests can
// tell the fused path ran; int8GQXLaunches those of the cross-tile GEMM
// with the GELU+quantiser epilogue.
var int8FusedLaunches, int8GQXLaunches atomic.Int64

// lnqInstances are the (VPT, NW) pairs compiled in int8_act_sm90a.cu.
var lnqInstances = map[[2]int]bool{
	{1, 1}: true, {1, 2}: true, {1, 3}: true, {1, 4}: true, {1, 5}: true, {1, 6}: true, {1, 7}: true, {1, 8}: true,
	{2, 6}: true, {4, 5}: true,
}

// AddLayerNormInt8 is AddLayerNorm (y nil: no residual update; sum is then
// nil and x is normed as it is) whose normed result comes back quantised
// for Int8LinearQ: codes q [..., D] int8 and scales s [ceil(rows/128),
// D/128] float32. shift/scale give the DiT modulation (then w and bias are
// nil), as in AddLayerNorm.
func (b *Backend) AddLayerNormInt8(xt, yt, gate, w, bias, shift, scale backend.Tensor, eps float32) (sum, q, s backend.Tensor) {
	x := T(xt)
	if (shift == nil) != (scale == nil) || (shift != nil && (w != nil || bias != nil)) {
		backend.Fail("cuda: AddLayerNormInt8: give shift and scale together, and not with an affine weight or bias")
	}
	checkFloat("AddLayerNormInt8 x", x)
	rows, D := rowsOf("AddLayerNormInt8", x)
	if D%quant.Block != 0 {
		backend.Fail("cuda: AddLayerNormInt8: width %d is not a multiple of %d (the int8 tiles)", D, quant.Block)
	}
	if yt != nil {
		if y := T(yt); !backend.SameShape(x.shape, y.shape) {
			backend.Fail("cuda: AddLayerNormInt8: x %v and y %v differ in shape", x.shape, y.shape)
		}
	}
	if qq, ss, sm, ok := b.lnq(x, yt, gate, w, bias, shift, scale, rows, D, eps); ok {
		if sm == nil {
			return nil, qq, ss // no residual update: a nil interface, not a nil *Tensor
		}
		return sm, qq, ss
	}
	// Unfused: the bf16 ops, then the quantiser.
	var normed backend.Tensor
	switch {
	case yt != nil:
		sum, normed = b.AddLayerNorm(xt, yt, gate, w, bias, shift, scale, eps)
	case shift != nil:
		normed = b.LayerNormModulate(xt, shift, scale, eps)
	default:
		normed = b.LayerNorm(xt, w, bias, eps, x.dt)
	}
	defer b.Free(normed)
	defer b.enter()()
	xq, sx := b.int8QuantAct(T(normed), int(rows), D)
	return sum, b.reshapeCodes(xq, x.shape), sx
}

// reshapeCodes gives codes [m, k] the activation's leading dims.
func (b *Backend) reshapeCodes(q *Tensor, shape []int) *Tensor {
	q.shape = append([]int(nil), shape...)
	return q
}

// lnq runs int8_act_sm90a.cu's fused kernel when it applies (false: run the
// unfused ops). The conditions are add_ln_bf16's (bf16 rows, operand
// vectors of whole 8-value chunks) plus an sm_90 device and a compiled
// instance for D.
func (b *Backend) lnq(x *Tensor, yt, gate, w, bias, shift, scale backend.Tensor, rows int64, D int, eps float32) (q, s, sum *Tensor, ok bool) {
	vpt, th, vok := rowVec(D)
	if int8FuseOff || !int8LNQOn || !vok || b.info.Arch != "sm_90" || x.dt != tensor.BF16 || x.buf.ptr%16 != 0 || !lnqInstances[[2]int{vpt, th / 32}] || rows == 0 {
		return nil, nil, nil, false
	}
	var yp, gp uintptr
	var gdt int32
	if yt != nil {
		y := T(yt)
		if y.dt != tensor.BF16 || y.buf.ptr%16 != 0 {
			return nil, nil, nil, false
		}
		yp = y.buf.ptr
		if gate != nil {
			if T(gate).n() != int64(D) {
				return nil, nil, nil, false
			}
			gp, gdt = vec("AddLayerNormInt8", "gate", gate, D)
		}
	}
	wp, wdt := vec("AddLayerNormInt8", "weight", w, D)
	bp, bdt := vec("AddLayerNormInt8", "bias", bias, D)
	var sp, cp uintptr
	var sdt, cdt int32
	var nv int64
	if shift != nil {
		var nv2 int64
		sp, sdt, nv = suffixVec("AddLayerNormInt8", "shift", x, shift)
		cp, cdt, nv2 = suffixVec("AddLayerNormInt8", "scale", x, scale)
		if nv != nv2 || nv%8 != 0 {
			return nil, nil, nil, false
		}
	}
	tiles := (rows + 127) / 128
	if tiles*8 > 1<<31-1 {
		return nil, nil, nil, false
	}
	defer b.enter()()
	q = b.newTensor(tensor.I8, x.shape)
	s = b.newTensor(tensor.F32, []int{int(tiles), D / quant.Block})
	var sp2 uintptr
	if yt != nil {
		sum = b.newTensor(x.dt, x.shape)
		sp2 = sum.buf.ptr
	}
	smem := 16*D*2 + 2*(D/quant.Block)*4
	b.launch(b.fn("int8_act_sm90a.cu", "lnq_v"+vecSuffix[vpt]+"_w"+itoa(th/32)), [3]int{int(tiles) * 8, 1, 1}, [3]int{256, 1, 1}, smem,
		q.buf.ptr, s.buf.ptr, sp2, x.buf.ptr, yp, gp, gdt, wp, wdt, bp, bdt, sp, sdt, cp, cdt, nv, int32(rows), int32(D), eps)
	int8FusedLaunches.Add(1)
	return q, s, sum, true
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// int8QuantIn checks pre-quantised activations: codes q [..., K] int8 and
// scales s float32 [ceil(m/128), K/128]; it returns m.
func int8QuantIn(op string, q, s *Tensor, k int) int {
	if q.dt != tensor.I8 || len(q.shape) == 0 || q.shape[len(q.shape)-1] != k {
		backend.Fail("cuda: %s: activation codes must be int8 [..., %d], got %v %v", op, k, q.dt, q.shape)
	}
	m := int(q.n()) / k
	sr, sc := quant.ScaleShape(m, k)
	if s.dt != tensor.F32 || len(s.shape) != 2 || s.shape[0] != sr || s.shape[1] != sc {
		backend.Fail("cuda: %s: activation scales are %v %v, want float32 [%d, %d] for codes %v", op, s.dt, s.shape, sr, sc, q.shape)
	}
	return m
}

// Int8LinearQ is Int8Linear on activations already quantised (codes q and
// scales s, as AddLayerNormInt8 or Int8LinearGELUQ return them): the int8
// GEMM, rounded to bf16, then bias (bf16 or nil) added in bf16.
// Bit-identical to Int8Linear on the bf16 tensor the codes were made of.
func (b *Backend) Int8LinearQ(qt, st, wt, wst, biast backend.Tensor) backend.Tensor {
	q, s := T(qt), T(st)
	n, k, bp, bdt := int8CheckWeight("Int8LinearQ", T(wt), T(wst), biast)
	m := int8QuantIn("Int8LinearQ", q, s, k)
	defer b.enter()()
	out := b.newTensor(tensor.BF16, append(append([]int(nil), q.shape[:len(q.shape)-1]...), n))
	if m == 0 || n == 0 {
		return out
	}
	b.int8Gemm(out, q, s, T(wt), T(wst), bp, bdt, m, n, k)
	return out
}

// Int8LinearGELUQ is Int8LinearQ, then GELUTanh, then the quantiser of the
// next Int8Linear: it returns the codes and tile scales of
// GELU(Int8LinearQ(q, s, w, ws, bias)), bit-identical to those ops run
// one after the other. GELU and the quantiser are one pass over the
// GEMM's bf16 output (or, with Int8GELUQEnv=gemm on sm_90 and N % 128 ==
// 0, the GEMM's epilogue).
func (b *Backend) Int8LinearGELUQ(qt, st, wt, wst, biast backend.Tensor) (codes, scales backend.Tensor) {
	q, s, w, ws := T(qt), T(st), T(wt), T(wst)
	n, k, bp, bdt := int8CheckWeight("Int8LinearGELUQ", w, ws, biast)
	m := int8QuantIn("Int8LinearGELUQ", q, s, k)
	if n%quant.Block != 0 {
		backend.Fail("cuda: Int8LinearGELUQ: N=%d is not a multiple of %d (its codes feed an Int8Linear, whose K must be)", n, quant.Block)
	}
	shape := append(append([]int(nil), q.shape[:len(q.shape)-1]...), n)
	if _, ok := b.int8HopperPick(m, n, w.buf.ptr); ok && !int8FuseOff && (int8GELUQMode == "gemm" || int8GELUQMode == "gemmx") && m > 0 {
		defer b.enter()()
		sr, sc := quant.ScaleShape(m, n)
		oq := b.newTensor(tensor.I8, shape)
		osc := b.newTensor(tensor.F32, []int{sr, sc})
		b.int8GemmGQ(oq, osc, q, s, w, ws, bp, bdt, m, n, k)
		return oq, osc
	}
	h := b.Int8LinearQ(qt, st, wt, wst, biast)
	defer b.Free(h)
	if ht := T(h); !int8FuseOff && m > 0 && ht.buf.ptr%16 == 0 {
		xr, xc := quant.ScaleShape(m, n)
		if xr <= 65535 {
			defer b.enter()()
			oq := b.newTensor(tensor.I8, shape)
			osc := b.newTensor(tensor.F32, []int{xr, xc})
			b.launch(b.fn("int8_linear.cu", "int8_quant_gelu_bf16_kernel"), [3]int{xc, xr, 1}, block256, 0,
				oq.buf.ptr, osc.buf.ptr, ht.buf.ptr, int32(m), int32(n))
			int8FusedLaunches.Add(1)
			return oq, osc
		}
	}
	g := b.GELUTanh(h)
	defer b.Free(g)
	defer b.enter()()
	oq, osc := b.int8QuantAct(T(g), m, n)
	return b.reshapeCodes(oq, shape), osc
}

// int8GemmGQ launches int8_gemm_tma_n128p_i2f_gq (the n128p_i2f GEMM with
// the GELU+quantise epilogue), or with Int8GELUQEnv=gemmx
// int8_gemm_tma_n128px_i2f_gq (the same on n128px_i2f). Caller holds the
// device.
func (b *Backend) int8GemmGQ(oq, osc, xq, sx, w, s *Tensor, bp uintptr, bdt int32, m, n, k int) {
	name := "n128p_i2f"
	if int8GELUQMode == "gemmx" {
		name = "n128px_i2f"
		int8GQXLaunches.Add(1)
	}
	v := int8TMAVariants[name]
	tiles := int64((m+127)/128) * int64((n+127)/128)
	grid := int(min(tiles, int64(max(b.info.SMs, 1))))
	if int8GridCap > 0 {
		grid = min(grid, int8GridCap)
	}
	tmA := b.encodeTensorMap("Int8LinearGELUQ activation codes", xq.buf.ptr, tensorMapRows(tmapU8, 1, int64(m), int64(k), 128, 128, tmapSwizzle128))
	tmB := b.encodeTensorMap("Int8LinearGELUQ weight codes", w.buf.ptr, tensorMapRows(tmapU8, 1, int64(n), int64(k), 128, 128, tmapSwizzle128))
	b.launch(b.fn("int8_gemm_sm90a.cu", v.name()+"_gq"), [3]int{grid, 1, 1}, [3]int{384, 1, 1}, v.smem(),
		tmA, tmB, oq.buf.ptr, osc.buf.ptr, sx.buf.ptr, s.buf.ptr, bp, bdt, int32(m), int32(n), int32(k))
	int8HopperLaunches.Add(1)
	int8FusedLaunches.Add(1)
}
