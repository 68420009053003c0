package cuda

import (
	"fmt"
	"math"
	"os"
	"strings"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// AttentionEnv forces an attention kernel: "mma" (mma.sync, any sm_80+),
// "wgmma" (Hopper), "wgmma:<variant>" or "wgmma:<variant>+<variant>" (the
// second for at most crossMaxLk keys). Unset: wgmma where it runs and
// passed its start-up check.
const AttentionEnv = "TURBODIFFUSION_ATTENTION"

// attnState records which dense-attention kernel runs and why.
type attnState struct {
	mu      sync.Mutex // serialises the one-time check (it runs ops itself)
	checked bool
	wgmma   bool // use flash_wgmma_d* (sm_90a)
	swap    int32
	v       variant
	vx      variant // for at most crossMaxLk keys (the cross-attention)
	picked  bool    // variant chosen by the caller, not by head dim
	forced  string
	note    string
}

// variant is one compiled wgmma kernel: consumer warpgroups (64 query rows
// each), 128-byte swizzled shared-memory tiles or not, K/Vᵀ stages.
type variant struct {
	name   string // "w3s3"
	nwg    int
	sw     bool
	stages int
	bn     int  // keys per shared-memory stage (64 or 128)
	tma    bool // copy-engine loads by a producer warpgroup, mbarrier stages
	vn     bool // reads V as it is (no transposed copy per call)
	pers   bool // persistent: one block per SM walks the (head, query tile) items
}

// WGMMAVariants are the compiled wgmma kernel variants, each for head dims
// 64 and 128: "w<warpgroups>" then "s3" (cp.async, 128-byte swizzled tiles,
// three stages: kernels/attention_cpasync_sm90a.cu) or "t" (TMA, a producer
// warpgroup: kernels/attention_tma_sm90a.cu) with consume_tma's options "i"
// (FA3's intra-warpgroup overlap) and "v" (V read in place), "k128"
// (128-key stages) and a final "p" (persistent:
// kernels/attention_persist_sm90a.cu). Only the defaults and the fallback
// are built; the variants measured against them in session 2 never won and
// were removed (docs/PERF.md). SetAttentionKernel("wgmma:w3t") picks one.
var WGMMAVariants = []string{defaultVariant, defaultVariantCross, defaultVariant64, fallbackVariant}

// tmaFlags are the option-letter sets built after "t".
var tmaFlags = map[string]bool{"": true, "iv": true}

// defaultVariant is the fastest variant measured for head dim 128 (2
// warpgroups, 128-key stages, intra-warpgroup overlap, V read in place) and
// defaultVariant64 for head dim 64 (docs/PERF.md, "Attention, session 2",
// H100); fallbackVariant replaces a TMA default on drivers without tensor
// maps.
const (
	defaultVariant   = "w2tivk128"
	defaultVariant64 = "w3t"
	fallbackVariant  = "w3s3"
)

// defaultVariantCross replaces defaultVariant for head dim 128 when there
// are at most crossMaxLk keys (the text cross-attention, 512 keys in Wan),
// where each query tile has only a few key tiles and its Q load, pipeline
// fill and output store are a large share: the persistent "w2tivk128p"
// overlaps those with the previous tile's work. H100 (a50216c, 2 s warm-up):
// 512 keys, 12 heads 0.247 vs 0.278 ms, 40 heads 0.754 vs 0.882 ms; 14B
// forward's attention 1473 vs 1483 ms; golden DiT unchanged (docs/PERF.md).
// For self-attention it measured within the clock noise, so it stays there
// a selectable variant.
const (
	defaultVariantCross = "w2tivk128p"
	crossMaxLk          = 2048
)

// persistentGridCap, when positive, caps the persistent kernel's grid below
// the SM count (tests use it to make each block walk many work items).
var persistentGridCap int

// splitVariants returns the self- and cross-attention variant names of a
// "<self>[+<cross>]" choice; the defaults pair defaultVariantCross with the
// self variant, a caller's single name applies to both.
func splitVariants(variant string, picked bool) (self, cross string) {
	self, cross, two := strings.Cut(variant, "+")
	if !picked {
		return self, defaultVariantCross
	}
	if !two {
		return self, self
	}
	return self, cross
}

// parseVariant maps a listed variant name to its kernel parameters.
func parseVariant(name string) (variant, bool) {
	known := false
	for _, k := range WGMMAVariants {
		known = known || k == name
	}
	var v variant
	var rest string
	if !known {
		return v, false
	}
	if _, err := fmt.Sscanf(name, "w%d%s", &v.nwg, &rest); err != nil {
		return v, false
	}
	v.name, v.bn = name, 64
	if r, ok := strings.CutSuffix(rest, "p"); ok {
		rest, v.pers = r, true
	}
	if r, ok := strings.CutSuffix(rest, "k128"); ok {
		rest, v.bn = r, 128
	}
	switch rest {
	case "s3":
		v.sw, v.stages = true, 3
	default:
		if f, ok := strings.CutPrefix(rest, "t"); ok && tmaFlags[f] {
			v.sw, v.stages, v.tma = true, kernels.AttnTMAStages, true
			v.vn = strings.Contains(f, "v")
			break
		}
		return v, false
	}
	return v, true
}

// module is the kernel file of v's family.
func (v variant) module() string {
	switch {
	case v.pers:
		return "attention_persist_sm90a.cu"
	case v.tma:
		return "attention_tma_sm90a.cu"
	}
	return "attention_cpasync_sm90a.cu"
}

// kernel is v's kernel name for head dim d.
func (v variant) kernel(d int) string {
	return fmt.Sprintf("flash_wgmma_d%d_w%d_%s", d, v.nwg, v.name[2:])
}

// AttentionKernel says which dense attention kernel runs and why.
func (b *Backend) AttentionKernel() string {
	b.wgmmaReady()
	if b.attn.wgmma {
		return "wgmma (sm_90a) " + b.attn.note
	}
	return "mma.sync m16n8k16 " + b.attn.note
}

// SetAttentionKernel picks "mma", "wgmma", "wgmma:<variant>" or
// "wgmma:<self>+<cross>" (the second variant runs where there are at most
// crossMaxLk keys; benchmarks compare them); "" restores the default choice.
func (b *Backend) SetAttentionKernel(k string) {
	b.attn.mu.Lock()
	defer b.attn.mu.Unlock()
	b.attn.checked, b.attn.wgmma, b.attn.picked, b.attn.forced, b.attn.note = false, false, false, k, ""
}

// wgmmaReady decides once whether the wgmma kernel is used: only on sm_90,
// only if it compiles, and only if it agrees with the mma.sync kernel on a
// small problem, trying both readings of the descriptor's two offset fields.
// Any failure keeps the mma.sync kernel and says why (never a wrong result).
func (b *Backend) wgmmaReady() bool {
	b.attn.mu.Lock()
	defer b.attn.mu.Unlock()
	if b.attn.checked {
		return b.attn.wgmma
	}
	b.attn.checked = true
	want := b.attn.forced
	if want == "" {
		want = os.Getenv(AttentionEnv)
	}
	if want == "mma" {
		b.attn.note = "(chosen by " + AttentionEnv + " or the caller)"
		return false
	}
	variant := defaultVariant
	if v, ok := strings.CutPrefix(want, "wgmma:"); ok {
		variant, b.attn.picked = v, true
	} else if b.drv.cuTensorMapEncodeTiled == 0 {
		variant, b.attn.picked = fallbackVariant, true // the TMA kernels need CUDA 12 tensor maps
	}
	self, cross := splitVariants(variant, b.attn.picked)
	var ok, okx bool
	b.attn.v, ok = parseVariant(self)
	b.attn.vx, okx = parseVariant(cross)
	if !ok || !okx {
		b.attn.note = fmt.Sprintf("(unknown wgmma variant %q; have %v)", variant, WGMMAVariants)
		return false
	}
	if b.info.Arch != "sm_90" {
		b.attn.note = "(wgmma needs sm_90, device is " + b.info.Arch + ")"
		return false
	}
	var errs []string
	for _, swap := range []int32{0, 1} {
		rel, err := b.checkWGMMA(swap)
		if err != nil {
			errs = append(errs, err.Error())
			break
		}
		if rel < 1e-2 {
			b.attn.wgmma, b.attn.swap = true, swap
			if cross != self {
				variant = fmt.Sprintf("%s, %s up to %d keys", self, cross, crossMaxLk)
			}
			b.attn.note = fmt.Sprintf("%s (start-up check: rel-L2 %.1e vs mma.sync, descriptor reading %d)", variant, rel, swap)
			return true
		}
		errs = append(errs, fmt.Sprintf("descriptor reading %d: rel-L2 %.2e vs mma.sync", swap, rel))
	}
	b.attn.note = fmt.Sprintf("(wgmma kernel rejected: %v)", errs)
	return false
}

// checkWGMMA runs both kernels on small random problems (each head dim;
// for head dim 128 also more keys than crossMaxLk, so both the self- and
// the cross-attention choice are checked) and returns the worst rel-L2.
func (b *Backend) checkWGMMA(swap int32) (worst float64, err error) {
	defer backend.Recover(&err)
	r := newXorshift(12345)
	for _, dk := range [][2]int{{128, 300}, {128, crossMaxLk + 100}, {64, 300}} {
		d, lk := dk[0], dk[1]
		const lq, heads = 200, 2
		q := b.Upload(tensor.BF16, []int{lq, heads * d}, r.fill(lq*heads*d))
		k := b.Upload(tensor.BF16, []int{lk, heads * d}, r.fill(lk*heads*d))
		v := b.Upload(tensor.BF16, []int{lk, heads * d}, r.fill(lk*heads*d))
		s := float32(1 / math.Sqrt(float64(d)))
		var a, w *Tensor
		func() {
			defer b.enter()()
			a = b.newTensor(tensor.BF16, q.Shape())
			w = b.newTensor(tensor.BF16, q.Shape())
			b.flash(T(q), T(k), T(v), a, 1, lq, lk, heads, d, s)
			b.flashWGMMA(T(q), T(k), T(v), w, 1, lq, lk, heads, d, s, swap)
		}()
		worst = math.Max(worst, checkRelL2(b.Download(w), b.Download(a)))
		for _, t := range []backend.Tensor{q, k, v, a, w} {
			b.Free(t)
		}
	}
	return worst, nil
}

// flashWGMMA runs the sm_90a kernel; unless the variant reads V in place,
// it first transposes V into a temporary [B, H·d, Lkp]. Caller holds the
// device.
func (b *Backend) flashWGMMA(q, k, v, out *Tensor, batch, Lq, Lk, heads, d int, scale float32, swap int32) {
	kv := b.attn.v
	if d == 64 && !b.attn.picked {
		kv, _ = parseVariant(defaultVariant64)
	} else if Lk <= crossMaxLk {
		kv = b.attn.vx
	}
	Lkp := (Lk + 127) / 128 * 128 // whole 64- or 128-key stages, zero-padded
	hd := heads * d
	vt := v
	if !kv.vn {
		vt = b.newTensor(tensor.BF16, []int{batch, hd, Lkp})
		defer b.Free(vt)
		b.launch(b.fn("layout.cu", "transpose_v_kernel"), [3]int{Lkp / 32, (hd + 31) / 32, batch}, [3]int{32, 8, 1}, 0,
			vt.buf.ptr, v.buf.ptr, int32(Lk), int32(Lkp), int32(hd))
	}
	sl := float32(float64(scale) * math.Log2E)
	if kv.tma {
		bm := 64 * kv.nwg
		qs, ks, vs := attnTensorMaps(kv, batch, Lq, Lk, heads, d)
		tmQ := b.encodeTensorMap("attention q", q.buf.ptr, qs)
		tmK := b.encodeTensorMap("attention k", k.buf.ptr, ks)
		tmV := b.encodeTensorMap("attention v", vt.buf.ptr, vs)
		smem := kernels.AttnSmemBytes(d, kv.nwg, kv.bn, kv.stages, kv.sw, true)
		if kv.pers {
			items := (Lq + bm - 1) / bm * heads * batch
			grid := min(items, max(b.info.SMs, 1))
			if persistentGridCap > 0 {
				grid = min(grid, persistentGridCap)
			}
			b.launch(b.fn(kv.module(), kv.kernel(d)),
				[3]int{grid, 1, 1}, [3]int{128 * (kv.nwg + 1), 1, 1}, smem,
				tmQ, tmK, tmV, out.buf.ptr, int32(Lq), int32(Lk), int32(heads), int32(batch), sl)
			return
		}
		b.launch(b.fn(kv.module(), kv.kernel(d)),
			[3]int{(Lq + bm - 1) / bm, heads, batch}, [3]int{128 * (kv.nwg + 1), 1, 1}, smem,
			tmQ, tmK, tmV, out.buf.ptr, int32(Lq), int32(Lk), int32(heads), sl)
		return
	}
	bm := 64 * kv.nwg
	smem := kernels.AttnSmemBytes(d, kv.nwg, kv.bn, kv.stages, kv.sw, false)
	b.launch(b.fn(kv.module(), kv.kernel(d)), [3]int{(Lq + bm - 1) / bm, heads, batch}, [3]int{128 * kv.nwg, 1, 1}, smem,
		q.buf.ptr, k.buf.ptr, vt.buf.ptr, out.buf.ptr, int32(Lq), int32(Lk), int32(Lkp), int32(heads), sl, swap)
}

// checkRelL2 is a start-up check's verdict: ||got-want|| / ||want||, and
// +Inf where that is NaN (NaNs written by a kernel, or an all-zero
// reference), so a broken kernel never passes.
func checkRelL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		num += e * e
		den += float64(want[i]) * float64(want[i])
	}
	rel := math.Sqrt(num / den)
	if math.IsNaN(rel) {
		return math.Inf(1)
	}
	return rel
}

// xorshift makes the start-up check's inputs (random, never zeros).
type xorshift struct{ s uint64 }

func newXorshift(seed uint64) *xorshift { return &xorshift{s: seed | 1} }

func (x *xorshift) fill(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		x.s ^= x.s << 13
		x.s ^= x.s >> 7
		x.s ^= x.s << 17
		out[i] = float32(int64(x.s>>40)-(1<<23)) / (1 << 22)
	}
	return out
}

// attnTensorMaps describes Q, K and V for a TMA attention variant: [B·L
// rows][H·d] bf16 with 64-element (128-byte swizzled) boxes of a query or key
// tile's rows; V transposed to [B·H·d rows][Lkp] unless the variant reads it
// in place (then like K).
func attnTensorMaps(kv variant, batch, Lq, Lk, heads, d int) (q, k, v tensorMapSpec) {
	W := int64(heads * d)
	q = tensorMapBF16(W, int64(batch*Lq), W*2, 64, 64*kv.nwg, tmapSwizzle128)
	k = tensorMapBF16(W, int64(batch*Lk), W*2, 64, kv.bn, tmapSwizzle128)
	if kv.vn {
		return q, k, k
	}
	Lkp := int64((Lk + 127) / 128 * 128)
	return q, k, tensorMapBF16(Lkp, int64(batch)*W, Lkp*2, 64, d, tmapSwizzle128)
}
