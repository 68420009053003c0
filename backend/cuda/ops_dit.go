package cuda

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// vec checks an optional per-feature vector [D] and returns its pointer and
// dtype code (0, 0 for nil).
func vec(op, what string, t backend.Tensor, D int) (uintptr, int32) {
	if t == nil {
		return 0, 0
	}
	v := T(t)
	checkFloat(op+" "+what, v)
	if v.n() != int64(D) {
		backend.Fail("cuda: %s: %s has shape %v, want [%d]", op, what, v.shape, D)
	}
	return v.buf.ptr, dtCode(v.dt)
}

// suffixVec checks an operand whose shape is a suffix of x's ([D], or [L, D]
// per token) and returns its pointer, dtype code and element count.
func suffixVec(op, what string, x *Tensor, t backend.Tensor) (uintptr, int32, int64) {
	if t == nil {
		backend.Fail("cuda: %s: %s is required", op, what)
	}
	v := T(t)
	checkFloat(op+" "+what, v)
	return v.buf.ptr, dtCode(v.dt), max(suffixOf(op+" "+what, x, v), 1)
}

func rowsOf(op string, x *Tensor) (rows int64, D int) {
	if len(x.shape) == 0 {
		backend.Fail("cuda: %s: scalar input", op)
	}
	D = x.shape[len(x.shape)-1]
	if D == 0 {
		return 0, 0
	}
	return x.n() / int64(D), D
}

func normBlock(D int) [3]int {
	t := 32
	for t < 1024 && t*4 < D {
		t *= 2
	}
	return [3]int{t, 1, 1}
}

// LayerNorm normalises the last dim in float32 (two-pass variance), applies
// optional w, b and rounds once to out.
func (b *Backend) LayerNorm(xt, w, bias backend.Tensor, eps float32, out tensor.DType) backend.Tensor {
	x := T(xt)
	checkFloat("LayerNorm x", x)
	oc := dtCode(out)
	rows, D := rowsOf("LayerNorm", x)
	wp, wdt := vec("LayerNorm", "weight", w, D)
	bp, bdt := vec("LayerNorm", "bias", bias, D)
	defer b.enter()()
	y := b.newTensor(out, x.shape)
	if rows > 0 && !b.lnVec(y, x, rows, D, wp, wdt, bp, bdt, 0, 0, 0, 0, 0, eps) {
		b.launch(b.fn("norm.cu", "layernorm_kernel"), [3]int{int(rows), 1, 1}, normBlock(D), 0, y.buf.ptr, oc, x.buf.ptr, dtCode(x.dt),
			wp, wdt, bp, bdt, uintptr(0), int32(0), uintptr(0), int32(0), int64(0), int32(D), eps)
	}
	return y
}

// LayerNormModulate fuses the DiT's `bf16(LN(x))·(1+scale)+shift` (LN
// without affine, rounded to x's dtype, then modulated and rounded again):
// the same result as LayerNorm(x, nil, nil, eps, x.dtype) then Modulate, in
// one pass over x.
func (b *Backend) LayerNormModulate(xt, shift, scale backend.Tensor, eps float32) backend.Tensor {
	x := T(xt)
	checkFloat("LayerNormModulate x", x)
	rows, D := rowsOf("LayerNormModulate", x)
	sp, sdt, nv := suffixVec("LayerNormModulate", "shift", x, shift)
	cp, cdt, nv2 := suffixVec("LayerNormModulate", "scale", x, scale)
	if nv != nv2 {
		backend.Fail("cuda: LayerNormModulate: shift %v and scale %v differ in shape", T(shift).shape, T(scale).shape)
	}
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if rows > 0 && !b.lnVec(y, x, rows, D, 0, 0, 0, 0, sp, sdt, cp, cdt, nv, eps) {
		b.launch(b.fn("norm.cu", "layernorm_kernel"), [3]int{int(rows), 1, 1}, normBlock(D), 0, y.buf.ptr, dtCode(x.dt), x.buf.ptr, dtCode(x.dt),
			uintptr(0), int32(0), uintptr(0), int32(0), sp, sdt, cp, cdt, nv, int32(D), eps)
	}
	return y
}

// AddLayerNorm fuses the DiT's residual update with the LayerNorm that reads
// it: sum = Add(x, y), or GatedAdd(x, y, gate) when gate is non-nil; normed =
// LayerNorm(sum, w, bias, eps, x's dtype), or LayerNormModulate(sum, shift,
// scale, eps) when shift and scale are given (then w and bias must be nil).
// Both results equal the separate ops' (the norm reads the rounded sum);
// bf16 rows read x and y once instead of three times. Other cases run the
// separate ops.
func (b *Backend) AddLayerNorm(xt, yt, gate, w, bias, shift, scale backend.Tensor, eps float32) (sum, normed backend.Tensor) {
	x, y := T(xt), T(yt)
	if (shift == nil) != (scale == nil) || (shift != nil && (w != nil || bias != nil)) {
		backend.Fail("cuda: AddLayerNorm: give shift and scale together, and not with an affine weight or bias")
	}
	separate := func() (backend.Tensor, backend.Tensor) {
		var s backend.Tensor
		if gate != nil {
			s = b.GatedAdd(xt, yt, gate)
		} else {
			s = b.Add(xt, yt)
		}
		if shift != nil {
			return s, b.LayerNormModulate(s, shift, scale, eps)
		}
		return s, b.LayerNorm(s, w, bias, eps, x.dt)
	}
	checkFloat("AddLayerNorm x", x)
	checkFloat("AddLayerNorm y", y)
	vpt, th, ok := rowVec(lastDim(x.shape))
	if !ok || x.dt != tensor.BF16 || y.dt != tensor.BF16 || !backend.SameShape(x.shape, y.shape) {
		return separate()
	}
	rows, D := rowsOf("AddLayerNorm", x)
	var gp uintptr
	var gdt int32
	if gate != nil {
		if T(gate).n() != int64(D) {
			return separate() // per-token gates: the separate ops handle them
		}
		gp, gdt = vec("AddLayerNorm", "gate", gate, D)
	}
	wp, wdt := vec("AddLayerNorm", "weight", w, D)
	bp, bdt := vec("AddLayerNorm", "bias", bias, D)
	var sp, cp uintptr
	var sdt, cdt int32
	var nv int64
	if shift != nil {
		var nv2 int64
		sp, sdt, nv = suffixVec("AddLayerNorm", "shift", x, shift)
		cp, cdt, nv2 = suffixVec("AddLayerNorm", "scale", x, scale)
		if nv != nv2 || nv%8 != 0 {
			return separate()
		}
	}
	defer b.enter()()
	s := b.newTensor(x.dt, x.shape)
	n := b.newTensor(x.dt, x.shape)
	if rows > 0 {
		b.launch(b.fn("vec.cu", "add_ln_bf16_v"+vecSuffix[vpt]), [3]int{int(rows), 1, 1}, [3]int{th, 1, 1}, 0,
			s.buf.ptr, n.buf.ptr, x.buf.ptr, y.buf.ptr, gp, gdt, wp, wdt, bp, bdt, sp, sdt, cp, cdt, nv, int32(D), eps)
	}
	return s, n
}

// RMSNorm normalises the last dim and multiplies by w (rounding per mode).
func (b *Backend) RMSNorm(xt, w backend.Tensor, eps float32, mode backend.NormMode) backend.Tensor {
	x := T(xt)
	checkFloat("RMSNorm x", x)
	rows, D := rowsOf("RMSNorm", x)
	wp, wdt := vec("RMSNorm", "weight", w, D)
	if wdt == 0 {
		backend.Fail("cuda: RMSNorm: weight is required")
	}
	m := int32(0)
	if mode == backend.NormDefault {
		m = 1
	}
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if rows > 0 && !b.rmsVec(y, x, rows, D, wp, wdt, eps, m) {
		b.launch(b.fn("norm.cu", "rmsnorm_kernel"), [3]int{int(rows), 1, 1}, normBlock(D), 0, y.buf.ptr, x.buf.ptr, dtCode(x.dt),
			wp, wdt, int32(D), eps, m)
	}
	return y
}

// RMSNormRoPE is RoPE(RMSNorm(x, w, eps, mode), angles, heads) in one pass
// over x for bf16 rows (bit-identical to the two ops: the norm's output is
// rounded where RMSNorm stores it); other cases run the two ops.
func (b *Backend) RMSNormRoPE(xt, w backend.Tensor, eps float32, mode backend.NormMode, at backend.Tensor, heads int) backend.Tensor {
	x, a := T(xt), T(at)
	nd := len(x.shape)
	vpt, th, ok := rowVec(lastDim(x.shape))
	if x.dt != tensor.BF16 || !ok || nd < 2 || heads <= 0 || x.shape[nd-1]%heads != 0 || (x.shape[nd-1]/heads)%8 != 0 {
		n := b.RMSNorm(xt, w, eps, mode)
		defer b.Free(n)
		return b.RoPE(n, at, heads)
	}
	rows, D := rowsOf("RMSNormRoPE", x)
	wp, wdt := vec("RMSNormRoPE", "weight", w, D)
	if wdt == 0 {
		backend.Fail("cuda: RMSNormRoPE: weight is required")
	}
	L, d := x.shape[nd-2], D/heads
	if a.dt != tensor.F32 || len(a.shape) != 2 || a.shape[0] != L || a.shape[1] != d/2 {
		backend.Fail("cuda: RMSNormRoPE: angles %v %v, want float32 [%d, %d]", a.dt, a.shape, L, d/2)
	}
	m := int32(0)
	if mode == backend.NormDefault {
		m = 1
	}
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if rows > 0 {
		b.launch(b.fn("vec.cu", "rms_rope_bf16_v"+vecSuffix[vpt]), [3]int{int(rows), 1, 1}, [3]int{th, 1, 1}, 0,
			y.buf.ptr, x.buf.ptr, wp, wdt, int32(D), eps, m, a.buf.ptr, int64(L), int32(d))
	}
	return y
}

// Modulate returns x·(1+scale)+shift in float32, rounded to x's dtype.
func (b *Backend) Modulate(xt, shift, scale backend.Tensor) backend.Tensor {
	x := T(xt)
	checkFloat("Modulate x", x)
	sp, sdt, nv := suffixVec("Modulate", "shift", x, shift)
	cp, cdt, nv2 := suffixVec("Modulate", "scale", x, scale)
	if nv != nv2 {
		backend.Fail("cuda: Modulate: shift %v and scale %v differ in shape", T(shift).shape, T(scale).shape)
	}
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if n := x.n(); n > 0 && !b.ewVec(0, y, x, nil, sp, sdt, cp, cdt, nv) {
		b.launch(b.fn("elementwise.cu", "modulate_kernel"), b.gridFor(n), block256, 0, y.buf.ptr, x.buf.ptr, dtCode(x.dt),
			sp, sdt, cp, cdt, n, nv)
	}
	return y
}

// GatedAdd returns x + y·gate with TD's bf16 roundings for BF16 x.
func (b *Backend) GatedAdd(xt, yt, gate backend.Tensor) backend.Tensor {
	x, y := T(xt), T(yt)
	checkFloat("GatedAdd x", x)
	checkFloat("GatedAdd y", y)
	if !backend.SameShape(x.shape, y.shape) {
		backend.Fail("cuda: GatedAdd: x %v and y %v differ in shape", x.shape, y.shape)
	}
	gp, gdt, nv := suffixVec("GatedAdd", "gate", x, gate)
	defer b.enter()()
	out := b.newTensor(x.dt, x.shape)
	if n := x.n(); n > 0 && !b.ewVec(1, out, x, y, gp, gdt, 0, 0, nv) {
		b.launch(b.fn("elementwise.cu", "gated_add_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, x.buf.ptr, dtCode(x.dt),
			y.buf.ptr, dtCode(y.dt), gp, gdt, n, nv)
	}
	return out
}

// RoPE rotates interleaved pairs of each head of x [..., L, heads·d] by
// angles [L, d/2] (F32), shared by the leading dims.
func (b *Backend) RoPE(xt, at backend.Tensor, heads int) backend.Tensor {
	x, a := T(xt), T(at)
	checkFloat("RoPE x", x)
	nd := len(x.shape)
	if nd < 2 || heads <= 0 || x.shape[nd-1]%heads != 0 || (x.shape[nd-1]/heads)%2 != 0 {
		backend.Fail("cuda: RoPE: x shape %v with %d heads: want [..., L, heads·d] with even d", x.shape, heads)
	}
	L, d := x.shape[nd-2], x.shape[nd-1]/heads
	if a.dt != tensor.F32 || len(a.shape) != 2 || a.shape[0] != L || a.shape[1] != d/2 {
		backend.Fail("cuda: RoPE: angles %v %v, want float32 [%d, %d]", a.dt, a.shape, L, d/2)
	}
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if n := x.n() / 2; n > 0 && !b.ropeVec(y, x, a, x.n()/int64(heads*d), int64(L), heads, d) {
		rows := x.n() / int64(heads*d)
		b.launch(b.fn("norm.cu", "rope_kernel"), b.gridFor(n), block256, 0, y.buf.ptr, x.buf.ptr, dtCode(x.dt), a.buf.ptr,
			rows, int64(L), int32(heads), int32(d))
	}
	return y
}

// Attention is dense softmax(q·kᵀ·scale)·v per head: bf16 (d 64 or 128) on
// tensor cores (attention.cu, attention_*_sm90a.cu), or float32 (d ≤ 256, the
// fp32 reference mode) on a simple exact kernel. q [..., Lq, heads·d],
// k, v [..., Lk, heads·d] with equal leading dims.
func (b *Backend) Attention(qt, kt, vt backend.Tensor, heads int, scale float32) backend.Tensor {
	q, k, v := T(qt), T(kt), T(vt)
	for _, p := range []struct {
		n string
		t *Tensor
	}{{"q", q}, {"k", k}, {"v", v}} {
		if p.t.dt != q.dt || (q.dt != tensor.BF16 && q.dt != tensor.F32) {
			backend.Fail("cuda: Attention: q, k, v are %v, %v, %v; want all bfloat16 or all float32", q.dt, k.dt, v.dt)
		}
		if len(p.t.shape) != len(q.shape) || len(p.t.shape) < 2 {
			backend.Fail("cuda: Attention: %s shape %v, want [..., L, heads·d] like q %v", p.n, p.t.shape, q.shape)
		}
	}
	nd := len(q.shape)
	W := q.shape[nd-1]
	if heads <= 0 || W%heads != 0 {
		backend.Fail("cuda: Attention: width %d is not divisible by %d heads", W, heads)
	}
	d := W / heads
	if !backend.SameShape(k.shape, v.shape) || k.shape[nd-1] != W || !backend.SameShape(k.shape[:nd-2], q.shape[:nd-2]) {
		backend.Fail("cuda: Attention: q %v, k %v, v %v do not match", q.shape, k.shape, v.shape)
	}
	batch := tensor.NumElements(q.shape[:nd-2])
	if q.dt == tensor.F32 {
		if d > 256 {
			backend.Fail("cuda: Attention: float32 head dim %d not supported (at most 256)", d)
		}
	} else if d != 64 && d != 128 {
		backend.Fail("cuda: Attention: bfloat16 head dim %d not supported (64 or 128)", d)
	}
	Lq, Lk := q.shape[nd-2], k.shape[nd-2]
	if Lk == 0 {
		backend.Fail("cuda: Attention: no keys (k shape %v)", k.shape)
	}
	if q.dt == tensor.F32 {
		defer b.enter()()
		out := b.newTensor(tensor.F32, q.shape)
		if Lq > 0 && batch > 0 {
			b.launch(b.fn("attention.cu", "attention_f32_kernel"), [3]int{(Lq + 3) / 4, heads, batch}, [3]int{128, 1, 1}, 0,
				q.buf.ptr, k.buf.ptr, v.buf.ptr, out.buf.ptr, int32(Lq), int32(Lk), int32(heads), int32(d), scale)
		}
		return out
	}
	useWG := b.wgmmaReady()
	defer b.enter()()
	out := b.newTensor(tensor.BF16, q.shape)
	if Lq == 0 || batch == 0 {
		return out
	}
	if useWG {
		b.flashWGMMA(q, k, v, out, batch, Lq, Lk, heads, d, scale, b.attn.swap)
	} else {
		b.flash(q, k, v, out, batch, Lq, Lk, heads, d, scale)
	}
	return out
}

// flash picks the tile config: 8 warps (128 query rows) when that still
// gives every SM a few blocks, else 4 warps.
func (b *Backend) flash(q, k, v, out *Tensor, batch, Lq, Lk, heads, d int, scale float32) {
	nw := 8
	if ((Lq+127)/128)*heads*batch < 2*b.info.SMs {
		nw = 4
	}
	bm := 16 * nw
	str := d + 8
	smem := (bm*str + 4*64*str) * 2
	name := "flash_d128_w8"
	switch {
	case d == 128 && nw == 4:
		name = "flash_d128_w4"
	case d == 64 && nw == 8:
		name = "flash_d64_w8"
	case d == 64 && nw == 4:
		name = "flash_d64_w4"
	}
	sl := float32(float64(scale) * math.Log2E)
	b.launch(b.fn("attention.cu", name), [3]int{(Lq + bm - 1) / bm, heads, batch}, [3]int{nw * 32, 1, 1}, smem,
		q.buf.ptr, k.buf.ptr, v.buf.ptr, out.buf.ptr, int32(Lq), int32(Lk), int32(heads), sl)
}

// Int8Linear is TurboDiffusion's W8A8 layer (ops_int8.go).
func (b *Backend) Int8Linear(x, w, scale, bias backend.Tensor) backend.Tensor {
	return b.int8Linear(x, w, scale, bias)
}

// SparseLinearAttention is SLA/SageSLA self-attention (ops_sla.go).
func (b *Backend) SparseLinearAttention(q, k, v backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) backend.Tensor {
	return b.sparseLinearAttention(q, k, v, heads, cfg, projW, projB)
}

var _ backend.DiT = (*Backend)(nil)
