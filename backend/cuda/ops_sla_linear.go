package cuda

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// SLALinearEnv forces SLA's linear branch: "unfused" (feature maps,
// transposes, per-head cuBLASLt GEMMs, the normalisation, then proj_l as a
// Linear: the reference the tests compare against) or "fused"
// (kernels/sla_linear.cu's sla_lin_*: KᵀV and the k-sum per chunk of rows,
// their ordered sum, then φ(q)·KV, the normalisation and proj_l in one
// kernel), "fused:mma" / "fused:wgmma" forcing the GEMM kind of the fused
// kernels (wgmma: sm_90). Unset: fused where it passes its start-up check
// against the unfused path, else unfused (the note says why). Measured on
// an H200 (480p, 12 heads of 128, the branch with proj_l alone): fused
// 0.35 ms on wgmma, 0.40 on mma.sync, unfused 0.92 ms; in a 1.3B SLA
// forward the fused kernels take 0.38 ms per layer (docs/PERF.md).
const SLALinearEnv = "TURBODIFFUSION_SLA_LINEAR"

var slaLinStates sync.Map // *Backend -> *kernelChoice

func (b *Backend) slaLinState() *kernelChoice {
	s, _ := slaLinStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

// SLALinearKernel says which SLA linear branch runs and why.
func (b *Backend) SLALinearKernel() string {
	if b.slaLinFused() {
		return fmt.Sprintf("fused %s [sla_lin_kv %v, sla_lin_out %v at head dim 128]", b.slaLinState().note, b.slaLinKVPick(), b.slaLinOutPick(128))
	}
	return "unfused " + b.slaLinState().note
}

// SetSLALinear picks "unfused", "fused", "fused:mma" or "fused:wgmma";
// "" restores the default.
func (b *Backend) SetSLALinear(k string) { slaLinStates.Store(b, &kernelChoice{forced: k}) }

// slaLinFused decides once whether the fused linear branch runs: unless
// the unfused one is asked for, and only if its proj_l output agrees with
// the unfused path's on small problems of both head dims (a failure keeps
// the unfused path and says why). The caller must not hold the device.
func (b *Backend) slaLinFused() bool {
	s := b.slaLinState()
	s.mu.Lock()
	checked, on := s.checked, s.on
	s.mu.Unlock()
	if checked {
		return on
	}
	// "fused:mma" / "fused:wgmma" are the fused path with its GEMM kind
	// forced (slaLinKVPick, slaLinOutPick read it).
	want := s.forced
	if want == "" {
		want = os.Getenv(SLALinearEnv)
	}
	p := optionalPath{env: SLALinearEnv, on: "fused", off: "unfused", defaultOn: true, what: "fused kernels", ref: "unfused"}
	gemm := ""
	if k, ok := strings.CutPrefix(want, "fused:"); ok {
		p.on, gemm = want, k
	}
	slaLinGemms.Store(b, gemm)
	unavailable := func() string {
		switch {
		case gemm != "" && gemm != "mma" && gemm != "wgmma":
			return fmt.Sprintf("unknown %s %q; want fused, fused:mma, fused:wgmma or unfused", SLALinearEnv, want)
		case gemm == "wgmma" && b.info.Arch != "sm_90":
			return want + " needs sm_90, device is " + b.info.Arch
		}
		return ""
	}
	return s.decide(p, unavailable, b.checkSLALinear)
}

// checkSLALinear computes the linear branch's proj_l output both ways on
// random problems (each head dim, two batch entries, ragged row counts)
// and returns the worst rel-L2.
func (b *Backend) checkSLALinear() (worst float64, err error) {
	defer backend.Recover(&err)
	r := newXorshift(999)
	for _, c := range []struct{ batch, L, heads, d int }{{1, 700, 2, 128}, {2, 333, 3, 128}, {1, 900, 2, 64}, {2, 250, 1, 64}} {
		n := c.batch * c.L * c.heads * c.d
		shape := []int{c.batch, c.L, c.heads * c.d}
		q := b.Upload(tensor.BF16, shape, r.fill(n))
		k := b.Upload(tensor.BF16, shape, r.fill(n))
		v := b.Upload(tensor.BF16, shape, r.fill(n))
		w := r.fill(c.d * c.d)
		for i := range w {
			w[i] /= float32(math.Sqrt(float64(c.d)))
		}
		pw := b.Upload(tensor.BF16, []int{c.d, c.d}, w)
		pb := b.Upload(tensor.BF16, []int{c.d}, r.fill(c.d))
		var fused, opre *Tensor
		func() {
			defer b.enter()()
			fused = b.slaLinearFused(T(q), T(k), T(v), T(pw), T(pb), c.batch, c.L, c.heads, c.d)
			opre = b.slaLinear(T(q), T(k), T(v), c.batch, c.L, c.heads, c.d)
		}()
		ref := b.Linear(b.Reshape(opre, c.batch*c.L*c.heads, c.d), pw, pb)
		worst = max(worst, checkRelL2(b.Download(fused), b.Download(ref)))
		for _, t := range []backend.Tensor{q, k, v, pw, pb, fused, opre, ref} {
			b.Free(t)
		}
	}
	return worst, nil
}

// Tile and stage counts of the fused kernels (kernels/sla_linear.cu's
// SLA_LIN_* defines): shared memory is sized from them.
const (
	slaLinKVRows   = 64
	slaLinKVStages = 3
)

// slaLinOutShape is one build of sla_lin_out: warps per block, cp.async
// stages, m-tiles of 16 query rows per warp (a tile has 16·mt·warps rows;
// two m-tiles halve the shared-memory reads of KVᵀ and W per row), and wg
// for the wgmma builds (sla_linear_sm90a.cu, sm_90 only, mt 1, whole
// warpgroups), whose warpgroup reads those operands once per 64 rows.
type slaLinOutShape struct {
	warps, stages, mt int
	wg                bool
}

// rows is the build's tile height.
func (s slaLinOutShape) rows() int { return 16 * s.mt * s.warps }

// module and name are the build's kernel for head dim d.
func (s slaLinOutShape) module() string {
	if s.wg {
		return "sla_linear_sm90a.cu"
	}
	return "sla_linear.cu"
}

func (s slaLinOutShape) name(d int) string {
	if s.wg {
		return fmt.Sprintf("sla_lin_out_wg_d%d_w%d_s%d", d, s.warps, s.stages)
	}
	return fmt.Sprintf("sla_lin_out_d%d_w%d_s%d_m%d", d, s.warps, s.stages, s.mt)
}

// String names the build in test and benchmark names.
func (s slaLinOutShape) String() string {
	if s.wg {
		return fmt.Sprintf("wgmma-w%ds%d", s.warps, s.stages)
	}
	return fmt.Sprintf("mma-w%ds%dm%d", s.warps, s.stages, s.mt)
}

// smem is the build's dynamic shared memory for head dim d: KVᵀ and W (the
// wgmma builds' swizzled tiles need no padding but 1024-byte alignment),
// the stages of q tiles, the row denominators and the bias.
func (s slaLinOutShape) smem(d int) int {
	ops := 2 * d * (d + 8) * 2
	if s.wg {
		ops = kernels.SmemAlign - 16 + 2*d*d*2
	}
	return ops + s.stages*s.rows()*(d+8)*2 + s.rows()*4 + d*4
}

// fits says whether the build runs on b's device.
func (s slaLinOutShape) fits(b *Backend, d int) bool {
	return s.smem(d) <= b.info.MaxSmemOptin && (!s.wg || b.info.Arch == "sm_90")
}

// slaLinOutShapes are the builds per head dim. On an H200 (480p branch,
// head dim 128, with sla_lin_kv on mma.sync): wgmma with 4 warps and 2
// stages 0.352 ms, with 8 warps and 3 stages 0.362, every mma.sync build
// 0.40; head dim 64 is untimed, so mma.sync first there. Two m-tiles per
// warp measured 0.75 against 0.50 ms in an earlier version (more code than
// the instruction cache holds, spills) and were dropped. (kernels/sla_linear.cu's
// SLA_LIN_OUT and sla_linear_sm90a.cu's SLA_LIN_OUT_WG lists), preferred
// first; the first that fits runs.
var slaLinOutShapes = map[int][]slaLinOutShape{
	128: {{4, 2, 1, true}, {8, 3, 1, true}, {8, 3, 1, false}, {4, 2, 1, false}, {8, 2, 1, false}},
	64:  {{8, 3, 1, false}, {8, 3, 1, true}},
}

// slaLinOutForce, when set, picks the build (the benchmark compares them).
var slaLinOutForce slaLinOutShape

// slaLinKVShape is one build of step 1 (sla_lin_kv): mma.sync, or wgmma
// (sla_linear_sm90a.cu, sm_90 only: a warpgroup per 64 rows of KV, the v
// tiles read in place as its B operand).
type slaLinKVShape struct{ wg bool }

func (s slaLinKVShape) module() string {
	if s.wg {
		return "sla_linear_sm90a.cu"
	}
	return "sla_linear.cu"
}

func (s slaLinKVShape) name(d int) string {
	if s.wg {
		return fmt.Sprintf("sla_lin_kv_wg_d%d", d)
	}
	return fmt.Sprintf("sla_lin_kv_d%d", d)
}

func (s slaLinKVShape) String() string {
	if s.wg {
		return "wgmma"
	}
	return "mma"
}

// threads: 256 for mma.sync, a warpgroup per 64 rows of KV for wgmma.
func (s slaLinKVShape) threads(d int) int {
	if s.wg {
		return 128 * d / 64
	}
	return 256
}

// smem: the stages of k and v tiles (v swizzled and 1024-byte aligned for
// wgmma, padded rows otherwise).
func (s slaLinKVShape) smem(d int) int {
	if s.wg {
		return kernels.SmemAlign - 16 + slaLinKVStages*slaLinKVRows*(d+(d+8))*2
	}
	return 2 * slaLinKVStages * slaLinKVRows * (d + 8) * 2
}

// slaLinKVWG says whether step 1 runs on wgmma where it can (sm_90: on an
// H200 steps 1-2 took 0.116 ms at 480p against 0.137 on mma.sync);
// slaLinKVForce, when set, picks the build (tests and benchmarks).
var (
	slaLinKVWG    = true
	slaLinKVForce *slaLinKVShape
)

// slaLinGemms holds each backend's choice of GEMM kind for the fused
// kernels ("mma", "wgmma", or "" for the defaults), from SLALinearEnv's
// "fused:<kind>".
var slaLinGemms sync.Map // *Backend -> string

func (b *Backend) slaLinGemm() string {
	g, _ := slaLinGemms.Load(b)
	s, _ := g.(string)
	return s
}

func (b *Backend) slaLinKVPick() slaLinKVShape {
	if slaLinKVForce != nil {
		return *slaLinKVForce
	}
	switch b.slaLinGemm() {
	case "mma":
		return slaLinKVShape{}
	case "wgmma":
		return slaLinKVShape{wg: true}
	}
	return slaLinKVShape{wg: slaLinKVWG && b.info.Arch == "sm_90"}
}

// slaLinOutPick is the sla_lin_out build that runs for head dim d: the
// forced one where it is a build of d, else the first of slaLinOutShapes
// that fits (zero if none). (A build forced for one head dim must not leak
// into another: the start-up check runs both head dims, and the 4-warp
// wgmma build exists only for 128.)
func (b *Backend) slaLinOutPick(d int) slaLinOutShape {
	if slaLinOutForce.warps != 0 && slices.Contains(slaLinOutShapes[d], slaLinOutForce) {
		return slaLinOutForce
	}
	gemm := b.slaLinGemm()
	for _, sh := range slaLinOutShapes[d] {
		if sh.fits(b, d) && (gemm == "" || sh.wg == (gemm == "wgmma")) {
			return sh
		}
	}
	return slaLinOutShape{}
}

// slaLinSpread, when > 0, caps the blocks per (batch, head) of the fused
// kernels, so that tests on small problems run many tiles per block through
// the cp.async rings as the real shapes do. 0: fill the device.
var slaLinSpread = 0

// slaLinearFused is the linear branch with proj_l, o_l = proj_l(φ(q)·KV /
// (1e-5 + φ(q)·ks)) for bf16 q, k, v [B, L, H·D], weight w [D, D] and bias
// (nil for none), as [B·L·H, D] bf16 (what Linear returns on the unfused
// path), in three kernels: partial KᵀV and ks sums per chunk of rows, their
// ordered sum, and φ(q)·KV with the normalisation and proj_l. Caller holds
// the device.
func (b *Backend) slaLinearFused(q, k, v, w, bias *Tensor, B, L, H, D int) *Tensor {
	kvt, ks := b.slaLinearState(k, v, B, L, H, D)
	defer b.Free(kvt)
	defer b.Free(ks)
	return b.slaLinearOut(q, kvt, ks, w, bias, B, L, H, D)
}

// slaLinearState runs steps 1 and 2 of the fused branch: KVᵀ [B, H, D, D]
// bf16 and ks [B, H, D] (bf16 values as float32). Caller holds the device.
func (b *Backend) slaLinearState(k, v *Tensor, B, L, H, D int) (kvt, ks *Tensor) {
	sms, optin := max(b.info.SMs, 1), b.info.MaxSmemOptin
	// Step 1: enough row chunks per head for every multiprocessor to hold
	// as many blocks as fit (two on sm_90), each a multiple of 64 rows.
	kb := b.slaLinKVPick()
	kvSmem := kb.smem(D)
	occ := max(1, min(2, optin/(kvSmem+1024)))
	chunks := max(1, (occ*sms+B*H-1)/(B*H))
	if slaLinSpread > 0 {
		chunks = min(chunks, slaLinSpread)
	}
	rows := ((L+chunks-1)/chunks + slaLinKVRows - 1) / slaLinKVRows * slaLinKVRows
	chunks = (L + rows - 1) / rows
	kvpart := b.newTensor(tensor.F32, []int{B, H, chunks, D, D})
	defer b.Free(kvpart)
	kspart := b.newTensor(tensor.F64, []int{B, H, chunks, D})
	defer b.Free(kspart)
	b.launch(b.fn(kb.module(), kb.name(D)), [3]int{chunks, H, B}, [3]int{kb.threads(D), 1, 1}, kvSmem,
		kvpart.buf.ptr, kspart.buf.ptr, k.buf.ptr, v.buf.ptr, int32(L), int32(H), int32(rows))
	kvt = b.newTensor(tensor.BF16, []int{B, H, D, D})
	ks = b.newTensor(tensor.F32, []int{B, H, D})
	b.launch(b.fn("sla_linear.cu", "sla_lin_reduce_kernel"), [3]int{(D*D + 255) / 256, B * H, 1}, block256, 0,
		kvt.buf.ptr, ks.buf.ptr, kvpart.buf.ptr, kspart.buf.ptr, int32(chunks), int32(D))
	return kvt, ks
}

// slaLinearOut runs step 3 of the fused branch on the state from
// slaLinearState. Caller holds the device.
func (b *Backend) slaLinearOut(q, kvt, ks, w, bias *Tensor, B, L, H, D int) *Tensor {
	sms, optin := max(b.info.SMs, 1), b.info.MaxSmemOptin
	// Step 3: the first build of sla_lin_out whose shared memory fits,
	// about as many blocks as the multiprocessors hold, each a run of
	// consecutive tiles of one head.
	shape := b.slaLinOutPick(D)
	if shape.warps == 0 {
		backend.Fail("cuda: SLA linear branch: no sla_lin_out build for head dim %d fits in %d B of shared memory", D, optin)
	}
	smem := shape.smem(D)
	occ := max(1, min(2, optin/(smem+1024)))
	tiles := (L + shape.rows() - 1) / shape.rows()
	spread := max(1, occ*sms/(B*H))
	if slaLinSpread > 0 {
		spread = min(spread, slaLinSpread)
	}
	per := (tiles + spread - 1) / spread
	blocks := (tiles + per - 1) / per
	ol := b.newTensor(tensor.BF16, []int{B * L * H, D})
	var bp uintptr
	if bias != nil {
		bp = bias.buf.ptr
	}
	b.launch(b.fn(shape.module(), shape.name(D)), [3]int{blocks, H, B}, [3]int{32 * shape.warps, 1, 1}, smem,
		ol.buf.ptr, q.buf.ptr, kvt.buf.ptr, ks.buf.ptr, w.buf.ptr, bp, int32(L), int32(H), int32(per))
	return ol
}
