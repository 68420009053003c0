package cuda

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// slaPrepCases cover ragged ends (L not a multiple of either block), both
// head dims, two batch entries, every block-size pair, and key-block counts
// large enough that top-k 0.05 keeps at least one block.
var slaPrepCases = []slaCase{
	{"L=2600 ragged, batch 2", 2, 2600, 2, 0, 0, 0, 0},
	{"d=64, L=2700 ragged, batch 2", 2, 2700, 3, 0, 0, 0, 64},
	{"L=2630 blocks 64/64", 1, 2630, 2, 0, 64, 64, 0},
	{"L=2690 blocks 128/128, batch 2", 2, 2690, 1, 0, 128, 128, 0},
	{"d=64, L=2601 blocks 128/64", 1, 2601, 2, 0, 128, 64, 64},
	{"d=64, L=2605 blocks 64/128, batch 2", 2, 2605, 2, 0, 64, 128, 64},
}

// TestSLAPrepFusedBitIdentical compares sla_prep.cu (the fused block map and
// quantisation) with the reference kernels byte for byte on fresh random
// inputs: block counts, look-up tables (up to each count), the 0/1 map, and
// for SageSLA the int8 codes, the q/k/v scales and the e4m3 V in both
// layouts; at top-k 0.05/0.1/0.2, float32 and bf16 inputs, SLA and SageSLA.
// Then inputs with tied block scores (keys repeating three block patterns,
// so the k-th score is tied and torch.topk's index rule decides) and a
// caller-given map.
func TestSLAPrepFusedBitIdentical(t *testing.T) {
	g, r := gpu(t), rng(t)
	check := func(t *testing.T, c slaCase, kind backend.AttentionKind, dt tensor.DType, q, k, v []float32, given []int8) {
		t.Helper()
		d := c.dim()
		shape := []int{c.batch, c.L, c.H * d}
		qt, kt, vt := g.Upload(dt, shape, q), g.Upload(dt, shape, k), g.Upload(dt, shape, v)
		pw := g.Upload(tensor.BF16, []int{d, d}, make([]float32, d*d))
		defer func() {
			for _, x := range []backend.Tensor{qt, kt, vt, pw} {
				g.Free(x)
			}
		}()
		cfg := c.cfg(kind)
		cfg.BlockMap = given
		p := slaCheck(qt, kt, vt, c.H, cfg, pw, nil)
		var gm *Tensor
		if given != nil {
			f := make([]float32, len(given))
			for i, x := range given {
				f[i] = float32(x)
			}
			gm = T(g.Upload(tensor.F32, []int{len(f)}, f))
			defer g.Free(gm)
		}
		layouts := []bool{false}
		if kind == backend.SageSLA {
			layouts = []bool{false, true}
		}
		for _, v8t := range layouts {
			if diff := g.slaPrepCompare(p, gm, v8t); diff != "" {
				t.Errorf("%v (e4m3 Vᵀ layout %v): fused and unfused differ: %s", kind, v8t, diff)
			}
		}
	}
	for _, c := range slaPrepCases {
		for _, topk := range []float64{0.05, 0.1, 0.2} {
			c.topk = topk
			for _, kind := range slaKinds {
				for _, dt := range dtypes() {
					t.Run(fmt.Sprintf("%s/top-k %.2f/%v/%v", c.name, topk, kind, dt), func(t *testing.T) {
						q, k, v := slaData(r, c, dt)
						check(t, c, kind, dt, q, k, v, nil)
					})
				}
			}
		}
	}
	ties := slaCase{"ties", 2, 2600, 2, 0.1, 0, 0, 0}
	for _, kind := range slaKinds {
		t.Run(fmt.Sprintf("ties/%v", kind), func(t *testing.T) {
			q, k, v := slaData(r, ties, tensor.BF16)
			bk := ties.geometry(kind).BlockK
			W := ties.H * ties.dim()
			pat := randn(r, 3*W, 1)
			tensor.RoundBF16Slice(pat)
			for l := 0; l < ties.batch*ties.L; l++ {
				copy(k[l*W:(l+1)*W], pat[(((l%ties.L)/bk)%3)*W:])
			}
			check(t, ties, kind, tensor.BF16, q, k, v, nil)
		})
		t.Run(fmt.Sprintf("given map/%v", kind), func(t *testing.T) {
			geo := ties.geometry(kind)
			m := make([]int8, geo.MapLen())
			kb := geo.KBlocks()
			for row := 0; row < len(m)/kb; row++ {
				for _, j := range r.Perm(kb)[:1+r.IntN(kb)] {
					m[row*kb+j] = 1
				}
			}
			q, k, v := slaData(r, ties, tensor.BF16)
			check(t, ties, kind, tensor.BF16, q, k, v, m)
		})
	}
}

// TestSLAPrepDefault checks that the fused preparation is what runs by
// default (its start-up check passed), so that a rejection shows as a
// failure, not as a silent fall-back to the reference kernels.
func TestSLAPrepDefault(t *testing.T) {
	g := gpu(t)
	if os.Getenv(SLAPrepEnv) != "" {
		t.Skipf("%s=%s set", SLAPrepEnv, os.Getenv(SLAPrepEnv))
	}
	if got := g.SLAPrepKernel(); !strings.HasPrefix(got, "fused") {
		t.Fatalf("fused block map + quantisation not running by default: %s", got)
	}
	t.Logf("preparation: %s", g.SLAPrepKernel())
}

// TestSLAPrepUnfusedMatchesCPU runs the CPU-comparison tests of the block
// map and of the whole op with the reference preparation forced (the other
// tests run the default, fused one).
func TestSLAPrepUnfusedMatchesCPU(t *testing.T) {
	g := gpu(t)
	g.SetSLAPrep("unfused")
	defer g.SetSLAPrep("")
	if got := g.SLAPrepKernel(); !strings.HasPrefix(got, "unfused") {
		t.Fatalf("reference preparation not running: %s", got)
	}
	for _, f := range []func(*testing.T){TestSLABlockMapMatchesCPU, TestSLABlockMapTies, TestSLAMatchesCPU, TestSLAGivenMap} {
		f(t)
	}
}

// BenchmarkSLAPrep times the block map + quantisation (slaPrepare) at the
// 1.3B 480p shape (L = 32760, 12 heads, d 128, top-k 0.1), unfused and
// fused, for SLA and for SageSLA with the e4m3 Vᵀ of the fp8/wgmma kernels:
// the median GPU time of 10 event-timed runs after 3 warm-ups, then each
// kernel's time per call over 10 profiled runs. Run it with -benchtime=1x.
func BenchmarkSLAPrep(b *testing.B) {
	g := gpu(b)
	g.Poison = false
	defer func() { g.Poison = true }()
	const L, H, D = 32760, 12, 128
	r := rand.New(rand.NewPCG(32760, 12))
	shape := []int{1, L, H * D}
	q := g.Upload(tensor.BF16, shape, benchVals(r, L*H*D, 1))
	k := g.Upload(tensor.BF16, shape, benchVals(r, L*H*D, 1))
	v := g.Upload(tensor.BF16, shape, benchVals(r, L*H*D, 1))
	pw := g.Upload(tensor.BF16, []int{D, D}, make([]float32, D*D))
	defer func() {
		for _, x := range []backend.Tensor{q, k, v, pw} {
			g.Free(x)
		}
	}()
	for _, kind := range slaKinds {
		p := slaCheck(q, k, v, H, backend.SLAConfig{Kind: kind, TopK: 0.1}, pw, nil)
		for _, fused := range []bool{false, true} {
			b.Run(fmt.Sprintf("%v/fused=%v", kind, fused), func(b *testing.B) {
				f := func() {
					defer g.enter()()
					pr := g.slaPrepare(p, p.q, p.k, p.v, nil, false, true, fused)
					pr.free(g)
				}
				var ms []float64
				for range b.N {
					var err error
					if ms, err = g.TimeGPU(3, 10, f); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(Median(ms), "ms")
				g.StartProfile()
				for range 10 {
					f()
				}
				for _, e := range g.StopProfile() {
					b.Logf("%-24s %8.4f ms per call (%d calls)", e.Name, e.MS/float64(e.Calls), e.Calls)
				}
			})
		}
	}
}
