package cuda

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// BenchmarkInt8Linear times the W8A8 layer (activation quantiser + int8
// GEMM + bias) at the 480p Wan shapes, M = 32760 tokens, beside the bf16
// cuBLASLt Linear of the same shape, and the quantiser alone. Each
// sub-benchmark reports the median GPU time of 15 event-timed runs (after 3
// warm-up runs) and TOPS = 2·M·N·K / time; run it with -benchtime=1x.
// Variants: bf16 (cuBLASLt), quant (the quantiser only), mma
// (int8_linear.cu), and on sm_90 the sm_90a instances (int8TMAVariants). A
// suffix @N caps the grid at N clusters (mc variants) or blocks; -st turns the tensor
// stores off; q, gq, gq-gemm, gq-gemmx, gq-unfused time the GEMM on codes
// (+ GELU + quantiser) with the default instance, q:NAME (etc.) with
// instance NAME.
// $TURBODIFFUSION_INT8_BENCH_VARIANTS (comma-separated) narrows the list.
func BenchmarkInt8Linear(b *testing.B) {
	g := gpu(b)
	g.Poison = false
	defer func() { g.Poison = true }()
	const m = 32760
	for _, s := range []struct{ n, k int }{
		{8960, 1536}, {1536, 1536}, {1536, 8960}, // Wan 1.3B: FFN in, attention, FFN out
		{5120, 5120}, {13824, 5120}, {5120, 13824}, // Wan 14B
	} {
		r := rand.New(rand.NewPCG(uint64(s.n), uint64(s.k)))
		x := g.Upload(tensor.BF16, []int{m, s.k}, benchVals(r, m*s.k, 1))
		wb := g.Upload(tensor.BF16, []int{s.n, s.k}, benchVals(r, s.n*s.k, 0.03))
		codes := make([]int8, s.n*s.k)
		for i := range codes {
			codes[i] = int8(r.IntN(256) - 128)
		}
		sr, sc := quant.ScaleShape(s.n, s.k)
		wq := g.UploadInt8([]int{s.n, s.k}, codes)
		ws := g.Upload(tensor.F32, []int{sr, sc}, benchVals(r, sr*sc, 1e-3))
		bias := g.Upload(tensor.BF16, []int{s.n}, benchVals(r, s.n, 1))
		ops := 2 * float64(m) * float64(s.n) * float64(s.k)
		variants := []string{"bf16", "quant", "mma"}
		if g.info.Arch == "sm_90" {
			variants = append(variants, "n128p_i2f", "n128p_i2f-st", "n128p", "n192_i2f", "n128w3_i2f", "n128px_i2f", "n128w3x_i2f",
				"q", "q:n128p_i2f", "q:n128px_i2f", "q:n128w3x_i2f", "gq", "gq-gemm", "gq-gemmx", "gq-unfused")
		}
		if e := os.Getenv("TURBODIFFUSION_INT8_BENCH_VARIANTS"); e != "" {
			variants = strings.Split(e, ",")
		}
		for _, v := range variants {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, s.n, s.k, v), func(b *testing.B) {
				defer func(mode string, c int, st bool) {
					int8GemmMode, int8GridCap, int8TMAStore = mode, c, st
				}(int8GemmMode, int8GridCap, int8TMAStore)
				int8GemmMode = v
				if mode, ok := strings.CutSuffix(v, "-st"); ok { // without tensor stores
					int8GemmMode, int8TMAStore = mode, false
				}
				if mode, cl, ok := strings.Cut(int8GemmMode, "@"); ok { // at most cl clusters (mc) or blocks
					int8GemmMode = mode
					if _, err := fmt.Sscan(cl, &int8GridCap); err != nil {
						b.Fatalf("variant %q: %v", v, err)
					}
				}
				f := func() { g.Free(g.int8Linear(x, wq, ws, bias)) }
				base, gemm, _ := strings.Cut(v, ":") // q:NAME: the GEMM on codes with instance NAME
				switch base {
				case "q", "gq", "gq-gemm", "gq-gemmx", "gq-unfused": // the GEMM on codes; + GELU + quantiser (fused or not)
					int8GemmMode = gemm
					xt := T(x)
					var xq, sx *Tensor
					func() { defer g.enter()(); xq, sx = g.int8QuantAct(xt, m, s.k) }()
					defer g.Free(xq)
					defer g.Free(sx)
					f = func() { g.Free(g.Int8LinearQ(xq, sx, wq, ws, bias)) }
					if base != "q" {
						off := base == "gq-unfused"
						f = func() {
							defer func(o bool, m string) { int8FuseOff, int8GELUQMode = o, m }(int8FuseOff, int8GELUQMode)
							int8FuseOff = off
							if base == "gq-gemm" {
								int8GELUQMode = "gemm"
							} else if base == "gq-gemmx" {
								int8GELUQMode = "gemmx"
							}
							q, sc := g.Int8LinearGELUQ(xq, sx, wq, ws, bias)
							g.Free(q)
							g.Free(sc)
						}
					}
				case "bf16":
					f = func() { g.Free(g.Linear(x, wb, bias)) }
				case "quant":
					xt := T(x)
					f = func() {
						defer g.enter()()
						xq, sx := g.int8QuantAct(xt, m, s.k)
						g.Free(xq)
						g.Free(sx)
					}
				}
				before := int8HopperLaunches.Load()
				var ms []float64
				for range b.N {
					var err error
					if ms, err = g.TimeGPU(3, 15, f); err != nil {
						b.Fatal(err)
					}
				}
				if base != "bf16" && base != "quant" && base != "mma" && int8HopperLaunches.Load() == before {
					b.Fatalf("%s: the sm_90a kernel did not run", v)
				}
				med := Median(ms)
				b.ReportMetric(med, "ms")
				if base != "quant" {
					b.ReportMetric(ops/med/1e9, "TOPS")
				}
			})
		}
		g.Free(x)
		g.Free(wb)
		g.Free(wq)
		g.Free(ws)
		g.Free(bias)
	}
}

// benchVals returns n bf16-exact values uniform in [-s, s) (cheaper than
// normals for the 10^8-element benchmark inputs; the GEMM's speed does not
// depend on the distribution, only on its not being zero).
func benchVals(r *rand.Rand, n int, s float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = tensor.RoundBF16(float32((2*r.Float64() - 1) * s))
	}
	return out
}

// BenchmarkAddLayerNormInt8 times the DiT's residual update + modulated
// LayerNorm with the int8 activation codes as output (fused: one kernel;
// unfused: AddLayerNorm then the quantiser), beside AddLayerNorm alone,
// at M = 32760 tokens and the 1.3B / 14B widths. Median of 15 event-timed
// runs; GB/s counts the fused kernel's traffic (x, y read, sum written,
// codes written). Run with -benchtime=1x.
func BenchmarkAddLayerNormInt8(b *testing.B) {
	g := gpu(b)
	g.Poison = false
	defer func() { g.Poison = true }()
	const m = 32760
	for _, d := range []int{1536, 5120} {
		r := rand.New(rand.NewPCG(uint64(d), 3))
		x := g.Upload(tensor.BF16, []int{m, d}, benchVals(r, m*d, 2))
		y := g.Upload(tensor.BF16, []int{m, d}, benchVals(r, m*d, 2))
		gate := g.Upload(tensor.F32, []int{d}, benchVals(r, d, 1))
		sh := g.Upload(tensor.F32, []int{d}, benchVals(r, d, 1))
		sc := g.Upload(tensor.F32, []int{d}, benchVals(r, d, 1))
		for _, v := range []string{"bf16", "fused", "unfused"} {
			b.Run(fmt.Sprintf("%dx%d/%s", m, d, v), func(b *testing.B) {
				defer func(o, l bool) { int8FuseOff, int8LNQOn = o, l }(int8FuseOff, int8LNQOn)
				int8FuseOff = v == "unfused"
				int8LNQOn = v == "fused"
				f := func() {
					s, q, qs := g.AddLayerNormInt8(x, y, gate, nil, nil, sh, sc, 1e-6)
					g.Free(s)
					g.Free(q)
					g.Free(qs)
				}
				if v == "bf16" {
					f = func() {
						s, n := g.AddLayerNorm(x, y, gate, nil, nil, sh, sc, 1e-6)
						g.Free(s)
						g.Free(n)
					}
				}
				before := int8FusedLaunches.Load()
				var ms []float64
				for range b.N {
					var err error
					if ms, err = g.TimeGPU(3, 15, f); err != nil {
						b.Fatal(err)
					}
				}
				if v == "fused" && g.info.Arch == "sm_90" && int8FusedLaunches.Load() == before {
					b.Fatal("the fused kernel did not run")
				}
				med := Median(ms)
				b.ReportMetric(med, "ms")
				b.ReportMetric(float64(m)*float64(d)*7/med/1e6, "GB/s")
			})
		}
		for _, t := range []any{x, y, gate, sh, sc} {
			g.Free(t.(*Tensor))
		}
	}
}
