package cuda

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// downloadInt8 copies an I8 tensor back (waits for queued work).
func downloadInt8(g *Backend, t backend.Tensor) []int8 {
	ct := T(t)
	if ct.dt != tensor.I8 {
		panic(fmt.Sprintf("downloadInt8: %v tensor", ct.dt))
	}
	b := g.rawBytes(ct)
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

// withFuse runs f with the fused int8 kernels on or off and reports how
// many fused launches it made. mode picks the non-default fused kernels:
// "lnq" the LayerNorm+quantiser cluster kernel, "gemm" the GEMM's
// GELU+quantiser epilogue ("gemmx" that of the cross-tile GEMM),
// "lnq+gemm" both.
func withFuse(on bool, f func(), mode ...string) int64 {
	defer func(o, l bool, gm string) { int8FuseOff, int8LNQOn, int8GELUQMode = o, l, gm }(int8FuseOff, int8LNQOn, int8GELUQMode)
	int8FuseOff = !on
	for _, m := range mode {
		int8LNQOn = strings.Contains(m, "lnq")
		if strings.Contains(m, "gemmx") {
			int8GELUQMode = "gemmx"
		} else if strings.Contains(m, "gemm") {
			int8GELUQMode = "gemm"
		}
	}
	before := int8FusedLaunches.Load()
	f()
	return int8FusedLaunches.Load() - before
}

// requireCodes fails unless the codes and scales are bit-identical.
func requireCodes(t *testing.T, what string, gq []int8, gs []float32, wq []int8, ws []float32) {
	t.Helper()
	if len(gq) != len(wq) || len(gs) != len(ws) {
		t.Fatalf("%s: %d codes / %d scales, want %d / %d", what, len(gq), len(gs), len(wq), len(ws))
	}
	for i := range ws {
		if math.Float32bits(gs[i]) != math.Float32bits(ws[i]) {
			t.Fatalf("%s: scale %d is %g, want %g", what, i, gs[i], ws[i])
		}
	}
	bad, first := 0, -1
	for i := range wq {
		if gq[i] != wq[i] {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d codes differ; first at %d: %d, want %d", what, bad, len(wq), first, gq[first], wq[first])
	}
}

// TestAddLayerNormInt8 checks the fused LayerNorm+quantiser (the cluster
// kernel, forced on) against the
// same ops unfused on the GPU (AddLayerNorm / LayerNorm(Modulate), then the
// activation quantiser) and against package quant's rule applied to the
// GPU's bf16 normed rows: codes, scales and the residual sum bit-identical.
// Widths: every Wan width (1536, 3072, 5120), the golden model's 256 and a
// 384 (two virtual warps); row counts with a partial last 128-row tile and
// a leading batch dimension; each form the DiT uses (gated residual +
// affine norm3, plain residual + modulation, gated + modulation, and the
// first block's modulation without a residual).
func TestAddLayerNormInt8(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		D, lead, rows  int
		add, gate, mod bool
	}{
		{1536, 1, 300, true, true, false},
		{1536, 1, 300, true, false, true},
		{1536, 1, 257, false, false, true},
		{1536, 2, 100, true, true, true},
		{5120, 1, 130, true, true, true},
		{5120, 1, 70, true, false, false},
		{3072, 1, 129, true, false, true},
		{256, 1, 1280, true, true, false},
		{384, 1, 200, false, false, true},
	} {
		D := tc.D
		name := fmt.Sprintf("D %d rows %dx%d add %v gate %v modulate %v", D, tc.lead, tc.rows, tc.add, tc.gate, tc.mod)
		t.Run(name, func(t *testing.T) {
			shape := []int{tc.lead, tc.rows, D}
			n := tc.lead * tc.rows * D
			xs := randn(r, n, 3)
			for i := 0; i < D; i++ {
				xs[5*D+i] *= 40 // one loud row: its tile's scale differs from the others
			}
			x := up(g, c, tensor.BF16, shape, xs)
			var y, gate, w, bias, shift, scale pair
			if tc.add {
				y = up(g, c, tensor.BF16, shape, randn(r, n, 2))
			}
			if tc.gate {
				gate = up(g, c, tensor.F32, []int{D}, randn(r, D, 0.5))
			}
			if tc.mod {
				shift = up(g, c, tensor.F32, []int{D}, randn(r, D, 0.5))
				scale = up(g, c, tensor.F32, []int{D}, randn(r, D, 0.5))
			} else {
				w = up(g, c, tensor.F32, []int{D}, randn(r, D, 1))
				bias = up(g, c, tensor.F32, []int{D}, randn(r, D, 1))
			}
			var sum, q, s backend.Tensor
			fused := withFuse(true, func() { sum, q, s = g.AddLayerNormInt8(x.g, y.g, gate.g, w.g, bias.g, shift.g, scale.g, 1e-6) }, "lnq")
			if g.info.Arch == "sm_90" && fused != 1 {
				t.Fatalf("the fused kernel did not run on sm_90 (%d fused launches)", fused)
			}
			var sum0, q0, s0 backend.Tensor
			withFuse(false, func() { sum0, q0, s0 = g.AddLayerNormInt8(x.g, y.g, gate.g, w.g, bias.g, shift.g, scale.g, 1e-6) })
			if !backend.SameShape(q.Shape(), shape) || q.DType() != tensor.I8 {
				t.Fatalf("codes %v %v, want int8 %v", q.DType(), q.Shape(), shape)
			}
			gq, gs := downloadInt8(g, q), g.Download(s)
			requireCodes(t, "fused vs unfused GPU ops", gq, gs, downloadInt8(g, q0), g.Download(s0))
			if tc.add {
				requireIdentical(t, g.Download(sum), g.Download(sum0), D)
			} else if sum != nil {
				t.Fatal("a sum without a residual update")
			}
			// The reference rule on the GPU's own bf16 normed rows.
			var normed backend.Tensor
			switch {
			case tc.add:
				_, normed = g.AddLayerNorm(x.g, y.g, gate.g, w.g, bias.g, shift.g, scale.g, 1e-6)
			case tc.mod:
				normed = g.LayerNormModulate(x.g, shift.g, scale.g, 1e-6)
			default:
				normed = g.LayerNorm(x.g, w.g, bias.g, 1e-6, tensor.BF16)
			}
			wq, ws, err := quant.Quantize(g.Download(normed), tc.lead*tc.rows, D)
			if err != nil {
				t.Fatal(err)
			}
			requireCodes(t, "fused vs quant.Quantize", gq, gs, wq, ws)
			for _, tt := range []backend.Tensor{x.g, y.g, gate.g, w.g, bias.g, shift.g, scale.g, sum, q, s, sum0, q0, s0, normed} {
				if tt != nil {
					g.Free(tt)
				}
			}
		})
	}
}

// TestInt8LinearGELUQ checks the GELU+quantiser pass and the GEMMs with the
// GELU+quantiser epilogue (n128p_i2f and the cross-tile n128px_i2f) against Int8LinearQ → GELUTanh → quantiser on
// the GPU (bit-identical codes and scales) and against package quant's rule applied to that GELU
// output; Int8LinearQ itself against the CPU backend's Int8Linear
// (bit-identical). Shapes: the golden model's FFN (K 256 → N 1024, 10
// row tiles), the 1.3B and 14B FFN widths with ragged M, no bias.
func TestInt8LinearGELUQ(t *testing.T) {
	g, c, r := gpu(t), cpu.New(), rng(t)
	for _, tc := range []struct {
		m, k, n int
		bias    bool
	}{
		{1280, 256, 1024, true},
		{300, 1536, 8960, true},
		{129, 5120, 13824, true},
		{200, 384, 640, false},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d bias %v", tc.m, tc.n, tc.k, tc.bias), func(t *testing.T) {
			x := up(g, c, tensor.BF16, []int{tc.m, tc.k}, heavyTailed(r, tc.m*tc.k))
			gw, gws, cw, cws := int8Weight(g, c, r, tc.n, tc.k)
			var bias pair
			if tc.bias {
				bias = up(g, c, tensor.BF16, []int{tc.n}, randn(r, tc.n, 0.5))
			}
			// The activation codes, as the LayerNorm or the GEMM before would give them.
			xq, xs := func() (backend.Tensor, backend.Tensor) {
				defer g.enter()()
				q, s := g.int8QuantAct(T(x.g), tc.m, tc.k)
				return q, s
			}()
			h := g.Int8LinearQ(xq, xs, gw, gws, bias.g)
			requireIdentical(t, g.Download(h), c.Download(c.Int8Linear(x.c, cw, cws, bias.c)), tc.n)
			var q, s, qe, se, q0, s0 backend.Tensor
			if fused := withFuse(true, func() { q, s = g.Int8LinearGELUQ(xq, xs, gw, gws, bias.g) }); fused != 1 {
				t.Fatalf("the GELU+quantiser pass did not run (%d fused launches)", fused)
			}
			fused := withFuse(true, func() { qe, se = g.Int8LinearGELUQ(xq, xs, gw, gws, bias.g) }, "gemm")
			if g.info.Arch == "sm_90" && fused != 1 {
				t.Fatalf("the GEMM with the GELU+quantiser epilogue did not run on sm_90 (%d fused launches)", fused)
			}
			var qx, sx backend.Tensor
			gqx := int8GQXLaunches.Load()
			fused = withFuse(true, func() { qx, sx = g.Int8LinearGELUQ(xq, xs, gw, gws, bias.g) }, "gemmx")
			if g.info.Arch == "sm_90" && (fused != 1 || int8GQXLaunches.Load() != gqx+1) {
				t.Fatalf("the cross-tile GEMM with the GELU+quantiser epilogue did not run on sm_90 (%d fused launches)", fused)
			}
			// The same on a grid of 5 blocks: every block's k-block stream
			// crosses many tiles.
			var qx5, sx5 backend.Tensor
			func() {
				defer func(c int) { int8GridCap = c }(int8GridCap)
				int8GridCap = 5
				withFuse(true, func() { qx5, sx5 = g.Int8LinearGELUQ(xq, xs, gw, gws, bias.g) }, "gemmx")
			}()
			withFuse(false, func() { q0, s0 = g.Int8LinearGELUQ(xq, xs, gw, gws, bias.g) })
			gq, gs := downloadInt8(g, q), g.Download(s)
			requireCodes(t, "fused pass vs unfused GPU ops", gq, gs, downloadInt8(g, q0), g.Download(s0))
			requireCodes(t, "GEMM epilogue vs unfused GPU ops", downloadInt8(g, qe), g.Download(se), downloadInt8(g, q0), g.Download(s0))
			requireCodes(t, "cross-tile GEMM epilogue vs unfused GPU ops", downloadInt8(g, qx), g.Download(sx), downloadInt8(g, q0), g.Download(s0))
			requireCodes(t, "cross-tile GEMM epilogue on 5 blocks vs unfused GPU ops", downloadInt8(g, qx5), g.Download(sx5), downloadInt8(g, q0), g.Download(s0))
			gl := g.GELUTanh(h)
			wq, ws, err := quant.Quantize(g.Download(gl), tc.m, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			requireCodes(t, "fused vs quant.Quantize of the GPU's GELU", gq, gs, wq, ws)
			for _, tt := range []backend.Tensor{x.g, gw, gws, bias.g, xq, xs, h, q, s, qe, se, qx, sx, qx5, sx5, q0, s0, gl} {
				if tt != nil {
					g.Free(tt)
				}
			}
		})
	}
}
