package cuda

import (
	"fmt"
	"math"
	"os"
	"sync/atomic"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// int8Linear is TurboDiffusion's W8A8 layer (backend.DiTOps.Int8Linear) on
// the GPU (kernels/int8_linear.cu): x [..., K] (BF16, or F32 as the CPU
// backend allows) quantised per 128x128 tile, int8 GEMM against w [N, K]
// with scale [ceil(N/128), K/128], rounded to x's dtype, then bias [N] (or
// nil) added in that dtype. Bit-exact with the CPU backend.
func (b *Backend) int8Linear(xt, wt, st, biast backend.Tensor) backend.Tensor {
	x, w, s := T(xt), T(wt), T(st)
	checkFloat("Int8Linear input", x)
	n, k, bp, bdt := int8CheckWeight("Int8Linear", w, s, biast)
	if len(x.shape) == 0 || x.shape[len(x.shape)-1] != k {
		backend.Fail("cuda: Int8Linear: input shape %v does not end in the weight's K=%d (weight %v)", x.shape, k, w.shape)
	}
	m := int(x.n()) / k
	defer b.enter()()
	out := b.newTensor(x.dt, append(append([]int(nil), x.shape[:len(x.shape)-1]...), n))
	if m == 0 || n == 0 {
		return out
	}
	xq, sx := b.int8QuantAct(x, m, k)
	defer b.Free(xq)
	defer b.Free(sx)
	b.int8Gemm(out, xq, sx, w, s, bp, bdt, m, n, k)
	return out
}

// int8CheckWeight checks an Int8Linear's weight w [N, K] int8, its scale
// [ceil(N/128), K/128] float32 and bias [N] (or nil), and returns N, K and
// the bias pointer and dtype code.
func int8CheckWeight(op string, w, s *Tensor, biast backend.Tensor) (n, k int, bp uintptr, bdt int32) {
	if w.dt != tensor.I8 || len(w.shape) != 2 {
		backend.Fail("cuda: %s: weight must be a 2-D int8 tensor [N, K], got %v %v", op, w.dt, w.shape)
	}
	n, k = w.shape[0], w.shape[1]
	if k <= 0 || k%quant.Block != 0 {
		backend.Fail("cuda: %s: K=%d is not a positive multiple of %d (the int8 GEMM needs whole 128-blocks)", op, k, quant.Block)
	}
	sr, sc := quant.ScaleShape(n, k)
	if s.dt != tensor.F32 || len(s.shape) != 2 || s.shape[0] != sr || s.shape[1] != sc {
		backend.Fail("cuda: %s: weight scale is %v %v, want float32 [%d, %d] for weight %v", op, s.dt, s.shape, sr, sc, w.shape)
	}
	if biast != nil {
		bt := T(biast)
		checkFloat(op+" bias", bt)
		if len(bt.shape) != 1 || bt.shape[0] != n {
			backend.Fail("cuda: %s: bias shape %v, want [%d]", op, bt.shape, n)
		}
		bp, bdt = bt.buf.ptr, dtCode(bt.dt)
	}
	return n, k, bp, bdt
}

// int8Gemm runs the GEMM of int8Linear on activation codes xq [m, k] with
// scales sx into out [m, n] (its dtype), with bias: the sm_90a kernel where
// it applies, else the mma.sync one. Caller holds the device.
func (b *Backend) int8Gemm(out, xq, sx, w, s *Tensor, bp uintptr, bdt int32, m, n, k int) {
	if v, ok := b.int8HopperPick(m, n, w.buf.ptr); ok {
		b.int8GemmHopper(v, out, xq, sx, w, s, bp, bdt, m, n, k)
		return
	}
	const smem = 4 * 128 * 144 // two stages of 128-row X and W tiles, 144-byte rows
	b.launch(b.fn("int8_linear.cu", "int8_gemm_kernel"), [3]int{(n + 127) / 128, (m + 127) / 128, 1}, block256, smem,
		out.buf.ptr, dtCode(out.dt), xq.buf.ptr, sx.buf.ptr, w.buf.ptr, s.buf.ptr, bp, bdt, int32(m), int32(n), int32(k))
}

// int8QuantAct quantises the activations x (m rows of k) per 128×128 tile:
// int8 codes [m, k] and float32 scales [ceil(m/128), k/128]; the caller
// frees both. bf16 x reads each element once (int8_quant_bf16_kernel).
// Caller holds the device.
func (b *Backend) int8QuantAct(x *Tensor, m, k int) (xq, sx *Tensor) {
	xr, xc := quant.ScaleShape(m, k)
	if xr > 65535 {
		backend.Fail("cuda: Int8Linear: %d rows need %d row tiles, more than one launch takes (65535)", m, xr)
	}
	xq = b.newTensor(tensor.I8, []int{m, k})
	sx = b.newTensor(tensor.F32, []int{xr, xc})
	if x.dt == tensor.BF16 && x.buf.ptr%16 == 0 {
		b.launch(b.fn("int8_linear.cu", "int8_quant_bf16_kernel"), [3]int{xc, xr, 1}, block256, 0,
			xq.buf.ptr, sx.buf.ptr, x.buf.ptr, int32(m), int32(k))
	} else {
		b.launch(b.fn("int8_linear.cu", "int8_quant_kernel"), [3]int{xc, xr, 1}, block256, 0,
			xq.buf.ptr, sx.buf.ptr, x.buf.ptr, dtCode(x.dt), int32(m), int32(k))
	}
	return xq, sx
}

// Int8GemmEnv selects the int8 GEMM: "mma" keeps the mma.sync kernel of
// int8_linear.cu on Hopper too (the baseline the benchmarks compare with);
// a key of int8TMAVariants ("n128p", "n192_i2f", ...) forces that sm_90a
// instance; anything else picks.
const Int8GemmEnv = "TURBODIFFUSION_INT8_GEMM"

// int8GemmMode is Int8GemmEnv's value, read once; tests and benchmarks set
// it to compare the kernels in one process.
var int8GemmMode = os.Getenv(Int8GemmEnv)

// int8HopperLaunches counts GEMMs run by the sm_90a kernel, so a test can
// tell that the fast path was taken rather than silently skipped.
var int8HopperLaunches atomic.Int64

// int8TMA is one instance of int8_gemm_tma_n<BN>[p][w3][x][_mc][_i2f] in
// kernels/int8_gemm_sm90a.cu: BN weight rows per block, NS ring stages,
// pipe for the variants with two int32 accumulator sets.
type int8TMA struct {
	bn, ns int
	wgs    int // consumer warpgroups of 64 rows: 2 (128-row tiles, the default when 0) or 3
	pipe   bool
	xt     bool   // one k-block stream across tiles: a tile's last fold and epilogue overlap the next tile's wgmmas
	mc     bool   // clusters of 2 blocks sharing the W tile by multicast
	cvt    string // "" (magic-number add) or "_i2f" (I2FP): how the fold converts the int32 sums
}

func (v int8TMA) name() string {
	p := ""
	if v.pipe {
		p = "p"
	}
	if v.wgs == 3 {
		p += "w3"
	}
	if v.xt {
		p += "x"
	}
	if v.mc {
		p += "_mc"
	}
	return fmt.Sprintf("int8_gemm_tma_n%d%s%s", v.bn, p, v.cvt)
}

// smem is the dynamic shared memory: NS stages of a 128-row X tile and a
// BN-row W tile (128 bytes a row), the two consumer warpgroups' 64×BN bf16
// output staging and BN bias values, the 2·NS mbarriers, and room to align
// it all to kernels.SmemAlign bytes (int8_gemm_sm90a.cu lays it out).
func (v int8TMA) smem() int {
	w := v.warpgroups()
	return v.ns*(64*w+v.bn)*128 + kernels.SmemAlign + 16*v.ns + w*64*v.bn*2 + w*v.bn*4 + 64 // + 64: the GELU epilogue's amax exchange
}

// warpgroups is the number of consumer warpgroups; a tile has 64 rows per
// warpgroup.
func (v int8TMA) warpgroups() int { return max(v.wgs, 2) }

// int8DefaultVariant is the sm_90a instance picked when Int8GemmEnv names
// none: n128w3_i2f, 3–5% faster than n128p_i2f on five of the six Wan
// shapes on the H200 and within 1% on the sixth (docs/PERF.md, "W8A8,
// session 3").
const int8DefaultVariant = "n128w3_i2f"

// The instances compiled in int8_gemm_sm90a.cu (NS as there).
var int8TMAVariants = map[string]int8TMA{
	"n128p_i2f":  {bn: 128, ns: 6, pipe: true, cvt: "_i2f"},
	"n128p":      {bn: 128, ns: 6, pipe: true},
	"n192_i2f":   {bn: 192, ns: 4, cvt: "_i2f"},
	"n192_mc":    {bn: 192, ns: 4, mc: true}, // multicast: about half the speed, kept compiled and tested
	"n128w3_i2f": {bn: 128, ns: 4, wgs: 3, cvt: "_i2f"},
	// The cross-tile k-block stream with the next fold's scales loaded a
	// fold ahead (int8_gemm_sm90a.cu, XT).
	"n128px_i2f":  {bn: 128, ns: 6, pipe: true, xt: true, cvt: "_i2f"},
	"n128w3x_i2f": {bn: 128, ns: 4, wgs: 3, xt: true, cvt: "_i2f"},
}

// int8TMAStore sends the sm_90a GEMM's bf16 output out by tensor stores;
// the benchmark turns it off to compare with 16-byte stores by each thread.
var int8TMAStore = true

// int8GridCap, when positive, caps the persistent grid: the clusters of an
// mc launch (the benchmark uses it to tell a scheduling limit from a slow
// kernel), the blocks of any other (tests use it to make every block walk
// many tiles, which small shapes otherwise never do).
var int8GridCap int

// int8HopperPick chooses the sm_90a instance for an m×n output, and false
// when the mma.sync kernel must run: not an sm_90 device, no tensor-map
// support in the driver, the weight not 16-byte aligned (a view), or
// Int8GemmEnv says "mma".
func (b *Backend) int8HopperPick(m, n int, wptr uintptr) (int8TMA, bool) {
	if int8GemmMode == "mma" || b.info.Arch != "sm_90" || b.drv.cuTensorMapEncodeTiled == 0 || wptr%16 != 0 {
		return int8TMA{}, false
	}
	v, ok := int8TMAVariants[int8GemmMode]
	if !ok {
		v = int8TMAVariants[int8DefaultVariant]
	}
	if b.info.MaxSmemOptin > 0 && v.smem() > b.info.MaxSmemOptin {
		return int8TMA{}, false // a part with less shared memory than the H100's 227 KiB
	}
	return v, true
}

// int8GemmHopper runs the GEMM of int8Linear with the sm_90a kernel: tensor
// maps over the activation codes xq [m, k] and the weight codes w [n, k]
// (boxes of 128 bytes × 128 or BN rows, 128-byte swizzle), one block per
// 128×BN output tile, on a persistent grid. Caller holds the device.
func (b *Backend) int8GemmHopper(v int8TMA, out, xq, sx, w, s *Tensor, bp uintptr, bdt int32, m, n, k int) {
	bm := 64 * v.warpgroups()
	tiles := int64((m+bm-1)/bm) * int64((n+v.bn-1)/v.bn)
	if tiles >= math.MaxInt32 {
		backend.Fail("cuda: Int8Linear: output [%d, %d] needs %d tiles, more than one launch takes", m, n, tiles)
	}
	grid := int(min(tiles, int64(max(b.info.SMs, 1)))) // persistent: one block per SM walks the tiles
	if int8GridCap > 0 && !v.mc {
		grid = min(grid, int8GridCap)
	}
	boxB := v.bn
	if v.mc {
		// Whole clusters of 2, each walking pairs of row tiles; a block
		// loads half of the W tile.
		units := int64((m+255)/256) * int64((n+v.bn-1)/v.bn)
		cl := max(b.info.SMs/2, 1)
		if int8GridCap > 0 {
			cl = min(cl, int8GridCap)
		}
		grid = 2 * int(min(units, int64(cl)))
		boxB = v.bn / 2
	}
	tmA := b.encodeTensorMap("Int8Linear activation codes", xq.buf.ptr, tensorMapRows(tmapU8, 1, int64(m), int64(k), bm, 128, tmapSwizzle128))
	tmB := b.encodeTensorMap("Int8Linear weight codes", w.buf.ptr, tensorMapRows(tmapU8, 1, int64(n), int64(k), boxB, 128, tmapSwizzle128))
	// bf16 output with whole 16-byte rows leaves by tensor stores (64×64
	// boxes from the epilogue's swizzled staging); otherwise tmY is unused.
	tmY, tst := new(tensorMap), int32(0)
	if int8TMAStore && out.dt == tensor.BF16 && n%8 == 0 && out.buf.ptr%16 == 0 {
		tmY = b.encodeTensorMap("Int8Linear output", out.buf.ptr, tensorMapRows(tmapBF16, 2, int64(m), int64(n), 64, 64, tmapSwizzle128))
		tst = 1
	}
	b.launch(b.fn("int8_gemm_sm90a.cu", v.name()), [3]int{grid, 1, 1}, [3]int{128 * (v.warpgroups() + 1), 1, 1}, v.smem(),
		tmA, tmB, tmY, tst, out.buf.ptr, dtCode(out.dt), sx.buf.ptr, s.buf.ptr, bp, bdt, int32(m), int32(n), int32(k))
	int8HopperLaunches.Add(1)
}
