package cuda

import (
	"fmt"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/sla"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// SLASparseEnv forces SLA's sparse kernel: "mma" (mma.sync, any sm_80+) or
// "wgmma" (the Hopper TMA/wgmma kernel of sla_sparse_sm90a.cu). Unset: the
// Hopper kernel where it runs and passed its start-up check.
const SLASparseEnv = "TURBODIFFUSION_SLA_SPARSE"

// SageSparseEnv forces SageSLA's sparse kernel: "mma" (the mma.sync
// kernels, P·V as SagePVEnv picks) or "wgmma" (the Hopper kernel: int8 and
// e4m3 wgmma, query blocks 64, key blocks 128, head dim 128). Unset: the
// Hopper kernel where it runs and passed its start-up check.
const SageSparseEnv = "TURBODIFFUSION_SAGE_SPARSE"

// SparseGridEnv picks the grid of both Hopper sparse kernels: "tile" (one
// block per query block) or "persist" (the "_p" kernels: one block per SM
// for SLA, two for SageSLA, each walking query blocks, heads and batches
// with its K/V ring running on across them). Unset: "tile" until the
// persistent kernels are measured faster; "persist" runs them only where
// the Hopper kernel runs and after their own start-up check.
const SparseGridEnv = "TURBODIFFUSION_SPARSE_GRID"

var slaTMAStates, sageTMAStates sync.Map         // *Backend -> *kernelChoice
var slaPersistStates, sagePersistStates sync.Map // *Backend -> *kernelChoice

// sparsePersistGridCap, when positive, caps the persistent sparse kernels'
// grid (tests: every block then walks many items).
var sparsePersistGridCap int

// sparseCheckGrid is the grid of the persistent kernels in their start-up
// check: small, so that each block walks several items of the small
// problems and the ring crosses items.
const sparseCheckGrid = 5

func (b *Backend) slaTMAState() *kernelChoice {
	s, _ := slaTMAStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

func (b *Backend) sageTMAState() *kernelChoice {
	s, _ := sageTMAStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

func (b *Backend) slaPersistState() *kernelChoice {
	s, _ := slaPersistStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

func (b *Backend) sagePersistState() *kernelChoice {
	s, _ := sagePersistStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

// SetSLAGrid picks "tile" or "persist" for SLA's Hopper kernel; ""
// restores the default (SparseGridEnv).
func (b *Backend) SetSLAGrid(k string) { slaPersistStates.Store(b, &kernelChoice{forced: k}) }

// SetSageGrid is SetSLAGrid for SageSLA's Hopper kernel.
func (b *Backend) SetSageGrid(k string) { sagePersistStates.Store(b, &kernelChoice{forced: k}) }

// slaPersistPath and sagePersistPath are SparseGridEnv's choice for
// kernelChoice.decide, per kernel (defaultOn: the persistent grid unless
// SparseGridEnv says "tile").
var (
	slaPersistPath = optionalPath{env: SparseGridEnv, on: "persist", off: "tile", defaultOn: false,
		what: "persistent wgmma kernel", ref: "mma.sync"}
	sagePersistPath = optionalPath{env: SparseGridEnv, on: "persist", off: "tile", defaultOn: false,
		what: "persistent wgmma kernel", ref: "mma.sync"}
)

// slaPersist decides once whether SLA's Hopper kernel runs on the
// persistent grid: only where that kernel runs, and only if the persistent
// one, on a small grid, agrees with the mma.sync kernel (checkSLATMA's
// problems). The caller must not hold the device.
func (b *Backend) slaPersist() bool {
	return b.slaPersistState().decide(slaPersistPath, func() string {
		if !b.slaTMA() {
			return "the Hopper kernel is off " + b.slaTMAState().note
		}
		return ""
	}, func() (float64, error) {
		return b.checkSLATMA(slaKernels{tma: true, persist: true, grid: sparseCheckGrid})
	})
}

// sagePersist is slaPersist for SageSLA's Hopper kernel.
func (b *Backend) sagePersist() bool {
	return b.sagePersistState().decide(sagePersistPath, func() string {
		if !b.sageTMA() {
			return "the Hopper kernel is off " + b.sageTMAState().note
		}
		return ""
	}, func() (float64, error) {
		return b.checkSageTMA(slaKernels{sageTMA: true, persist: true, grid: sparseCheckGrid})
	})
}

// gridNote names the grid of a Hopper kernel for SLASparseKernel and
// SageSparseKernel: "-persist" and its note, or "" with the note why not.
func gridNote(on bool, s *kernelChoice) (suffix, note string) {
	if on {
		return "-persist", ", persistent grid " + s.note
	}
	return "", ", tile grid " + s.note
}

// SageSparseKernel says which SageSLA sparse kernel runs (for the shapes
// the Hopper kernel takes) and why.
func (b *Backend) SageSparseKernel() string {
	if b.sageTMA() {
		suf, note := gridNote(b.sagePersist(), b.sagePersistState())
		return "wgmma" + suf + " (sm_90a, int8 Q·Kᵀ, e4m3 P·V) " + b.sageTMAState().note + note
	}
	return "mma.sync " + b.sageTMAState().note
}

// SetSageSparse picks "mma" or "wgmma" for SageSLA; "" restores the default.
func (b *Backend) SetSageSparse(k string) { sageTMAStates.Store(b, &kernelChoice{forced: k}) }

// sageTMAFits says whether the Hopper SageSLA kernel takes geometry g.
func sageTMAFits(g sla.Geometry) bool { return g.D == 128 && g.BlockQ == 64 && g.BlockK == 128 }

// SLASparseKernel says which SLA sparse kernel runs and why.
func (b *Backend) SLASparseKernel() string {
	if b.slaTMA() {
		suf, note := gridNote(b.slaPersist(), b.slaPersistState())
		return "wgmma" + suf + " (sm_90a, TMA block lists) " + b.slaTMAState().note + note
	}
	return "mma.sync " + b.slaTMAState().note
}

// SetSLASparse picks "mma" or "wgmma" (tests and benchmarks compare them);
// "" restores the default choice.
func (b *Backend) SetSLASparse(k string) { slaTMAStates.Store(b, &kernelChoice{forced: k}) }

// slaTMA decides once whether SLA's sparse branch runs on the Hopper
// kernel: only on sm_90 with tensor maps, and only if it agrees with the
// mma.sync kernel on small problems of every block size and head dim. Any
// failure keeps the mma.sync kernel and says why. The caller must not hold
// the device.
func (b *Backend) slaTMA() bool {
	return b.tmaReady(b.slaTMAState(), SLASparseEnv, func() (float64, error) { return b.checkSLATMA(slaKernels{tma: true}) })
}

// sageTMA is slaTMA for SageSLA's Hopper kernel, checked against the
// mma.sync kernel with e4m3 values on bf16 tensor cores.
func (b *Backend) sageTMA() bool {
	return b.tmaReady(b.sageTMAState(), SageSparseEnv, func() (float64, error) {
		return b.checkSageTMA(slaKernels{sageTMA: true})
	})
}

// tmaReady decides once, for one state, whether a Hopper kernel is used:
// not when env (or the caller) says "mma", only on sm_90 with tensor maps,
// and only if check's worst rel-L2 against the mma.sync kernel is < 1e-2.
func (b *Backend) tmaReady(s *kernelChoice, env string, check func() (float64, error)) bool {
	p := optionalPath{env: env, on: "wgmma", off: "mma", defaultOn: true, what: "wgmma kernel", ref: "mma.sync"}
	return s.decide(p, b.tmaUnavailable, check)
}

// tmaUnavailable says why the TMA/wgmma kernels cannot run here ("" if
// they can).
func (b *Backend) tmaUnavailable() string {
	switch {
	case b.info.Arch != "sm_90":
		return "the TMA/wgmma kernel needs sm_90, device is " + b.info.Arch
	case b.drv.cuTensorMapEncodeTiled == 0:
		return "the driver has no cuTensorMapEncodeTiled"
	}
	return ""
}

// checkSLATMA runs SLA's sparse branch (proj_l = 0, so the output is the
// sparse branch alone) with the kernels kn (a Hopper one) and the mma.sync
// kernel on small random problems, for each head dim and block-size pair,
// one of them with two batch entries and a ragged last block, and returns
// the worst rel-L2.
func (b *Backend) checkSLATMA(kn slaKernels) (worst float64, err error) {
	defer backend.Recover(&err)
	r := newXorshift(4242)
	for _, c := range []struct{ batch, L, heads, d, bq, bk int }{
		{1, 700, 2, 128, 128, 64}, {2, 333, 2, 128, 128, 128}, {1, 520, 2, 128, 64, 64}, {1, 640, 1, 128, 64, 128},
		{1, 700, 2, 64, 128, 64}, {2, 333, 2, 64, 128, 128}, {1, 520, 2, 64, 64, 64}, {1, 640, 1, 64, 64, 128},
	} {
		shape := []int{c.batch, c.L, c.heads * c.d}
		n := c.batch * c.L * c.heads * c.d
		q := b.Upload(tensor.BF16, shape, r.fill(n))
		k := b.Upload(tensor.BF16, shape, r.fill(n))
		v := b.Upload(tensor.BF16, shape, r.fill(n))
		pw := b.Upload(tensor.BF16, []int{c.d, c.d}, make([]float32, c.d*c.d))
		cfg := backend.SLAConfig{Kind: backend.SLA, TopK: 0.5, BlockQ: c.bq, BlockK: c.bk}
		p := slaCheck(q, k, v, c.heads, cfg, pw, nil)
		ref, _ := b.slaRun(p, pw, nil, false, slaKernels{})
		got, _ := b.slaRun(p, pw, nil, false, kn)
		worst = max(worst, checkRelL2(b.Download(got), b.Download(ref)))
		for _, t := range []backend.Tensor{q, k, v, pw, ref, got} {
			b.Free(t)
		}
	}
	return worst, nil
}

// slaSparseTMA runs the Hopper sparse kernel: out = bf16(bf16(sparse) + ol)
// for q, k, v [B, L, H·D] bf16 with the block lists lut/cnt, on the grid
// kn picks (persist, grid). Caller holds the device.
func (b *Backend) slaSparseTMA(g sla.Geometry, B int, q, k, v, ol, out, lut, cnt *Tensor, scale float32, kn slaKernels) {
	L, H, D := g.L, g.Heads, g.D
	W := int64(H * D)
	rows := int64(B * L)
	tmQ := b.encodeTensorMap("SLA q", q.buf.ptr, tensorMapBF16(W, rows, W*2, 64, g.BlockQ, tmapSwizzle128))
	tmK := b.encodeTensorMap("SLA k", k.buf.ptr, tensorMapBF16(W, rows, W*2, 64, g.BlockK, tmapSwizzle128))
	tmV := b.encodeTensorMap("SLA v", v.buf.ptr, tensorMapBF16(W, rows, W*2, 64, g.BlockK, tmapSwizzle128))
	name := fmt.Sprintf("sla_tma_d%d_q%d_k%d", D, g.BlockQ, g.BlockK)
	if kn.persist {
		// One block per SM: a block's registers (168 or 240 per thread)
		// or shared memory leave no room for a second.
		grid := b.sparsePersistGrid(g.QBlocks()*H*B, 1, kn.grid)
		b.launch(b.fn("sla_sparse_sm90a.cu", name+"_p"),
			[3]int{grid, 1, 1}, [3]int{g.BlockQ*2 + 128, 1, 1}, slaTMASmem(g.BlockQ, D)+8,
			tmQ, tmK, tmV, ol.buf.ptr, out.buf.ptr, dtCode(out.dt), lut.buf.ptr, cnt.buf.ptr,
			int32(L), int32(H), int32(B), int32(g.QBlocks()), int32(g.KBlocks()), scale)
		return
	}
	b.launch(b.fn("sla_sparse_sm90a.cu", name),
		[3]int{g.QBlocks(), H, B}, [3]int{g.BlockQ*2 + 128, 1, 1}, slaTMASmem(g.BlockQ, D),
		tmQ, tmK, tmV, ol.buf.ptr, out.buf.ptr, dtCode(out.dt), lut.buf.ptr, cnt.buf.ptr,
		int32(L), int32(H), int32(g.QBlocks()), int32(g.KBlocks()), scale)
}

// sparsePersistGrid is a persistent sparse kernel's grid for items work
// items: perSM blocks on each SM, at most one per item, at most cap (when
// positive) or sparsePersistGridCap.
func (b *Backend) sparsePersistGrid(items, perSM, cap int) int {
	grid := min(items, max(b.info.SMs, 1)*perSM)
	for _, c := range []int{cap, sparsePersistGridCap} {
		if c > 0 {
			grid = min(grid, c)
		}
	}
	return max(grid, 1)
}

// slaTMAStages and slaTMAStageKeys are the Hopper kernels' K/V ring (NS and
// BN in sla_sparse_tma and sage_sparse_tma, from the same constants).
const (
	slaTMAStages    = kernels.SLATMAStages
	slaTMAStageKeys = kernels.SLATMAStageKeys
)

// slaTMASmem is the Hopper kernel's dynamic shared memory: the Q tile, the
// K and V stages, kernels.SmemAlign bytes to align the tiles, and the
// mbarriers (the persistent kernels add 8 bytes: a second Q barrier).
func slaTMASmem(bq, d int) int {
	return (bq*d+2*slaTMAStages*slaTMAStageKeys*d)*2 + kernels.SmemAlign + 8*(2*slaTMAStages+1)
}

// checkSageTMA runs SageSLA's sparse branch (proj_l = 0) with the kernels
// kn (a Hopper one) and with the mma.sync kernel on e4m3 values (bf16
// tensor cores, exact products) on small random problems, one with two
// batch entries and a ragged last block, and returns the worst rel-L2.
func (b *Backend) checkSageTMA(kn slaKernels) (worst float64, err error) {
	defer backend.Recover(&err)
	r := newXorshift(2424)
	for _, c := range []struct{ batch, L, heads int }{{1, 700, 2}, {2, 333, 2}, {1, 1024, 1}} {
		const d = 128
		shape := []int{c.batch, c.L, c.heads * d}
		n := c.batch * c.L * c.heads * d
		q := b.Upload(tensor.BF16, shape, r.fill(n))
		k := b.Upload(tensor.BF16, shape, r.fill(n))
		v := b.Upload(tensor.BF16, shape, r.fill(n))
		pw := b.Upload(tensor.BF16, []int{d, d}, make([]float32, d*d))
		cfg := backend.SLAConfig{Kind: backend.SageSLA, TopK: 0.5, BlockQ: 64, BlockK: 128}
		p := slaCheck(q, k, v, c.heads, cfg, pw, nil)
		ref, _ := b.slaRun(p, pw, nil, false, slaKernels{})
		got, _ := b.slaRun(p, pw, nil, false, kn)
		worst = max(worst, checkRelL2(b.Download(got), b.Download(ref)))
		for _, t := range []backend.Tensor{q, k, v, pw, ref, got} {
			b.Free(t)
		}
	}
	return worst, nil
}

// sageSparseTMA runs the Hopper SageSLA kernel: int8 codes qi, ki [B, L,
// H·128] with scales sq [B, H, Qb], sk [B, H, Kb]; v8t [B, H·128, Lp]
// e4m3 bytes (sage_v8t_kernel) with scales vs [B, H·128], on the grid kn
// picks (persist, grid). Caller holds the device.
func (b *Backend) sageSparseTMA(g sla.Geometry, B int, qi, ki, v8t, sq, sk, vs, ol, out, lut, cnt *Tensor, sm float32, kn slaKernels) {
	L, H, D := g.L, g.Heads, g.D
	W, Lp := int64(H*D), int64(g.KBlocks()*g.BlockK)
	rows := int64(B * L)
	tmQ := b.encodeTensorMap("SageSLA q codes", qi.buf.ptr, tensorMapRows(tmapU8, 1, rows, W, g.BlockQ, D, tmapSwizzle128))
	tmK := b.encodeTensorMap("SageSLA k codes", ki.buf.ptr, tensorMapRows(tmapU8, 1, rows, W, g.BlockK, D, tmapSwizzle128))
	tmV := b.encodeTensorMap("SageSLA e4m3 Vᵀ", v8t.buf.ptr, tensorMapRows(tmapU8, 1, int64(B)*W, Lp, D, g.BlockK, tmapSwizzle128))
	if kn.persist {
		// Two blocks per SM, as __launch_bounds__(256, 2) and the shared
		// memory (2 × ~105 KiB) allow.
		grid := b.sparsePersistGrid(g.QBlocks()*H*B, 2, kn.grid)
		b.launch(b.fn("sla_sparse_sm90a.cu", "sage_tma_q64_k128_p"), [3]int{grid, 1, 1}, [3]int{256, 1, 1}, sageTMASmem+8,
			tmQ, tmK, tmV, sq.buf.ptr, sk.buf.ptr, vs.buf.ptr, ol.buf.ptr, out.buf.ptr, dtCode(out.dt), lut.buf.ptr, cnt.buf.ptr,
			int32(L), int32(H), int32(B), int32(g.QBlocks()), int32(g.KBlocks()), sm)
		return
	}
	b.launch(b.fn("sla_sparse_sm90a.cu", "sage_tma_q64_k128"), [3]int{g.QBlocks(), H, B}, [3]int{256, 1, 1}, sageTMASmem,
		tmQ, tmK, tmV, sq.buf.ptr, sk.buf.ptr, vs.buf.ptr, ol.buf.ptr, out.buf.ptr, dtCode(out.dt), lut.buf.ptr, cnt.buf.ptr,
		int32(L), int32(H), int32(g.QBlocks()), int32(g.KBlocks()), sm)
}

// sageTMASmem is the Hopper SageSLA kernel's dynamic shared memory: Q codes
// [64][128], three stages of K codes [128][128] and e4m3 Vᵀ [128][128],
// kernels.SmemAlign bytes of alignment and the mbarriers (sage_sparse_tma).
const sageTMASmem = 64*128 + slaTMAStages*2*slaTMAStageKeys*128 + kernels.SmemAlign + 8*(2*slaTMAStages+1)
