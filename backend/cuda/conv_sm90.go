package cuda

import (
	"fmt"
	"math"
	"os"
	"sync/atomic"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// ConvEnv picks the bf16 convolution kernels on Hopper: "mma" keeps the
// mma.sync kernels of conv3d.cu (the baseline the benchmarks compare with),
// "tma" runs the sm_90a kernel with one block per tile, "tma-p" with a
// persistent grid; unset means the default (convPersistDefault).
const ConvEnv = "TURBODIFFUSION_CONV"

// convHopper enables the sm_90a convolution (conv3d_sm90a.cu) where it
// applies; tests and benchmarks switch it off to run the old kernels.
var convHopper = os.Getenv(ConvEnv) != "mma"

// convPersist, when set, forces the persistent sm_90a conv kernels (the
// producer loads the next tile while the consumers store this one) on or
// off; nil leaves the choice to convPersistDefault.
var convPersist = map[string]*bool{"tma": new(bool), "tma-p": ptrTo(true), "tma-dwp": ptrTo(true)}[os.Getenv(ConvEnv)]

func ptrTo(v bool) *bool { return &v }

// convSplit96 runs Cin = 96, N = 96 convolutions on conv3d_tma_k96_n96_m2
// (whole-tap K steps: 128- and 64-byte rows) instead of three 32-channel
// steps per tap. Off: it measured slower (H100: 2.39 vs 2.21 ms on the
// 96-channel 480x832 conv, 245 vs 220 ms per decode; docs/PERF.md).
var convSplit96 = os.Getenv(ConvEnv) == "tma-s"

// convDW runs the BK 32 / N 96 convolutions with kw = 3 (the decoder's
// 96-channel stage) on conv3d_tma_k32_n96_m2_dw: a planar packed input
// whose A tile serves the three taps along w from one copy (a third of the
// activation traffic). TURBODIFFUSION_CONV=tma-dw forces it (tma-dwp: with
// every conv persistent, the dw one included); not yet the default
// (convDWDefault) until measured.
var convDW = os.Getenv(ConvEnv) == "tma-dw" || os.Getenv(ConvEnv) == "tma-dwp" || (convDWDefault && os.Getenv(ConvEnv) == "")

// convDWDefault: whether the dw kernel is the default where it applies.
const convDWDefault = false

// convPersistDefault: the persistent kernels measured faster on the
// decoder's shapes except for BK 32 with N 96 (Cin = Cout = 96: 2.23 vs
// 2.21 ms; 192 channels 1.43 vs 1.52 ms; H100, docs/PERF.md "VAE decode,
// session 2").
func convPersistDefault(bk, n int) bool { return !(bk == 32 && n == 96) }

// convN256 runs Cout multiples of 256 (TAEHV's first stage) on N = 256
// tiles of 128 rows instead of N = 128 tiles of 256 rows.
var convN256 = os.Getenv("TURBODIFFUSION_CONV_N256") == "1"

// PackNormEnv = "scalar" keeps the fused norm pack on conv_pack_norm_cl
// (2-byte loads, one block per 64 padded columns) instead of
// conv_pack_norm_cl4 (8-byte loads of input columns where Wi % 4 == 0);
// "cl4b" picks that kernel's 40-register build. All write the same bits.
const PackNormEnv = "TURBODIFFUSION_PACKNORM"

// packNorm is PackNormEnv's choice ("" is the default, cl4).
var packNorm = os.Getenv(PackNormEnv)

// packNormKernel names the fused norm pack for input width wi and its
// grid's x size (column blocks).
func packNormKernel(wi, wpd int) (string, int) {
	if packNorm == "scalar" || wi%4 != 0 {
		return "conv_pack_norm_cl", (wpd + 63) / 64
	}
	if packNorm == "cl4b" {
		return "conv_pack_norm_cl4b", (wi + 63) / 64
	}
	return "conv_pack_norm_cl4", (wi + 63) / 64
}

// convHopperLaunches counts the convolutions run by the sm_90a kernel, so a
// test can tell that the fast path was taken rather than silently skipped.
var convHopperLaunches atomic.Int64

// convDWLaunches counts the launches of the dw kernel among them.
var convDWLaunches atomic.Int64

// convTMA is one instance of conv3d_tma_k<BK>_n<N>_m<MW>[_p]: BK input
// channels per K step, N output channels and 128·MW positions per block, NS
// stages; persist: the persistent variant with a separate staging area.
type convTMA struct {
	bk, n, mw, ns int
	persist       bool
	dw            bool // conv3d_tma_k32_n96_m2_dw: planar input, one A copy for the three w taps
}

func (k convTMA) name() string {
	suf := ""
	if k.persist {
		suf = "_p"
	}
	if k.dw {
		suf = "_dw" + suf
	}
	return fmt.Sprintf("conv3d_tma_k%d_n%d_m%d%s", k.bk, k.n, k.mw, suf)
}

// rows is the block's position tile (the A box's height).
func (k convTMA) rows() int { return 128 * k.mw }

// staging is the epilogue's [N][rows+8] bf16 output tile in bytes.
func (k convTMA) staging() int { return (k.n*(k.rows()+8)*2 + 15) / 16 * 16 }

// smem is the dynamic shared memory: NS stages of A and B tiles, the
// persistent kernel's staging area, room to align the tiles to 1024 bytes,
// and the 2·NS mbarriers.
func (k convTMA) smem() int {
	if k.dw {
		s := k.ns*k.stage() + kernels.SmemAlign + 16*k.ns
		if k.persist {
			s += k.staging()
		}
		return s
	}
	s := k.ns*(k.rows()+k.n)*k.bk*2 + kernels.SmemAlign + 16*k.ns
	if k.persist {
		s += k.staging()
	}
	return s
}

// dwRows is the dw kernel's A box height per consumer warpgroup: its 64·mw
// rows and the two rows the w taps reach beyond them.
func (k convTMA) dwRows() int { return 64*k.mw + 2 }

// stage is one pipeline stage's bytes. dw: three B tiles (one per w tap),
// then per warpgroup four 8-channel planes of dwRows rows (rounded to 128
// bytes), the whole rounded to 512; conv_tma's SB.
func (k convTMA) stage() int {
	if !k.dw {
		return (k.rows() + k.n) * k.bk * 2
	}
	aw := (4*k.dwRows()*16 + 127) / 128 * 128
	return (3*k.n*k.bk*2 + 2*aw + 511) / 512 * 512
}

// slackRows is how many rows of cin channels the packed input needs past
// its rows for kernel k: the dw kernel's unbounded copies read the last
// plane up to 256 + 2 rows past the last output row's tile plus the
// largest (dt, dh) offset, i.e. at most 257 + (kh-1)·wpd rows of 8
// channels past the end (rows = (To + kt - 1)·Hp·Wp); none otherwise.
func (k convTMA) slackRows(cin, kh, wpd int) int {
	if !k.dw {
		return 0
	}
	return ((k.rows()+2+(kh-1)*wpd)*8+cin-1)/cin + 1
}

// convDWPick turns k into the dw kernel where it applies (convDW set, BK
// 32 with N 96, three taps along w, an input this op packs itself),
// persistent (five stages) if k is, and returns k unchanged otherwise.
func convDWPick(k convTMA, kw int, prepacked bool) convTMA {
	if !convDW || k.bk != 32 || k.n != 96 || k.mw != 2 || kw != 3 || prepacked {
		return k
	}
	if k.persist {
		return convTMA{bk: 32, n: 96, mw: 2, ns: 5, persist: true, dw: true}
	}
	return convTMA{bk: 32, n: 96, mw: 2, ns: 6, dw: true}
}

// convTMAPick chooses the kernel instance for cin→cout (the NS values match
// the CONV_TMA list in conv3d_sm90a.cu): BK 64 when cin allows (128-byte
// swizzle), else 32; N 192 for multiples of 192 (the decoder's 192, 384,
// 768), else 96 with two 64-row MMAs per warpgroup.
func convTMAPick(cin, cout int, force *bool) convTMA {
	bk := 32
	if cin%64 == 0 {
		bk = 64
	}
	n, mw := 96, 2
	switch {
	case cout <= 8:
		n = 8
	case bk == 64 && cout%256 == 0 && convN256:
		n, mw = 256, 1
	case cout%192 == 0:
		n, mw = 192, 1
	case bk == 64 && cout%128 == 0: // TAEHV's 128 and 256
		n = 128
	case bk == 64 && cout == 64: // TAEHV's 64
		n = 64
	case cout%96 != 0 && cout > 96:
		n, mw = 192, 1
	}
	if convSplit96 && cin == 96 && n == 96 {
		return convTMA{bk: 96, n: 96, mw: 2, ns: 3}
	}
	persist := convPersistDefault(bk, n)
	if force != nil {
		persist = *force
	}
	ns := map[[3]int]int{
		{64, 192, 0}: 5, {64, 96, 0}: 4, {32, 96, 0}: 8, {32, 192, 0}: 8, {32, 8, 0}: 8, {64, 8, 0}: 6,
		{64, 192, 1}: 4, {64, 96, 1}: 3, {32, 96, 1}: 7, {32, 192, 1}: 8, {32, 8, 1}: 8, {64, 8, 1}: 6,
		{64, 64, 0}: 5, {64, 128, 0}: 4, {64, 256, 0}: 4,
		{64, 64, 1}: 4, {64, 128, 1}: 3, {64, 256, 1}: 3,
	}[[3]int{bk, n, btoi(persist)}]
	return convTMA{bk: bk, n: n, mw: mw, ns: ns, persist: persist}
}

// convHopperApplies tells whether a bf16 convolution runs on the sm_90a
// kernel: an sm_90 device with tensor maps, stride 1, Cin a multiple of 32
// (whole 64-byte rows), and sizes whose rows fit the copy engine's int32
// coordinates.
func (b *Backend) convHopperApplies(cin, cout int, stride [3]int, padded, taps int64) bool {
	if !convHopper || b.info.Arch != "sm_90" || b.drv.cuTensorMapEncodeTiled == 0 {
		return false
	}
	if stride != [3]int{1, 1, 1} || cin%32 != 0 || cout < 1 {
		return false
	}
	return padded+1024 < math.MaxInt32 && taps*int64(cout)+256 < math.MaxInt32
}

// convPackGridOK tells whether conv_pack_cl's grid (one row of blocks per
// padded frame row) fits CUDA's 65535 limit on the grid's y size.
func convPackGridOK(tp, hp int) bool { return tp*hp <= 65535 }

// conv3dHopper runs a stride-1 bf16 convolution with the sm_90a kernel:
// pack the input (history hp/th + x) into a padded channels-last scratch,
// repack the weight to [tap][Cout][Cin], then one TMA + wgmma launch. xshape
// is the input's shape with the history frames counted. With g (the RMS
// norm's γ) the packing pass normalises the input and, for keep > 0, also
// returns the last keep raw input frames (else nil). rp (0 for none) is a
// residual of the output's shape added in the epilogue. up: x is to be
// upsampled 2x (nearest) first, xshape being the upsampled shape (no
// history, no g). Caller holds the device.
func (b *Backend) conv3dHopper(out, x *Tensor, hp uintptr, th int, g, w *Tensor, bp uintptr, bdt int32, rp uintptr, xshape []int, p backend.Conv3dParams, keep int, up bool, ex convExtra) (tail *Tensor) {
	cout, cin := w.shape[0], w.shape[1]
	kt, kh, kw := w.shape[2], w.shape[3], w.shape[4]
	ntap := kt * kh * kw
	ti, hi, wi := xshape[1], xshape[2], xshape[3]
	tp, hpd, wpd := ti+p.PadT[0]+p.PadT[1], hi+p.PadH[0]+p.PadH[1], wi+p.PadW[0]+p.PadW[1]
	to, ho, wo := out.shape[1], out.shape[2], out.shape[3]
	rows := tp * hpd * wpd
	k := convDWPick(convTMAPick(cin, cout, convPersist), kw, ex.xpk)

	var xpPtr uintptr
	if ex.xpk {
		// x is already in the packed layout (ops_taehv.go): its grid is the
		// padded one, and the window's origin is where the conv's own
		// padding (at most the layout's one-pixel border and leading frame)
		// starts.
		hpd, wpd = hi+2, wi+2
		base := (1-p.PadT[0])*hpd*wpd + (1-p.PadH[0])*wpd + (1 - p.PadW[0])
		xpPtr = x.buf.ptr + uintptr(base*cin*2)
		rows = packedRows(ti, hi, wi) - base
	} else {
		xp := b.newTensor(tensor.BF16, []int{rows + k.slackRows(cin, kh, wpd), cin})
		defer b.Free(xp)
		xpPtr = xp.buf.ptr
		b.convPack(xp, x, hp, th, g, xshape, p, keep, up, ex, k.dw, &tail)
	}
	var wr *Tensor
	var tmp bool
	if k.dw {
		nt := (cout + k.n - 1) / k.n
		wr, tmp = b.derivedWeight(w, "tapdw", tensor.BF16, []int{nt * ntap * k.n, cin}, func(wr *Tensor) {
			b.launch(b.fn("conv3d_sm90a.cu", "conv_wpack_dw_kernel"), b.gridFor(wr.n()), block256, 0, wr.buf.ptr, w.buf.ptr,
				dtCode(w.dt), int32(cout), int32(cin), int32(ntap), int32(nt))
		})
	} else {
		wr, tmp = b.derivedWeight(w, "tap", tensor.BF16, []int{ntap * cout, cin}, func(wr *Tensor) {
			b.launch(b.fn("conv3d_sm90a.cu", "conv_wpack_tap_kernel"), b.gridFor(wr.n()), block256, 0, wr.buf.ptr, w.buf.ptr,
				dtCode(w.dt), int32(cout), int32(cin), int32(ntap))
		})
	}
	if tmp {
		defer b.Free(wr)
	}

	mrows := to * hpd * wpd // output rows on the padded grid
	tiles := int64((mrows+k.rows()-1)/k.rows()) * int64((cout+k.n-1)/k.n)
	if tiles >= math.MaxInt32 {
		backend.Fail("cuda: Conv3d: output %v needs %d tiles, more than one launch takes", out.shape, tiles)
	}
	grid := tiles
	if k.persist {
		grid = min(tiles, int64(b.info.SMs))
	}
	var maps []any
	if k.dw { // raw pointers: the kernel's copies are 1-D bulk copies
		maps = []any{xpPtr, int64(rows), wr.buf.ptr}
	}
	for i, s := range convTensorMaps(k, int64(cin), int64(rows), int64(ntap), int64(cout)) {
		addr, what := xpPtr, "Conv3d activations"
		if i%2 == 1 {
			addr, what = wr.buf.ptr, "Conv3d weights"
		}
		maps = append(maps, b.encodeTensorMap(what, addr, s))
	}
	// Packed output / residual: row r of this grid is row r + off of the
	// layout (one leading frame and one border row and column ahead).
	off := int64(hpd*wpd + wpd + 1)
	args := append(maps, out.buf.ptr, bp, bdt, rp, int32(cin), int32(cout), int32(kt), int32(kh), int32(kw),
		int32(hpd), int32(wpd), int32(to), int32(ho), int32(wo), int32(btoi(ex.relu)),
		int32(btoi(ex.ypk)), off, int32(btoi(ex.rpk)), off)
	b.launch(b.fn("conv3d_sm90a.cu", k.name()), [3]int{int(grid), 1, 1}, [3]int{384, 1, 1}, k.smem(), args...)
	convHopperLaunches.Add(1)
	if k.dw {
		convDWLaunches.Add(1)
	}
	return tail
}

// convPack packs x (history hp/th + chunk, or grown / upsampled) into the
// padded channels-last scratch xp, normalising it when g is set (see
// conv3dHopper, which sets *tail).
//
// planar writes the dw kernel's layout, [cin/8][rows][8] (cw_xp), with the
// kernels' _pl builds.
func (b *Backend) convPack(xp, x *Tensor, hp uintptr, th int, g *Tensor, xshape []int, p backend.Conv3dParams, keep int, up bool, ex convExtra, planar bool, tail **Tensor) {
	pl := ""
	if planar {
		pl = "_pl"
	}
	cin := xp.shape[1]
	ti, hi, wi := xshape[1], xshape[2], xshape[3]
	tp, hpd, wpd := ti+p.PadT[0]+p.PadT[1], hi+p.PadH[0]+p.PadH[1], wi+p.PadW[0]+p.PadW[1]
	if g != nil {
		var tp0 uintptr
		if keep = min(keep, ti); keep > 0 {
			*tail = b.newTensor(tensor.BF16, []int{cin, keep, hi, wi})
			tp0 = (*tail).buf.ptr
		}
		name, gx := packNormKernel(wi, wpd)
		name += pl
		b.launch(b.fn("conv3d_sm90a.cu", name), [3]int{gx, tp * hpd, 1}, block256, convPackNormSmem(cin),
			xp.buf.ptr, x.buf.ptr, hp, int32(th), int32(cin), int32(ti), int32(hi), int32(wi),
			int32(p.PadT[0]), int32(p.PadH[0]), int32(p.PadW[0]), int32(hpd), int32(wpd),
			g.buf.ptr, dtCode(g.dt), float32(math.Sqrt(float64(cin))), tp0, int32(ti-keep))
	} else {
		b.launch(b.fn("conv3d_sm90a.cu", "conv_pack_cl"+pl), [3]int{(wpd + 63) / 64, tp * hpd, (cin + 63) / 64}, block256, 0,
			xp.buf.ptr, x.buf.ptr, hp, int32(th), int32(cin), int32(ti), int32(hi), int32(wi),
			int32(p.PadT[0]), int32(p.PadH[0]), int32(p.PadW[0]), int32(hpd), int32(wpd), int32(btoi(up)), int32(max(ex.grow, 1)))
	}
}

// convTensorMaps describes the activation rows [rows][cin] and the packed
// weights [ntap·cout][cin] for kernel k: boxes of bk channels (32: 64-byte
// swizzle, 64: 128-byte; 96: a 64-channel 128-byte-swizzled pair of maps
// and a 32-channel 64-byte-swizzled pair), the layouts its wgmma descriptors
// read.
func convTensorMaps(k convTMA, cin, rows, ntap, cout int64) []tensorMapSpec {
	m := func(outer int64, boxInner, boxOuter, swizzle int) tensorMapSpec {
		return tensorMapBF16(cin, outer, cin*2, boxInner, boxOuter, swizzle)
	}
	if k.dw { // no tensor maps: 1-D bulk copies
		return nil
	}
	switch k.bk {
	case 96:
		return []tensorMapSpec{m(rows, 64, k.rows(), tmapSwizzle128), m(ntap*cout, 64, k.n, tmapSwizzle128),
			m(rows, 32, k.rows(), tmapSwizzle64), m(ntap*cout, 32, k.n, tmapSwizzle64)}
	case 32:
		return []tensorMapSpec{m(rows, 32, k.rows(), tmapSwizzle64), m(ntap*cout, 32, k.n, tmapSwizzle64)}
	}
	return []tensorMapSpec{m(rows, k.bk, k.rows(), tmapSwizzle128), m(ntap*cout, k.bk, k.n, tmapSwizzle128)}
}

// convPackNormSmem is conv_pack_norm_cl's dynamic shared memory for c
// channels: the [64][c+2] bf16 tile (rounded to 16 bytes), γ as c floats
// and 64 norms.
func convPackNormSmem(c int) int { return (64*(c+2)*2+15)/16*16 + 4*c + 4*64 }

// convNormFusable tells whether Conv3dNormWithHistory can run as one fused
// pack + sm_90a conv: bf16, well-formed shapes, and a convolution the
// sm_90a kernel takes.
func (b *Backend) convNormFusable(ht, xt, gt, wt backend.Tensor, p backend.Conv3dParams) bool {
	x, w, g := T(xt), T(wt), T(gt)
	if x.dt != tensor.BF16 || len(x.shape) != 4 || len(w.shape) != 5 || w.shape[1] != x.shape[0] ||
		!backend.SameShape(g.shape, []int{x.shape[0]}) {
		return false
	}
	ti := x.shape[1]
	if ht != nil {
		h := T(ht)
		if h.dt != x.dt || len(h.shape) != 4 || h.shape[0] != x.shape[0] || h.shape[2] != x.shape[2] || h.shape[3] != x.shape[3] {
			return false
		}
		ti += h.shape[1]
	}
	tp, hp := ti+p.PadT[0]+p.PadT[1], x.shape[2]+p.PadH[0]+p.PadH[1]
	padded := int64(tp) * int64(hp) * int64(x.shape[3]+p.PadW[0]+p.PadW[1])
	st, sh, sw := p.Strides()
	return convPackGridOK(tp, hp) && convPackNormSmem(x.shape[0]) <= b.info.MaxSmemOptin &&
		b.convHopperApplies(x.shape[0], w.shape[0], [3]int{st, sh, sw}, padded, int64(w.shape[2]*w.shape[3]*w.shape[4]))
}

// NormConvFused implements backend.Conv3dNormHistory: bf16 on the sm_90a
// kernel's terms (channels, arch), sizes aside (a chunk too large for the
// kernel falls back, correctly, inside Conv3dNormWithHistory).
func (b *Backend) NormConvFused(xt, wt backend.Tensor) bool {
	x, w := T(xt), T(wt)
	return x.dt == tensor.BF16 && len(x.shape) == 4 && len(w.shape) == 5 && w.shape[1] == x.shape[0] &&
		b.convHopperApplies(x.shape[0], w.shape[0], [3]int{1, 1, 1}, 0, int64(w.shape[2]*w.shape[3]*w.shape[4]))
}

// Conv3dNormWithHistory implements backend.Conv3dNormHistory. Where the
// sm_90a conv runs, the norm + SiLU happens in its packing pass (one read
// of the raw input, no normalised tensor in memory), which also writes the
// tail, and the residual is added in its epilogue; elsewhere history and
// chunk are normalised separately (the norm is per position), convolved
// with Conv3dWithHistory, and the tail sliced.
func (b *Backend) Conv3dNormWithHistory(ht, xt, gt, wt, biast, rt backend.Tensor, p backend.Conv3dParams, keep int) (out, tail backend.Tensor) {
	if keep < 0 {
		backend.Fail("cuda: Conv3dNormWithHistory: keep %d frames", keep)
	}
	if b.convNormFusable(ht, xt, gt, wt, p) {
		return b.conv3d(ht, xt, gt, wt, biast, rt, p, keep)
	}
	y := b.ChannelRMSNorm(xt, gt, true)
	defer b.Free(y)
	var hn backend.Tensor
	if ht != nil {
		hn = b.ChannelRMSNorm(ht, gt, true)
		defer b.Free(hn)
	}
	out = b.Conv3dWithHistory(hn, y, wt, biast, p)
	if rt != nil {
		sum := b.Add(out, rt)
		b.Free(out)
		out = sum
	}
	if keep > 0 {
		tail = b.lastFrames(ht, xt, keep)
	}
	return out, tail
}

// lastFrames returns the last min(keep, Th+T) frames of Concat(1, h, x)
// as a new tensor (h may be nil).
func (b *Backend) lastFrames(h, x backend.Tensor, keep int) backend.Tensor {
	t := x.Shape()[1]
	if h == nil || t >= keep {
		return b.Slice(x, 1, t-min(keep, t), t)
	}
	cat := b.Concat(1, h, x)
	defer b.Free(cat)
	n := cat.Shape()[1]
	return b.Slice(cat, 1, n-min(keep, n), n)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Conv3dUpsample2x implements backend.Conv3dUpsample: where the sm_90a conv
// runs, its packing pass reads x through the nearest 2x upsampling, so the
// upsampled tensor is never written; elsewhere UpsampleNearest2x then
// Conv3d.
func (b *Backend) Conv3dUpsample2x(xt, wt, biast backend.Tensor, p backend.Conv3dParams) backend.Tensor {
	x, w := T(xt), T(wt)
	if x.dt == tensor.BF16 && len(x.shape) == 4 && len(w.shape) == 5 && w.shape[1] == x.shape[0] {
		tp, hp := x.shape[1]+p.PadT[0]+p.PadT[1], 2*x.shape[2]+p.PadH[0]+p.PadH[1]
		padded := int64(tp) * int64(hp) * int64(2*x.shape[3]+p.PadW[0]+p.PadW[1])
		st, sh, sw := p.Strides()
		if convPackGridOK(tp, hp) && b.convHopperApplies(x.shape[0], w.shape[0], [3]int{st, sh, sw}, padded, int64(w.shape[2]*w.shape[3]*w.shape[4])) {
			out, _ := b.conv3dUp(xt, wt, biast, p)
			return out
		}
	}
	u := b.UpsampleNearest2x(xt)
	defer b.Free(u)
	return b.Conv3d(u, wt, biast, p)
}
