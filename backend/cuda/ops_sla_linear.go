package cuda

import (
	"fmt"
	"math"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// SLALinearEnv forces SLA's linear branch: "unfused" (feature maps,
// transposes, per-head cuBLASLt GEMMs, the normalisation, then proj_l as a
// Linear) or "fused" (kernels/sla_linear.cu's sla_lin_*: one reduction
// kernel for KᵀV and the k-sum, one that finishes them, one for φ(q)·KV,
// the normalisation and proj_l). Unset: unfused, which measured faster on
// an H200 (1.3B SLA forward, per layer: unfused 1.08 ms, fused 1.19 ms,
// whose φ(q)/φ(k) rows run one warp at a time per row and wait on memory;
// see docs/ARCHITECTURE.md). "fused" runs the fused kernels where they pass
// their start-up check.
const SLALinearEnv = "TURBODIFFUSION_SLA_LINEAR"

var slaLinStates sync.Map // *Backend -> *kernelChoice

func (b *Backend) slaLinState() *kernelChoice {
	s, _ := slaLinStates.LoadOrStore(b, &kernelChoice{})
	return s.(*kernelChoice)
}

// SLALinearKernel says which SLA linear branch runs and why.
func (b *Backend) SLALinearKernel() string {
	if b.slaLinFused() {
		return "fused " + b.slaLinState().note
	}
	return "unfused " + b.slaLinState().note
}

// SetSLALinear picks "unfused" or "fused"; "" restores the default.
func (b *Backend) SetSLALinear(k string) { slaLinStates.Store(b, &kernelChoice{forced: k}) }

// slaLinFused decides once whether the fused linear branch runs: only when
// asked for, and only if its proj_l output agrees with the unfused path's
// on small problems of both head dims. The caller must not hold the device.
func (b *Backend) slaLinFused() bool {
	p := optionalPath{env: SLALinearEnv, on: "fused", off: "unfused", what: "fused kernels", ref: "unfused"}
	return b.slaLinState().decide(p, nil, b.checkSLALinear)
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

// slaLinearFused is the linear branch with proj_l, o_l = proj_l(φ(q)·KV /
// (1e-5 + φ(q)·ks)) for bf16 q, k, v [B, L, H·D], weight w [D, D] and bias
// (nil for none), as [B·L·H, D] bf16 (what Linear returns on the unfused
// path). Caller holds the device.
func (b *Backend) slaLinearFused(q, k, v, w, bias *Tensor, B, L, H, D int) *Tensor {
	kvacc := b.newTensor(tensor.F32, []int{B, H, D, D})
	defer b.Free(kvacc)
	ks64 := b.newTensor(tensor.F64, []int{B, H, D})
	defer b.Free(ks64)
	b.memset0(kvacc)
	b.memset0(ks64)
	// Enough row chunks for about four blocks per multiprocessor; each a
	// multiple of the kernel's 64-row tile.
	chunks := max(1, (4*max(b.info.SMs, 1)+B*H-1)/(B*H))
	rows := ((L+chunks-1)/chunks + 63) / 64 * 64
	chunks = (L + rows - 1) / rows
	b.launch(b.fn("sla_linear.cu", fmt.Sprintf("sla_lin_kv_d%d", D)), [3]int{chunks, H, B}, block256, 0,
		kvacc.buf.ptr, ks64.buf.ptr, k.buf.ptr, v.buf.ptr, int32(L), int32(H), int32(rows))
	kvt := b.newTensor(tensor.BF16, []int{B, H, D, D})
	defer b.Free(kvt)
	ks := b.newTensor(tensor.F32, []int{B, H, D})
	defer b.Free(ks)
	b.launch(b.fn("sla_linear.cu", "sla_lin_finish_kernel"), [3]int{B * H, 1, 1}, block256, 0,
		kvt.buf.ptr, ks.buf.ptr, kvacc.buf.ptr, ks64.buf.ptr, int32(D))
	ol := b.newTensor(tensor.BF16, []int{B * L * H, D})
	var bp uintptr
	if bias != nil {
		bp = bias.buf.ptr
	}
	const bm = 128 // rows per block of sla_lin_out
	smem := (bm+2*D)*(D+8)*2 + bm*4
	b.launch(b.fn("sla_linear.cu", fmt.Sprintf("sla_lin_out_d%d", D)), [3]int{(L + bm - 1) / bm, H, B}, block256, smem,
		ol.buf.ptr, q.buf.ptr, kvt.buf.ptr, ks.buf.ptr, w.buf.ptr, bp, int32(L), int32(H))
	return ol
}
