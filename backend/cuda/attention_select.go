package cuda

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// AttentionEnv forces an attention kernel: "mma" (mma.sync, any sm_80+) or
// "wgmma" (Hopper). Unset: wgmma where it runs and passed its start-up check.
const AttentionEnv = "TURBODIFFUSION_ATTENTION"

// attnState records which dense-attention kernel runs and why.
type attnState struct {
	checked bool
	wgmma   bool // use flash_wgmma_d* (sm_90a)
	swap    int32
	nwg     int  // wgmma variant: consumer warpgroups per block
	minb    int  // and minimum blocks per SM (register cap)
	pipe    bool // S(j+1) overlaps the softmax of tile j
	bn      int  // keys per tile
	sw      bool // 128-byte swizzled shared-memory tiles
	stages  int  // shared-memory stages of K/Vᵀ (2 or 3)
	picked  bool // variant chosen by the caller, not by head dim
	forced  string
	note    string
}

// WGMMAVariants are the compiled wgmma kernel variants, "w<warpgroups>b<min
// blocks per SM>" or "w<warpgroups>p" (pipelined: Q·Kᵀ of the next tile
// overlaps this tile's softmax); SetAttentionKernel("wgmma:w3p") picks one.
var WGMMAVariants = []string{"w2b1", "w2b2", "w3b1", "w4b1", "w2n128", "w2p", "w3p", "w2s", "w3s", "w2s3", "w3s3"}

// defaultVariant is the fastest variant measured for head dim 128, and
// defaultVariant64 for head dim 64 (docs/PERF.md, H200).
const (
	defaultVariant   = "w3s3"
	defaultVariant64 = "w2s3"
)

// AttentionKernel says which dense attention kernel runs and why.
func (b *Backend) AttentionKernel() string {
	b.wgmmaReady()
	if b.attn.wgmma {
		return "wgmma (sm_90a) " + b.attn.note
	}
	return "mma.sync m16n8k16 " + b.attn.note
}

// SetAttentionKernel picks "mma", "wgmma" or "wgmma:<variant>"
// (benchmarks compare them); "" restores the default choice.
func (b *Backend) SetAttentionKernel(k string) {
	b.attn = attnState{forced: k}
}

func parseVariant(v string) (nwg, minb, bn int, pipe, sw, ok bool) {
	nwg, minb, bn, pipe, sw, _, ok = parseVariantStages(v)
	return
}

func parseVariantStages(v string) (nwg, minb, bn int, pipe, sw bool, stages int, ok bool) {
	stages = 2
	if s, found := strings.CutSuffix(v, "s3"); found {
		v, stages = s+"s", 3
	}
	nwg, minb, bn, pipe, sw, ok = parseVariant1(v + "")
	return
}

func parseVariant1(v string) (nwg, minb, bn int, pipe, sw, ok bool) {
	for _, known := range WGMMAVariants {
		if v == known || v+"3" == known {
			ok = true
		}
	}
	if !ok {
		return 0, 0, 0, false, false, false
	}
	switch {
	case strings.HasSuffix(v, "p"):
		_, err := fmt.Sscanf(v, "w%dp", &nwg)
		return nwg, 1, 64, true, false, err == nil
	case strings.HasSuffix(v, "s"):
		_, err := fmt.Sscanf(v, "w%ds", &nwg)
		return nwg, 1, 64, false, true, err == nil
	case strings.Contains(v, "n"):
		_, err := fmt.Sscanf(v, "w%dn%d", &nwg, &bn)
		return nwg, 1, bn, false, false, err == nil
	}
	_, err := fmt.Sscanf(v, "w%db%d", &nwg, &minb)
	return nwg, minb, 64, false, false, err == nil
}

// wgmmaReady decides once whether the wgmma kernel is used: only on sm_90,
// only if it compiles, and only if it agrees with the mma.sync kernel on a
// small problem, trying both readings of the descriptor's two offset fields.
// Any failure keeps the mma.sync kernel and says why (never a wrong result).
func (b *Backend) wgmmaReady() bool {
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
	}
	var ok bool
	if b.attn.nwg, b.attn.minb, b.attn.bn, b.attn.pipe, b.attn.sw, b.attn.stages, ok = parseVariantStages(variant); !ok {
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
			b.attn.note = fmt.Sprintf("%s (start-up check: rel-L2 %.1e vs mma.sync, descriptor reading %d)", variant, rel, swap)
			return true
		}
		errs = append(errs, fmt.Sprintf("descriptor reading %d: rel-L2 %.2e vs mma.sync", swap, rel))
	}
	b.attn.note = fmt.Sprintf("(wgmma kernel rejected: %v)", errs)
	return false
}

// checkWGMMA runs both kernels on one small random problem per head dim and
// returns the worse rel-L2 between them.
func (b *Backend) checkWGMMA(swap int32) (worst float64, err error) {
	defer backend.Recover(&err)
	r := newXorshift(12345)
	for _, d := range []int{128, 64} {
		const lq, lk, heads = 200, 300, 2
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
		ga, gw := b.Download(a), b.Download(w)
		var num, den float64
		for i := range ga {
			e := float64(gw[i]) - float64(ga[i])
			num += e * e
			den += float64(ga[i]) * float64(ga[i])
		}
		rel := math.Sqrt(num / den)
		if math.IsNaN(rel) {
			rel = math.Inf(1)
		}
		worst = math.Max(worst, rel)
		for _, t := range []backend.Tensor{q, k, v, a, w} {
			b.Free(t)
		}
	}
	return worst, nil
}

// flashWGMMA transposes V into a temporary [B, H·d, Lkp] and runs the
// sm_90a kernel. Caller holds the device.
func (b *Backend) flashWGMMA(q, k, v, out *Tensor, batch, Lq, Lk, heads, d int, scale float32, swap int32) {
	Lkp := (Lk + 127) / 128 * 128 // whole tiles of 64 or 128 keys, zero-padded
	hd := heads * d
	vt := b.newTensor(tensor.BF16, []int{batch, hd, Lkp})
	defer b.Free(vt)
	b.launch(b.fn("layout.cu", "transpose_v_kernel"), [3]int{Lkp / 32, (hd + 31) / 32, batch}, [3]int{32, 8, 1}, 0,
		vt.buf.ptr, v.buf.ptr, int32(Lk), int32(Lkp), int32(hd))
	nwg, minb, bn, pipe, sw, stages := b.attn.nwg, b.attn.minb, b.attn.bn, b.attn.pipe, b.attn.sw, b.attn.stages
	if d == 64 && !b.attn.picked {
		nwg, minb, bn, pipe, sw, stages, _ = parseVariantStages(defaultVariant64)
	}
	if nwg == 4 && d == 64 {
		nwg = 3 // not built for d=64
	}
	bm := 64 * nwg
	smem := (bm*d + 4*64*d) * 2
	name := fmt.Sprintf("flash_wgmma_d%d_w%d_b%d", d, nwg, minb)
	switch {
	case pipe:
		smem = (bm*d + 6*64*d) * 2
		name = fmt.Sprintf("flash_wgmma_d%d_w%d_p", d, nwg)
	case sw && stages == 3:
		smem = (bm*d+6*64*d)*2 + 1024 // + room to align the tiles to 1024 bytes
		name = fmt.Sprintf("flash_wgmma_d%d_w%d_s3", d, nwg)
	case sw:
		smem += 1024 // room to align the tiles to 1024 bytes
		name = fmt.Sprintf("flash_wgmma_d%d_w%d_s", d, nwg)
	case bn == 128:
		smem = (bm*d + 4*128*d) * 2
		name = fmt.Sprintf("flash_wgmma_d%d_w%d_n128", d, nwg)
	}
	sl := float32(float64(scale) * math.Log2E)
	b.launch(b.fn("attention_sm90a.cu", name), [3]int{(Lq + bm - 1) / bm, heads, batch}, [3]int{128 * nwg, 1, 1}, smem,
		q.buf.ptr, k.buf.ptr, vt.buf.ptr, out.buf.ptr, int32(Lq), int32(Lk), int32(Lkp), int32(heads), sl, swap)
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
