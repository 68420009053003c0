package cuda

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// SLAPrepEnv picks how SLA/SageSLA compute what the sparse kernel reads
// besides q, k, v: "unfused" (the reference: sla_blockmap.cu's column sum,
// two pools and selection, then sla_sage.cu's quantisers, V maxima and the
// e4m3 V copy; q is read 3 times, k 4, v 2) or "fused" (sla_prep.cu: one
// pass over k and v for the column sums and V's maxima, one over q, k, v for
// the pooled means, int8 codes, scales and e4m3 Vᵀ, and a top-k kernel that
// scores 8 query blocks per CTA). Both give the same bytes. Unset: fused
// where it passes its start-up check (identical bytes on small problems),
// as "fused" does; it measured faster on an H200 (1.3B 480p, per layer:
// SageSLA 0.55 ms against 0.81, SLA 0.28 against 0.32; SageSLA + W8A8
// forward 215.1 ms against 224.5).
const SLAPrepEnv = "TURBODIFFUSION_SLA_PREP"

var slaPrepStates sync.Map // *Backend -> *kernelChoice

func (b *Backend) slaPrepState() *kernelChoice {
	s, _ := slaPrepStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

// SLAPrepKernel says how the block map and quantisation run and why.
func (b *Backend) SLAPrepKernel() string {
	if b.slaPrepFused() {
		return "fused " + b.slaPrepState().note
	}
	return "unfused " + b.slaPrepState().note
}

// SetSLAPrep picks "unfused" or "fused"; "" restores the default.
func (b *Backend) SetSLAPrep(k string) { slaPrepStates.Store(b, &kernelChoice{forced: k}) }

// slaPrepFused decides once whether slaPrepare runs the fused kernels:
// unless "unfused" is asked for, and only if they reproduce the reference
// kernels' bytes on small problems. The caller must not hold the device.
func (b *Backend) slaPrepFused() bool {
	p := optionalPath{env: SLAPrepEnv, on: "fused", off: "unfused", defaultOn: true, what: "fused kernels", ref: "unfused (identical bytes)"}
	return b.slaPrepState().decide(p, nil, func() (float64, error) { return 0, b.checkSLAPrep() })
}

// checkSLAPrep compares the fused and reference preparation on small
// random problems (SLA and SageSLA, both V layouts, both head dims, two
// batch entries, a ragged last block) and says what differs, if anything.
func (b *Backend) checkSLAPrep() (err error) {
	defer backend.Recover(&err)
	r := newXorshift(5151)
	for _, c := range []struct {
		batch, L, heads, d int
		kind               backend.AttentionKind
		v8t                bool
	}{
		{2, 700, 2, 128, backend.SLA, false}, {2, 700, 2, 128, backend.SageSLA, true}, {1, 1333, 3, 128, backend.SageSLA, false},
		{2, 450, 2, 64, backend.SLA, false}, {1, 1040, 2, 64, backend.SageSLA, true},
	} {
		shape := []int{c.batch, c.L, c.heads * c.d}
		n := c.batch * c.L * c.heads * c.d
		q := b.Upload(tensor.BF16, shape, r.fill(n))
		k := b.Upload(tensor.BF16, shape, r.fill(n))
		v := b.Upload(tensor.BF16, shape, r.fill(n))
		pw := b.Upload(tensor.BF16, []int{c.d, c.d}, make([]float32, c.d*c.d))
		p := slaCheck(q, k, v, c.heads, backend.SLAConfig{Kind: c.kind, TopK: 0.3}, pw, nil)
		diff := b.slaPrepCompare(p, nil, c.v8t)
		for _, t := range []backend.Tensor{q, k, v, pw} {
			b.Free(t)
		}
		if diff != "" {
			return fmt.Errorf("%v L=%d d=%d: %s", c.kind, c.L, c.d, diff)
		}
	}
	return nil
}

// slaPrepCompare runs slaPrepare both ways for a checked call and returns
// "" when every output is byte-identical (the look-up table up to each
// row's count), else what differs first. The caller must not hold the
// device.
func (b *Backend) slaPrepCompare(p slaPlan, given *Tensor, v8t bool) string {
	run := func(fused bool) (*slaPrepped, []backend.Tensor) {
		var temps []backend.Tensor
		bf := func(t *Tensor) *Tensor {
			if t.dt == tensor.BF16 {
				return t
			}
			c := b.Cast(t, tensor.BF16)
			temps = append(temps, c)
			return T(c)
		}
		q16, k16, v16 := bf(p.q), bf(p.k), bf(p.v)
		defer b.enter()()
		return b.slaPrepare(p, q16, k16, v16, given, true, v8t, fused), temps
	}
	ref, rt := run(false)
	got, gt := run(true)
	defer func() {
		for _, x := range []*slaPrepped{ref, got} {
			x.free(b)
			b.Free(x.bmap)
		}
		for _, t := range append(rt, gt...) {
			b.Free(t)
		}
	}()
	cntR, cntG := b.rawBytes(ref.cnt), b.rawBytes(got.cnt)
	if !bytes.Equal(cntR, cntG) {
		return "block counts differ" + firstDiff(cntR, cntG, 4)
	}
	// lut rows are valid up to their count only.
	kb := p.g.KBlocks()
	lr, lg := b.rawBytes(ref.lut), b.rawBytes(got.lut)
	for row := 0; row < len(cntR)/4; row++ {
		c := int(binary.LittleEndian.Uint32(cntR[row*4:]))
		if c < 0 || c > kb {
			return fmt.Sprintf("row %d: count %d out of [0, %d]", row, c, kb)
		}
		a, z := row*kb*4, (row*kb+c)*4
		if !bytes.Equal(lr[a:z], lg[a:z]) {
			return fmt.Sprintf("look-up table row %d differs", row)
		}
	}
	for _, x := range []struct {
		name   string
		r, g   *Tensor
		elSize int
	}{
		{"block map", ref.bmap, got.bmap, 4}, {"q codes", ref.qi, got.qi, 1}, {"k codes", ref.ki, got.ki, 1},
		{"q scales", ref.sq, got.sq, 4}, {"k scales", ref.sk, got.sk, 4}, {"v scales", ref.vs, got.vs, 4},
		{"e4m3 Vᵀ", ref.v8t, got.v8t, 1}, {"e4m3 V", ref.v8, got.v8, 2},
	} {
		if (x.r == nil) != (x.g == nil) {
			return x.name + ": present on one path only"
		}
		if x.r == nil {
			continue
		}
		rb, gb := b.rawBytes(x.r), b.rawBytes(x.g)
		if !bytes.Equal(rb, gb) {
			return x.name + " differ" + firstDiff(rb, gb, x.elSize)
		}
	}
	return ""
}

// firstDiff says where two equal-length byte strings first differ, in
// elements of es bytes.
func firstDiff(a, b []byte, es int) string {
	if len(a) != len(b) {
		return fmt.Sprintf(" (lengths %d vs %d)", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			e := i / es * es
			return fmt.Sprintf(" (element %d: % x vs % x)", i/es, a[e:e+es], b[e:e+es])
		}
	}
	return ""
}

// rawBytes copies t back as bytes (waits for queued work). The caller must
// not hold the device.
func (b *Backend) rawBytes(t *Tensor) []byte {
	defer b.enter()()
	out := make([]byte, t.bytes())
	if len(out) == 0 {
		return out
	}
	b.must("cuMemcpyDtoHAsync", call(b.drv.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&out[0])), t.buf.ptr, uintptr(len(out)), b.stream))
	b.must("cuStreamSynchronize", call(b.drv.cuStreamSynchronize, b.stream))
	return out
}

// topkRows is how many query blocks one sla_topk_kernel CTA scores (one
// warp each; the kernel holds at most 8).
const topkRows = 8

// slaPrepFusedRun is slaPrepare with sla_prep.cu: the column sums of k (and
// V's channel maxima), then one CTA per query or key block and head for the
// pooled means, codes, scales and e4m3 Vᵀ, then the top-k. q and k are
// read in their own dtype (the quantisers round to bf16, as the bf16 copies
// Cast makes); v16 is the bf16 copy of v. Caller holds the device.
func (b *Backend) slaPrepFusedRun(p slaPlan, v16, given *Tensor, keepMap, v8t bool) *slaPrepped {
	g, B := p.g, p.batches
	L, H, D := g.L, g.Heads, g.D
	W := H * D
	qb, kb := g.QBlocks(), g.KBlocks()
	rnd := b2i(p.bf16Map)
	pr := &slaPrepped{}

	ksum := b.newTensor(tensor.F64, []int{B, H, D})
	defer b.Free(ksum)
	b.memset0(ksum)
	ks16, vamax := ksum, (*Tensor)(nil)
	var ks16Ptr, vamaxPtr, vPtr uintptr
	if p.sage {
		if !p.bf16Map {
			ks16 = b.newTensor(tensor.F64, []int{B, H, D})
			defer b.Free(ks16)
			b.memset0(ks16)
			ks16Ptr = ks16.buf.ptr
		}
		vamax = b.newTensor(tensor.I32, []int{B, W})
		defer b.Free(vamax)
		b.memset0(vamax)
		vamaxPtr, vPtr = vamax.buf.ptr, v16.buf.ptr
	}
	b.launch(b.fn("sla_prep.cu", fmt.Sprintf("sla_prep_stats_d%d", D)), [3]int{(L + slaChunk - 1) / slaChunk, H, B}, block256, 0,
		ksum.buf.ptr, ks16Ptr, vamaxPtr, p.k.buf.ptr, dtCode(p.k.dt), rnd, vPtr, int32(L), int32(H), int32(slaChunk))

	pq := b.newTensor(tensor.F32, []int{B, H, qb, D})
	defer b.Free(pq)
	pk := b.newTensor(tensor.F32, []int{B, H, D, kb})
	defer b.Free(pk)
	var qiP, sqP, kiP, skP, v8tP, vsP uintptr
	Lp := kb * g.BlockK
	if p.sage {
		pr.qi = b.newTensor(tensor.I8, []int{B, L, W})
		pr.ki = b.newTensor(tensor.I8, []int{B, L, W})
		pr.sq = b.newTensor(tensor.F32, []int{B, H, qb})
		pr.sk = b.newTensor(tensor.F32, []int{B, H, kb})
		pr.vs = b.newTensor(tensor.F32, []int{B, W})
		qiP, sqP, kiP, skP, vsP = pr.qi.buf.ptr, pr.sq.buf.ptr, pr.ki.buf.ptr, pr.sk.buf.ptr, pr.vs.buf.ptr
		if v8t {
			pr.v8t = b.newTensor(tensor.I8, []int{B, W, Lp})
			v8tP = pr.v8t.buf.ptr
		}
	}
	b.launch(b.fn("sla_prep.cu", fmt.Sprintf("sla_prep_d%d", D)), [3]int{qb + kb, H, B}, block256, 0,
		pq.buf.ptr, pk.buf.ptr, qiP, sqP, kiP, skP, v8tP, vsP,
		p.q.buf.ptr, dtCode(p.q.dt), p.k.buf.ptr, dtCode(p.k.dt), rnd, ksum.buf.ptr, ks16.buf.ptr,
		vPtr, vamaxPtr, int32(L), int32(H), int32(g.BlockQ), int32(g.BlockK), int32(qb), int32(kb), int32(Lp))
	if p.sage && !v8t {
		b.sageV8(pr, v16, vamax, B, L, W)
	}

	pr.lut = b.newTensor(tensor.I32, []int{B, H, qb, kb})
	pr.cnt = b.newTensor(tensor.I32, []int{B, H, qb})
	var mapPtr, givenPtr uintptr
	if keepMap {
		pr.bmap = b.newTensor(tensor.F32, []int{B, H, qb, kb})
		mapPtr = pr.bmap.buf.ptr
	}
	if given != nil {
		givenPtr = given.buf.ptr
	}
	mode := int32(0)
	if p.sage {
		mode = 1
	}
	rows, smem := topkRows, 0
	for ; ; rows-- {
		smem = topkSmem(rows, kb)
		if smem <= 96<<10 || rows == 1 {
			break
		}
	}
	if smem > 200<<10 {
		backend.Fail("cuda: SparseLinearAttention: %d key blocks need %d KiB of shared memory in sla_topk_kernel (at most 200)", kb, smem>>10)
	}
	b.launch(b.fn("sla_prep.cu", "sla_topk_kernel"), [3]int{(qb + rows - 1) / rows, H, B}, block256, smem,
		pr.lut.buf.ptr, pr.cnt.buf.ptr, mapPtr, givenPtr, pq.buf.ptr, pk.buf.ptr, rnd, int32(qb), int32(kb), int32(H),
		int32(g.Selected()), mode, int32(D), int32(rows))
	return pr
}

// topkSmem is sla_topk_kernel's dynamic shared memory for rows query blocks
// of kb key blocks: the pooled q rows (8·128 doubles), the scores and the
// selection flags.
func topkSmem(rows, kb int) int { return 8*128*8 + rows*kb*5 }
