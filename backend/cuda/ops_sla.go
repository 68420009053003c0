package cuda

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/sla"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// slaChunk is how many rows one block of the column-reduction kernels sums.
const slaChunk = 256

// sparseLinearAttention is SLA/SageSLA self-attention
// (backend.DiTOps.SparseLinearAttention) on the GPU, the CPU backend's
// semantics (package sla): q, k, v [L, heads·d] or [B, L, heads·d], d 128
// or 64, F32
// or BF16, rounded to bf16 inside; the block map is computed in the inputs'
// dtype; the result has q's dtype and bf16-exact values. Zero block sizes
// default to SLA 128/64, SageSLA 64/128; each may be 64 or 128.
func (b *Backend) sparseLinearAttention(q, k, v backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) backend.Tensor {
	out, _ := b.slaForward(q, k, v, heads, cfg, projW, projB, false)
	return out
}

// slaPlan is one validated SLA call.
type slaPlan struct {
	q, k, v  *Tensor
	g        sla.Geometry
	sage     bool
	batches  int
	bf16Map  bool
	override []int8
}

func slaCheck(qt, kt, vt backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) slaPlan {
	p := slaPlan{q: T(qt), k: T(kt), v: T(vt)}
	for _, x := range []struct {
		name string
		t    *Tensor
	}{{"q", p.q}, {"k", p.k}, {"v", p.v}} {
		checkFloat("SparseLinearAttention "+x.name, x.t)
	}
	const op = "cuda: SparseLinearAttention"
	batches, L, d := backend.SLAShape(op, qt, kt, vt, heads)
	if d != 128 && d != 64 {
		backend.Fail("%s: head dim %d not supported (the CUDA kernels take 128 or 64)", op, d)
	}
	p.batches = batches
	g := sla.Geometry{L: L, Heads: heads, D: d, TopK: cfg.TopK}
	g.BlockQ, g.BlockK, p.sage = cfg.Blocks(op)
	if (g.BlockQ != 64 && g.BlockQ != 128) || (g.BlockK != 64 && g.BlockK != 128) {
		backend.Fail("cuda: SparseLinearAttention: block sizes %d/%d not supported (query and key blocks must be 64 or 128)", g.BlockQ, g.BlockK)
	}
	if g.L > 0 && p.batches > 0 {
		if err := g.Check(g.L * heads * d); err != nil {
			backend.FailErr(err)
		}
	}
	if cfg.BlockMap != nil && len(cfg.BlockMap) != g.MapLen() {
		backend.Fail("cuda: SparseLinearAttention: block map has %d entries, want [heads=%d, qblocks=%d, kblocks=%d]", len(cfg.BlockMap), heads, g.QBlocks(), g.KBlocks())
	}
	p.override = cfg.BlockMap
	checkFloat("SparseLinearAttention proj_l weight", T(projW))
	backend.CheckShape("cuda: SparseLinearAttention proj_l weight", projW, d, d)
	if projB != nil {
		checkFloat("SparseLinearAttention proj_l bias", T(projB))
		backend.CheckShape("cuda: SparseLinearAttention proj_l bias", projB, d)
	}
	p.bf16Map = p.q.dt == tensor.BF16 && p.k.dt == tensor.BF16
	p.g = g
	return p
}

// slaForward runs the op; with keepMap it also returns the block map
// [B, heads, qBlocks, kBlocks] as F32 0/1 (tests compare it with the CPU's).
func (b *Backend) slaForward(qt, kt, vt backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor, keepMap bool) (backend.Tensor, backend.Tensor) {
	p := slaCheck(qt, kt, vt, heads, cfg, projW, projB)
	k := slaKernels{tma: !p.sage && b.slaTMA(), linFused: b.slaLinFused(), prep: b.slaPrepFused()}
	k.persist = k.tma && b.slaPersist()
	if p.sage {
		k.sageTMA = sageTMAFits(p.g) && b.sageTMA()
		k.fp8 = !k.sageTMA && b.sageFP8()
		k.persist = k.sageTMA && b.sagePersist()
	}
	return b.slaRun(p, projW, projB, keepMap, k)
}

// slaKernels picks the sparse kernels of one call: fp8, SageSLA's e4m3 P·V
// mma.sync kernel; tma, SLA's Hopper kernel (sla_sparse_sm90a.cu) instead
// of the mma.sync one; sageTMA, SageSLA's Hopper kernel; linFused, the
// fused linear branch (sla_lin_* kernels) instead of the unfused one;
// prep, sla_prep.cu's block map and quantisation (slaPrepare); persist,
// the Hopper kernel's persistent grid (SparseGridEnv), of grid blocks at
// most when grid > 0 (start-up checks).
type slaKernels struct {
	fp8, tma, sageTMA, linFused, prep, persist bool
	grid                                       int
}

// slaRun runs a checked call with the kernels in k.
func (b *Backend) slaRun(p slaPlan, projW, projB backend.Tensor, keepMap bool, k slaKernels) (backend.Tensor, backend.Tensor) {
	g, B := p.g, p.batches
	if g.L == 0 || B == 0 {
		defer b.enter()()
		return b.newTensor(p.q.dt, p.q.shape), nil
	}
	// bf16 operands (the reference casts q, k, v and proj_l to bf16).
	var temps []backend.Tensor
	defer func() {
		for _, t := range temps {
			b.Free(t)
		}
	}()
	bf := func(t backend.Tensor) *Tensor {
		if t == nil || T(t).dt == tensor.BF16 {
			return tPtr(t)
		}
		c := b.Cast(t, tensor.BF16)
		temps = append(temps, c)
		return T(c)
	}
	q16, k16, v16 := bf(p.q), bf(p.k), bf(p.v)
	w16 := bf(projW)
	var b16 backend.Tensor
	if projB != nil {
		b16 = bf(projB)
	}
	var given *Tensor
	if p.override != nil {
		f := make([]float32, len(p.override))
		for i, x := range p.override {
			if x != 0 {
				f[i] = 1
			}
		}
		gt := b.Upload(tensor.F32, []int{len(f)}, f)
		temps = append(temps, gt)
		given = T(gt)
	}

	L, H, D := g.L, g.Heads, g.D
	qb, kb := g.QBlocks(), g.KBlocks()
	var pr *slaPrepped
	var opre *Tensor
	var ol backend.Tensor
	func() {
		defer b.enter()()
		pr = b.slaPrepare(p, q16, k16, v16, given, keepMap, k.fp8 || k.sageTMA, k.prep)
		if k.linFused {
			ol = b.slaLinearFused(q16, k16, v16, w16, tPtr(b16), B, L, H, D)
		} else {
			opre = b.slaLinear(q16, k16, v16, B, L, H, D)
		}
	}()
	defer pr.free(b)
	lut, cnt := pr.lut, pr.cnt
	if ol == nil {
		ol = b.Linear(b.Reshape(opre, B*L*H, D), w16, b16)
		b.Free(opre)
	}
	defer b.Free(ol)

	defer b.enter()()
	out := b.newTensor(p.q.dt, p.q.shape)
	odt := dtCode(out.dt)
	grid := [3]int{qb, H, B}
	if !p.sage {
		scale := float32(math.Pow(float64(D), -0.5) * 1.4426950408889634)
		if k.tma {
			b.slaSparseTMA(g, B, q16, k16, v16, T(ol), out, lut, cnt, scale, k)
			return out, nilIfNone(pr.bmap)
		}
		smem := (g.BlockQ*(D+8) + 4*g.BlockK*(D+8)) * 2
		b.launch(b.fn("sla_sparse.cu", slaKernelName("sla_sparse", g)), grid, [3]int{g.BlockQ * 2, 1, 1}, smem,
			q16.buf.ptr, k16.buf.ptr, v16.buf.ptr, T(ol).buf.ptr, out.buf.ptr, odt, lut.buf.ptr, cnt.buf.ptr,
			int32(L), int32(H), int32(qb), int32(kb), scale)
		return out, nilIfNone(pr.bmap)
	}
	// SageSLA: int8 Q/K with per-block scales, e4m3 V with per-channel
	// scales (slaPrepare).
	qi, ki, sq, sk, vs := pr.qi, pr.ki, pr.sq, pr.sk, pr.vs
	sm := float32(1/math.Sqrt(float64(D))) * float32(1.44269504088896340736)
	qstr := D + 16 // int8 code rows in shared memory (sla_sage.cuh QSTR)
	qInK := 0
	if g.BlockQ > g.BlockK {
		qInK = g.BlockQ * qstr // else Q shares K's second stage
	}
	if k.fp8 || k.sageTMA {
		// e4m3 bytes channel-major, keys padded to whole blocks.
		Lp := kb * g.BlockK
		v8t := pr.v8t
		if k.sageTMA {
			b.sageSparseTMA(g, B, qi, ki, v8t, sq, sk, vs, T(ol), out, lut, cnt, sm, k)
			return out, nilIfNone(pr.bmap)
		}
		smem := 2*g.BlockK*qstr + 2*D*(g.BlockK+16) + qInK // K codes and Vᵀ bytes, two stages
		b.launch(b.fn("sla_sage_fp8.cu", slaKernelName("sage_fp8", g)), grid, [3]int{g.BlockQ * 2, 1, 1}, smem,
			qi.buf.ptr, ki.buf.ptr, v8t.buf.ptr, int32(Lp), sq.buf.ptr, sk.buf.ptr, vs.buf.ptr, T(ol).buf.ptr, out.buf.ptr, odt,
			lut.buf.ptr, cnt.buf.ptr, int32(L), int32(H), int32(qb), int32(kb), sm)
		return out, nilIfNone(pr.bmap)
	}
	smem := 2*g.BlockK*qstr + 2*g.BlockK*(D+8)*2 + qInK // K codes and e4m3 V (as bf16), two stages
	b.launch(b.fn("sla_sage.cu", slaKernelName("sage_sparse", g)), grid, [3]int{g.BlockQ * 2, 1, 1}, smem,
		qi.buf.ptr, ki.buf.ptr, pr.v8.buf.ptr, sq.buf.ptr, sk.buf.ptr, vs.buf.ptr, T(ol).buf.ptr, out.buf.ptr, odt,
		lut.buf.ptr, cnt.buf.ptr, int32(L), int32(H), int32(qb), int32(kb), sm)
	return out, nilIfNone(pr.bmap)
}

// slaPrepped is what the sparse kernels read besides q, k, v: the block
// lists (lut, cnt; bmap the F32 0/1 map when asked for) and SageSLA's
// operands: int8 codes qi, ki [B, L, H·D] (k smoothed), scales sq [B, H,
// Qb], sk [B, H, Kb], vs [B, H·D], and e4m3 V as bytes v8t [B, H·D, Lp]
// (fp8 and wgmma kernels) or as bf16 values v8 [B, L, H·D].
type slaPrepped struct {
	lut, cnt, bmap              *Tensor
	qi, ki, sq, sk, vs, v8t, v8 *Tensor
}

// free releases everything but bmap, which goes to the caller.
func (s *slaPrepped) free(b *Backend) {
	for _, t := range []*Tensor{s.lut, s.cnt, s.qi, s.ki, s.sq, s.sk, s.vs, s.v8t, s.v8} {
		if t != nil {
			b.Free(t)
		}
	}
}

// slaPrepare computes the block lists and, for SageSLA, the quantised
// operands (e4m3 V as v8t bytes when v8t, else as bf16 values) from the
// original q, k (their dtype decides the map's bf16 roundings) and the bf16
// copies q16, k16, v16: with fused, sla_prep.cu's three kernels, else the
// reference kernels (slaSelect, sage_quant_kernel, sage_vamax_kernel,
// sage_v8t/v8_kernel); both give the same bytes. Caller holds the device.
func (b *Backend) slaPrepare(p slaPlan, q16, k16, v16, given *Tensor, keepMap, v8t, fused bool) *slaPrepped {
	if fused {
		return b.slaPrepFusedRun(p, v16, given, keepMap, v8t)
	}
	g, B := p.g, p.batches
	L, H, D := g.L, g.Heads, g.D
	W := H * D
	qb, kb := g.QBlocks(), g.KBlocks()
	pr := &slaPrepped{}
	var ksum *Tensor
	pr.lut, pr.cnt, pr.bmap, ksum = b.slaSelect(p, given, keepMap)
	defer b.Free(ksum)
	if !p.sage {
		return pr
	}
	// K smoothed by its bf16 mean over the bf16 copy.
	ks16 := ksum
	if !p.bf16Map {
		ks16 = b.colSum(k16, B, L, H, D, true)
		defer b.Free(ks16)
	}
	pr.qi = b.newTensor(tensor.I8, []int{B, L, W})
	pr.ki = b.newTensor(tensor.I8, []int{B, L, W})
	pr.sq = b.newTensor(tensor.F32, []int{B, H, qb})
	pr.sk = b.newTensor(tensor.F32, []int{B, H, kb})
	quant := b.fn("sla_sage.cu", "sage_quant_kernel")
	b.launch(quant, [3]int{qb, H, B}, [3]int{D, 1, 1}, 0, pr.qi.buf.ptr, pr.sq.buf.ptr, q16.buf.ptr, uintptr(0), int32(L), int32(H), int32(g.BlockQ), int32(qb))
	b.launch(quant, [3]int{kb, H, B}, [3]int{D, 1, 1}, 0, pr.ki.buf.ptr, pr.sk.buf.ptr, k16.buf.ptr, ks16.buf.ptr, int32(L), int32(H), int32(g.BlockK), int32(kb))
	vamax := b.newTensor(tensor.I32, []int{B, W})
	defer b.Free(vamax)
	b.memset0(vamax)
	b.launch(b.fn("sla_sage.cu", "sage_vamax_kernel"), [3]int{(L + slaChunk - 1) / slaChunk, H, B}, [3]int{D, 1, 1}, 0,
		vamax.buf.ptr, v16.buf.ptr, int32(L), int32(H), int32(slaChunk))
	pr.vs = b.newTensor(tensor.F32, []int{B, W})
	if v8t {
		// e4m3 bytes channel-major, keys padded to whole blocks.
		Lp := kb * g.BlockK
		pr.v8t = b.newTensor(tensor.I8, []int{B, W, Lp})
		b.launch(b.fn("sla_sage_fp8.cu", "sage_v8t_kernel"), [3]int{Lp / 32, W / 32, B}, [3]int{32, 8, 1}, 0,
			pr.v8t.buf.ptr, pr.vs.buf.ptr, v16.buf.ptr, vamax.buf.ptr, int32(L), int32(Lp), int32(W))
		return pr
	}
	b.sageV8(pr, v16, vamax, B, L, W)
	return pr
}

// sageV8 fills pr.v8 (e4m3 values of v16 as bf16, [B, L, W]) and pr.vs from
// the channel maxima vamax. Caller holds the device.
func (b *Backend) sageV8(pr *slaPrepped, v16, vamax *Tensor, B, L, W int) {
	pr.v8 = b.newTensor(tensor.BF16, []int{B, L, W})
	n := int64(B) * int64(L) * int64(W)
	b.launch(b.fn("sla_sage.cu", "sage_v8_kernel"), b.gridFor(n), block256, 0, pr.v8.buf.ptr, pr.vs.buf.ptr, v16.buf.ptr, vamax.buf.ptr,
		n, int64(L)*int64(W), int32(W))
}

// slaKernelName is the sm_80 kernel's name for g: prefix, "_d64" for head
// dim 64, then the block sizes.
func slaKernelName(prefix string, g sla.Geometry) string {
	if g.D == 64 {
		prefix += "_d64"
	}
	name := prefix + "_q128"
	if g.BlockQ == 64 {
		name = prefix + "_q64"
	}
	if g.BlockK == 64 {
		return name + "_k64"
	}
	return name + "_k128"
}

// tPtr is T for a possibly nil tensor.
func tPtr(t backend.Tensor) *Tensor {
	if t == nil {
		return nil
	}
	return T(t)
}

func nilIfNone(t *Tensor) backend.Tensor {
	if t == nil {
		return nil
	}
	return t
}

// memset0 zeroes t on the stream (caller holds the device).
func (b *Backend) memset0(t *Tensor) {
	if n := t.bytes(); n > 0 {
		b.must("cuMemsetD8Async", call(b.drv.cuMemsetD8Async, t.buf.ptr, 0, uintptr(n), b.stream))
	}
}

// colSum returns the float64 channel sums of x [B, L, H·D] over L,
// [B, H, D] (rounding each value to bf16 first when rnd). Caller holds
// the device.
func (b *Backend) colSum(x *Tensor, B, L, H, D int, rnd bool) *Tensor {
	s := b.newTensor(tensor.F64, []int{B, H, D})
	b.memset0(s)
	b.launch(b.fn("sla_blockmap.cu", "sla_colsum_kernel"), [3]int{(L + slaChunk - 1) / slaChunk, H, B}, [3]int{D, 1, 1}, 0,
		s.buf.ptr, x.buf.ptr, dtCode(x.dt), b2i(rnd), int32(L), int32(H), int32(slaChunk))
	return s
}

func b2i(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

// slaSelect computes the block selection from the original q, k (their
// dtype decides the bf16 roundings) and returns the visiting-order table
// lut [B, H, Qb, Kb], the counts cnt [B, H, Qb], the map (keepMap) and the
// channel sums of k (reused by SageSLA). Caller holds the device.
func (b *Backend) slaSelect(p slaPlan, given *Tensor, keepMap bool) (lut, cnt, bmap, ksum *Tensor) {
	g, B := p.g, p.batches
	L, H, D := g.L, g.Heads, g.D
	qb, kb := g.QBlocks(), g.KBlocks()
	rnd := b2i(p.bf16Map)
	ksum = b.colSum(p.k, B, L, H, D, p.bf16Map)
	pq := b.newTensor(tensor.F32, []int{B, H, qb, D})
	defer b.Free(pq)
	pk := b.newTensor(tensor.F32, []int{B, H, D, kb})
	defer b.Free(pk)
	pool := b.fn("sla_blockmap.cu", "sla_pool_kernel")
	b.launch(pool, [3]int{qb, H, B}, [3]int{D, 1, 1}, 0, pq.buf.ptr, p.q.buf.ptr, dtCode(p.q.dt), rnd, uintptr(0),
		int32(L), int32(H), int32(g.BlockQ), int32(qb), int32(0))
	b.launch(pool, [3]int{kb, H, B}, [3]int{D, 1, 1}, 0, pk.buf.ptr, p.k.buf.ptr, dtCode(p.k.dt), rnd, ksum.buf.ptr,
		int32(L), int32(H), int32(g.BlockK), int32(kb), int32(1))
	lut = b.newTensor(tensor.I32, []int{B, H, qb, kb})
	cnt = b.newTensor(tensor.I32, []int{B, H, qb})
	var mapPtr, givenPtr uintptr
	if keepMap {
		bmap = b.newTensor(tensor.F32, []int{B, H, qb, kb})
		mapPtr = bmap.buf.ptr
	}
	if given != nil {
		givenPtr = given.buf.ptr
	}
	mode := int32(0)
	if p.sage {
		mode = 1
	}
	b.launch(b.fn("sla_blockmap.cu", "sla_select_kernel"), [3]int{qb, H, B}, block256, selectSmem(kb),
		lut.buf.ptr, cnt.buf.ptr, mapPtr, givenPtr, pq.buf.ptr, pk.buf.ptr, rnd, int32(qb), int32(kb), int32(H),
		int32(g.Selected()), mode, int32(D))
	return lut, cnt, bmap, ksum
}

// selectSmem is sla_select_kernel's dynamic shared memory for kb key
// blocks: the scores, the selection flags and the sort keys.
func selectSmem(kb int) int {
	p := 1
	for p < kb {
		p <<= 1
	}
	return kb*8 + p*8
}

// slaLinear runs the linear branch up to proj_l's input: φ(q), φ(k) (channel
// softmax), KVᵀ = Vᵀ·φ(k) and num = φ(q)·KV per head on cuBLASLt (bf16
// results), ks = Σ_L φ(k), and o = num / (1e-5 + φ(q)·ks) as [B, L, H·D]
// bf16 (head dim D). Caller holds the device.
func (b *Backend) slaLinear(q, k, v *Tensor, B, L, H, D int) *Tensor {
	W := H * D
	rows := int64(B) * int64(L) * int64(H)
	fm := b.fn("sla_linear.cu", "sla_featmap_kernel")
	fmGrid := [3]int{int((rows + 7) / 8), 1, 1}
	qf := b.newTensor(tensor.BF16, []int{B, H, L, D})
	defer b.Free(qf)
	b.launch(fm, fmGrid, block256, 0, qf.buf.ptr, q.buf.ptr, rows, int32(L), int32(H), int32(1), int32(D))
	kf := b.newTensor(tensor.BF16, []int{B, L, W})
	b.launch(fm, fmGrid, block256, 0, kf.buf.ptr, k.buf.ptr, rows, int32(L), int32(H), int32(0), int32(D))
	// Kfᵀ and Vᵀ [B, H·D, Lp], zero past L, so per head [D, Lp] rows.
	Lp := (L + 63) / 64 * 64
	tr := b.fn("layout.cu", "transpose_v_kernel")
	trGrid := [3]int{Lp / 32, (W + 31) / 32, B}
	kfT := b.newTensor(tensor.BF16, []int{B, W, Lp})
	defer b.Free(kfT)
	b.launch(tr, trGrid, [3]int{32, 8, 1}, 0, kfT.buf.ptr, kf.buf.ptr, int32(L), int32(Lp), int32(W))
	b.Free(kf)
	vT := b.newTensor(tensor.BF16, []int{B, W, Lp})
	defer b.Free(vT)
	b.launch(tr, trGrid, [3]int{32, 8, 1}, 0, vT.buf.ptr, v.buf.ptr, int32(L), int32(Lp), int32(W))
	ks := b.newTensor(tensor.F32, []int{B, H, D})
	defer b.Free(ks)
	b.launch(b.fn("sla_linear.cu", "sla_rowsum_kernel"), [3]int{B * W, 1, 1}, block256, 0, ks.buf.ptr, kfT.buf.ptr, int32(Lp))

	kv := b.newTensor(tensor.BF16, []int{B, H, D, D}) // KVᵀ: [c2][c1] = Σ_l v[l,c2]·φ(k)[l,c1]
	defer b.Free(kv)
	num := b.newTensor(tensor.BF16, []int{B, H, L, D})
	defer b.Free(num)
	kvKey := gemmKey{m: D, n: D, k: Lp, ab: cudaR16BF, cd: cudaR16BF, bias: -1}
	kvPlan, err := b.plan(kvKey)
	if err != nil {
		backend.FailErr(err)
	}
	numKey := gemmKey{m: L, n: D, k: D, ab: cudaR16BF, cd: cudaR16BF, bias: -1}
	numPlan, err := b.plan(numKey)
	if err != nil {
		backend.FailErr(err)
	}
	for bh := 0; bh < B*H; bh++ {
		tOff := uintptr(bh) * uintptr(D) * uintptr(Lp) * 2 // head bh's rows of Kfᵀ / Vᵀ
		kvOff := uintptr(bh) * uintptr(D) * uintptr(D) * 2
		rowOff := uintptr(bh) * uintptr(L) * uintptr(D) * 2
		b.gemm(kvPlan, kvKey, vT.buf.ptr+tOff, kfT.buf.ptr+tOff, kv.buf.ptr+kvOff, 0)
		b.gemm(numPlan, numKey, qf.buf.ptr+rowOff, kv.buf.ptr+kvOff, num.buf.ptr+rowOff, 0)
	}
	o := b.newTensor(tensor.BF16, []int{B, L, W})
	b.launch(b.fn("sla_linear.cu", "sla_linear_norm_kernel"), fmGrid, block256, 0, o.buf.ptr, num.buf.ptr, qf.buf.ptr, ks.buf.ptr,
		rows, int32(L), int32(H), int32(D))
	return o
}
