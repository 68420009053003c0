package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// slaLinearBoth runs the linear branch with proj_l both ways on bf16 q, k,
// v [B, L, H·d] and returns the fused and the unfused (feature maps,
// cuBLASLt GEMMs, the norm kernel, then Linear) outputs, [B·L·H, d].
func slaLinearBoth(g *Backend, q, k, v, pw, pb backend.Tensor, B, L, H, d int) (fused, unfused []float32) {
	var f, opre *Tensor
	func() {
		defer g.enter()()
		f = g.slaLinearFused(T(q), T(k), T(v), T(pw), tPtr(pb), B, L, H, d)
		opre = g.slaLinear(T(q), T(k), T(v), B, L, H, d)
	}()
	ref := g.Linear(g.Reshape(opre, B*L*H, d), pw, pb)
	fused, unfused = g.Download(f), g.Download(ref)
	for _, t := range []backend.Tensor{f, opre, ref} {
		g.Free(t)
	}
	return fused, unfused
}

// TestSLALinearFusedVsUnfused compares the fused linear branch's proj_l
// output with the unfused one's on random bf16 inputs (ragged L, both head
// dims, batch 2), also with the blocks per head capped so that each block
// streams many tiles through its cp.async rings as at the real shapes, then
// runs the whole op with the fused branch against the CPU. Both branches
// round at the same points and differ only in the order of float32 sums
// (the chunked KᵀV, the tensor-core dot products), which flips a bf16
// rounding now and then: most values must be bit-identical (measured on an
// H200: 99.3–99.8%; dropping one rounding of o in a quarter of the values
// gave 88.8–89.9%) and the rel-L2 within the SLA bound. The mma.sync builds run here, the wgmma ones
// (sm_90) in TestSLALinearFusedWgmma.
func TestSLALinearFusedVsUnfused(t *testing.T) { checkSLALinearBuilds(t, false) }

// TestSLALinearFusedWgmma is TestSLALinearFusedVsUnfused for every pairing
// of steps 1 and 3 with at least one wgmma build (sm_90 only).
func TestSLALinearFusedWgmma(t *testing.T) {
	if g := gpu(t); g.info.Arch != "sm_90" {
		t.Skipf("the wgmma builds need sm_90, device is %s", g.info.Arch)
	}
	checkSLALinearBuilds(t, true)
}

// checkSLALinearBuilds runs the pairings of sla_lin_kv and sla_lin_out
// builds that use wgmma (wg) or only mma.sync (!wg).
func checkSLALinearBuilds(t *testing.T, wg bool) {
	g, c, r := gpu(t), cpu.New(), rng(t)
	defer func() { slaLinSpread = 0 }()
	defer g.SetSLALinear("")
	for _, tc := range []struct{ batch, L, H, d, spread int }{
		{2, 1000, 3, 128, 0}, {2, 1000, 3, 128, 2}, {1, 4133, 2, 128, 1},
		{2, 777, 2, 64, 0}, {2, 777, 2, 64, 3}, {1, 4133, 1, 64, 1},
	} {
		name := fmt.Sprintf("B=%d L=%d H=%d d=%d spread=%d", tc.batch, tc.L, tc.H, tc.d, tc.spread)
		t.Run(name, func(t *testing.T) {
			slaLinSpread = tc.spread
			sc := slaCase{name, tc.batch, tc.L, tc.H, 0.25, 0, 0, tc.d}
			q, k, v := slaData(r, sc, tensor.BF16)
			d := tc.d
			pwv, pbv := randn(r, d*d, 4/math.Sqrt(float64(d))), randn(r, d, 0.5)
			tensor.RoundBF16Slice(pwv)
			tensor.RoundBF16Slice(pbv)
			shape := []int{tc.batch, tc.L, tc.H * d}
			qt, kt, vt := g.Upload(tensor.BF16, shape, q), g.Upload(tensor.BF16, shape, k), g.Upload(tensor.BF16, shape, v)
			pw, pb := g.Upload(tensor.BF16, []int{d, d}, pwv), g.Upload(tensor.BF16, []int{d}, pbv)
			defer func() { slaLinOutForce, slaLinKVForce = slaLinOutShape{}, nil }()
			for _, kb := range []slaLinKVShape{{false}, {true}} {
				if kb.wg && g.info.Arch != "sm_90" {
					t.Logf("sla_lin_kv wgmma build needs sm_90, device is %s", g.info.Arch)
					continue
				}
				slaLinKVForce = &kb
				for _, sh := range slaLinOutShapes[d] {
					if (kb.wg || sh.wg) != wg {
						continue
					}
					if !sh.fits(g, d) {
						t.Logf("sla_lin_out build %v does not run here (%d B of shared memory, the device has %d; %s)", sh, sh.smem(d), g.info.MaxSmemOptin, g.info.Arch)
						continue
					}
					slaLinOutForce = sh
					got, want := slaLinearBoth(g, qt, kt, vt, pw, pb, tc.batch, tc.L, tc.H, d)
					same := 0
					for i, x := range got {
						if math.IsNaN(float64(x)) {
							t.Fatalf("kv %v, out %v: fused output %d is NaN (unwritten?), unfused %g", kb, sh, i, want[i])
						}
						if x == want[i] {
							same++
						}
					}
					rel, frac := checkRelL2(got, want), float64(same)/float64(len(got))
					t.Logf("kv %v, out %v: fused vs unfused: rel-L2 %.2e, %.2f%% bit-identical", kb, sh, rel, 100*frac)
					if !(rel <= 5e-3) {
						t.Errorf("kv %v, out %v: fused vs unfused rel-L2 %.3e > 5e-3", kb, sh, rel)
					}
					if frac < 0.98 {
						t.Errorf("kv %v, out %v: only %.2f%% of the fused outputs equal the unfused ones bit for bit, want ≥ 98%%", kb, sh, 100*frac)
					}
				}
			}
			// The whole op with the first wgmma (wg) or mma.sync builds.
			slaLinKVForce, slaLinOutForce = &slaLinKVShape{wg}, slaLinOutShape{}
			for _, sh := range slaLinOutShapes[d] {
				if sh.wg == wg && sh.fits(g, d) {
					slaLinOutForce = sh
					break
				}
			}
			for _, x := range []backend.Tensor{qt, kt, vt, pw, pb} {
				g.Free(x)
			}
			g.SetSLALinear("fused")
			if got := g.SLALinearKernel(); !strings.HasPrefix(got, "fused") {
				t.Fatalf("fused linear branch unavailable: %s", got)
			}
			runSLAPair(t, g, c, sc, backend.SLA, tensor.BF16, q, k, v, pwv, pbv, nil)
		})
	}
}

// BenchmarkSLALinear480p times the linear branch with proj_l alone, both
// ways (fused: the default builds, then steps 1-2 (KᵀV and ks) alone with
// each sla_lin_kv build, then the whole branch with each sla_lin_out
// build), at the 480p Wan2.1 shape (L = 32760, 12 heads of 128): what one
// layer of the 1.3B DiT spends on it. GB/s counts q, k, v read once and the
// output written once.
func BenchmarkSLALinear480p(b *testing.B) {
	g := gpu(b)
	g.Poison = false
	defer func() { g.Poison = true }()
	const L, H, D = 32760, 12, 128
	r := rand.New(rand.NewPCG(5, 6))
	sc := slaCase{"480p", 1, L, H, 0.1, 0, 0, 0}
	q, k, v := slaData(r, sc, tensor.BF16)
	shape := []int{L, H * D}
	qt, kt, vt := g.Upload(tensor.BF16, shape, q), g.Upload(tensor.BF16, shape, k), g.Upload(tensor.BF16, shape, v)
	pw := g.Upload(tensor.BF16, []int{D, D}, randn(r, D*D, 0.05))
	pb := g.Upload(tensor.BF16, []int{D}, randn(r, D, 0.05))
	defer func() { slaLinOutForce, slaLinKVForce = slaLinOutShape{}, nil }()
	type variant struct {
		name  string
		shape slaLinOutShape
		kv    *slaLinKVShape
	}
	vars := []variant{{"unfused", slaLinOutShape{}, nil}, {"fused", slaLinOutShape{}, nil}}
	kvs := []slaLinKVShape{{false}}
	if g.info.Arch == "sm_90" {
		kvs = append(kvs, slaLinKVShape{true})
	}
	for i := range kvs {
		vars = append(vars, variant{"fused/steps 1-2 only, kv " + kvs[i].String(), slaLinOutShape{}, &kvs[i]})
	}
	for _, sh := range slaLinOutShapes[D] {
		if sh.fits(g, D) {
			vars = append(vars, variant{"fused/out " + sh.String(), sh, nil})
		}
	}
	for _, vr := range vars {
		kern := vr.name
		slaLinOutForce, slaLinKVForce = vr.shape, vr.kv
		b.Run(kern, func(b *testing.B) {
			run := func() {
				var out, opre *Tensor
				func() {
					defer g.enter()()
					if strings.HasPrefix(kern, "fused/steps 1-2") {
						kvt, ks := g.slaLinearState(T(kt), T(vt), 1, L, H, D)
						g.Free(kvt)
						g.Free(ks)
					} else if strings.HasPrefix(kern, "fused") {
						out = g.slaLinearFused(T(qt), T(kt), T(vt), T(pw), T(pb), 1, L, H, D)
					} else {
						opre = g.slaLinear(T(qt), T(kt), T(vt), 1, L, H, D)
					}
				}()
				if opre != nil {
					g.Free(g.Linear(g.Reshape(opre, L*H, D), pw, pb))
					g.Free(opre)
				} else if out != nil {
					g.Free(out)
				}
			}
			run()
			g.Sync()
			b.ResetTimer()
			for range b.N {
				run()
			}
			g.Sync()
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(sec*1e3, "ms/op")
			b.ReportMetric(4*float64(L*H*D)*2/sec/1e9, "GB/s")
		})
	}
}

// TestSLALinearBuildsExist needs no GPU: every build the host may launch
// (slaLinOutShapes, both sla_lin_kv kinds, each head dim) is instantiated
// in its module, so a list edited on one side only fails here, not on a
// device.
func TestSLALinearBuildsExist(t *testing.T) {
	src := func(mod string) string {
		m, ok := kernels.Module(mod)
		if !ok {
			t.Fatalf("module %s not embedded", mod)
		}
		return m.Code
	}
	for _, d := range []int{64, 128} {
		for _, kb := range []slaLinKVShape{{false}, {true}} {
			inst := fmt.Sprintf("SLA_LIN_KV(%d)", d)
			if kb.wg {
				inst = fmt.Sprintf("SLA_LIN_KV_WG(%d)", d)
			}
			if !strings.Contains(src(kb.module()), "\n"+inst+"\n") {
				t.Errorf("%s (%s) is not instantiated in %s", kb.name(d), inst, kb.module())
			}
		}
		if len(slaLinOutShapes[d]) == 0 {
			t.Errorf("no sla_lin_out build for head dim %d", d)
		}
		for _, sh := range slaLinOutShapes[d] {
			inst := fmt.Sprintf("SLA_LIN_OUT(%d, %d, %d, %d)", d, sh.warps, sh.stages, sh.mt)
			if sh.wg {
				inst = fmt.Sprintf("SLA_LIN_OUT_WG(%d, %d, %d)", d, sh.warps, sh.stages)
				if sh.mt != 1 || sh.warps%4 != 0 {
					t.Errorf("wgmma build %v: want one m-tile per warp and whole warpgroups", sh)
				}
			}
			if !strings.Contains(src(sh.module()), "\n"+inst+"\n") {
				t.Errorf("%s (%s) is not instantiated in %s", sh.name(d), inst, sh.module())
			}
		}
	}
}

// TestSLALinearModes needs no GPU: the choices that never reach the
// start-up check say why, and a forced GEMM kind reaches the build picks.
func TestSLALinearModes(t *testing.T) {
	for _, c := range []struct{ mode, want string }{
		{"unfused", "unfused (chosen by"},
		{"fused:foo", `unfused (unknown TURBODIFFUSION_SLA_LINEAR "fused:foo"`},
		{"fusedx", `unfused (unknown TURBODIFFUSION_SLA_LINEAR "fusedx"`},
		{"fused:wgmma", "unfused (fused:wgmma needs sm_90, device is sm_80)"},
	} {
		b := &Backend{}
		b.info.Arch = "sm_80"
		b.SetSLALinear(c.mode)
		if got := b.SLALinearKernel(); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want it to start with %q", c.mode, got, c.want)
		}
	}
	b := &Backend{}
	b.info.Arch, b.info.MaxSmemOptin = "sm_90", 232448
	for _, c := range []struct {
		gemm string
		wg   bool
	}{{"mma", false}, {"wgmma", true}, {"", true}} {
		slaLinGemms.Store(b, c.gemm)
		if kv, out := b.slaLinKVPick(), b.slaLinOutPick(128); kv.wg != c.wg || out.wg != c.wg {
			t.Errorf("GEMM kind %q on sm_90: sla_lin_kv %v, sla_lin_out %v, want wgmma %v", c.gemm, kv, out, c.wg)
		}
	}
	slaLinGemms.Delete(b)
	// A build forced for head dim 128 that has no head-dim-64 twin (the
	// 4-warp wgmma one) must not be picked for 64: the start-up check runs
	// both head dims, and on the H200 (b7e7bf2) it looked up the missing
	// sla_lin_out_wg_d64_w4_s2 and turned the fused path off.
	defer func() { slaLinOutForce = slaLinOutShape{} }()
	for _, d := range []int{128, 64} {
		for _, sh := range slaLinOutShapes[d] {
			slaLinOutForce = sh
			if got := b.slaLinOutPick(d); got != sh {
				t.Errorf("forced %v for head dim %d: picked %v", sh, d, got)
			}
			for _, other := range []int{128, 64} {
				got := b.slaLinOutPick(other)
				if !slices.Contains(slaLinOutShapes[other], got) {
					t.Errorf("forced %v (head dim %d): head dim %d picks %v, not one of its builds %v", sh, d, other, got, slaLinOutShapes[other])
				}
			}
		}
	}
}
