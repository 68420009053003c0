package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

var (
	gpuOnce sync.Once
	gpuB    *Backend
	gpuErr  error
)

// gpu returns the shared CUDA backend or skips the test, saying why.
func gpu(t testing.TB) *Backend {
	t.Helper()
	gpuOnce.Do(func() {
		gpuB, gpuErr = Open()
		if gpuB != nil {
			gpuB.Poison = true
		}
	})
	if gpuErr != nil {
		t.Skipf("no usable GPU, CUDA op tests skipped: %v", gpuErr)
	}
	return gpuB
}

// ref is the CPU backend every CUDA op is checked against.
func ref(t testing.TB) backend.DiT {
	var c any = cpu.New()
	d, ok := c.(backend.DiT)
	if !ok {
		t.Skip("cpu backend does not implement backend.DiT yet")
	}
	return d
}

// rng is freshly seeded per test: the kernels must be right on any input.
func rng(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 7))
}

func randn(r *rand.Rand, n int, s float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * s)
	}
	return out
}

// pair uploads the same data to the GPU and the CPU.
type pair struct{ g, c backend.Tensor }

func up(g *Backend, c backend.DiT, dt tensor.DType, shape []int, data []float32) pair {
	return pair{g.Upload(dt, shape, append([]float32(nil), data...)), c.Upload(dt, shape, append([]float32(nil), data...))}
}

// tol is the rel-L2 tolerance for a result of dtype dt: one bf16 rounding
// that lands differently (accumulation order, fast rsqrt) is ~2^-9 on that
// element, far below 5e-3 over a tensor.
func tol(dt tensor.DType) float64 {
	if dt == tensor.BF16 {
		return 5e-3
	}
	return 2e-5
}

func compare(t *testing.T, what string, g *Backend, c backend.DiT, gt, ct backend.Tensor, tl float64) {
	t.Helper()
	if !backend.SameShape(gt.Shape(), ct.Shape()) || gt.DType() != ct.DType() {
		t.Fatalf("%s: cuda gives %v %v, cpu %v %v", what, gt.DType(), gt.Shape(), ct.DType(), ct.Shape())
	}
	got, want := g.Download(gt), c.Download(ct)
	for i, v := range got {
		if math.IsNaN(float64(v)) && !math.IsNaN(float64(want[i])) {
			t.Fatalf("%s: element %d is NaN (unwritten or wrong), want %g", what, i, want[i])
		}
	}
	golden.Compare(t, what, got, want, tl)
}

func dtypes() []tensor.DType { return []tensor.DType{tensor.F32, tensor.BF16} }

func TestCastLayout(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	x := up(g, c, tensor.F32, []int{3, 5, 7, 11}, randn(r, 3*5*7*11, 1))
	compare(t, "cast f32->bf16", g, c, g.Cast(x.g, tensor.BF16), c.Cast(x.c, tensor.BF16), 0)
	xb := up(g, c, tensor.BF16, []int{3, 5, 7, 11}, randn(r, 3*5*7*11, 1))
	compare(t, "cast bf16->f32", g, c, g.Cast(xb.g, tensor.F32), c.Cast(xb.c, tensor.F32), 0)
	for _, dt := range dtypes() {
		x := up(g, c, dt, []int{2, 3, 4, 5, 6}, randn(r, 720, 1))
		p := []int{4, 0, 3, 1, 2}
		compare(t, "permute "+dt.String(), g, c, g.Permute(x.g, p...), c.Permute(x.c, p...), 0)
		compare(t, "slice "+dt.String(), g, c, g.Slice(x.g, 3, 1, 4), c.Slice(x.c, 3, 1, 4), 0)
		y := up(g, c, dt, []int{2, 3, 2, 5, 6}, randn(r, 360, 1))
		compare(t, "concat "+dt.String(), g, c, g.Concat(2, x.g, y.g), c.Concat(2, x.c, y.c), 0)
		rs := g.Reshape(x.g, 6, 120)
		if !backend.SameShape(rs.Shape(), []int{6, 120}) {
			t.Errorf("reshape gave %v", rs.Shape())
		}
	}
}

func TestElementwise(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, dt := range dtypes() {
		for _, bdt := range dtypes() {
			a := up(g, c, dt, []int{7, 33, 64}, randn(r, 7*33*64, 1))
			bb := up(g, c, bdt, []int{33, 64}, randn(r, 33*64, 1))
			name := dt.String() + "+" + bdt.String()
			compare(t, "add "+name, g, c, g.Add(a.g, bb.g), c.Add(a.c, bb.c), 0)
			compare(t, "mul "+name, g, c, g.Mul(a.g, bb.g), c.Mul(a.c, bb.c), 0)
		}
		x1 := up(g, c, dt, []int{5, 96}, randn(r, 480, 1))
		x2 := up(g, c, dt, []int{5, 96}, randn(r, 480, 1))
		compare(t, "add same shape "+dt.String(), g, c, g.Add(x1.g, x2.g), c.Add(x1.c, x2.c), 0)
		a := up(g, c, dt, []int{1000, 77}, randn(r, 77000, 2))
		compare(t, "scale "+dt.String(), g, c, g.Scale(a.g, 0.37), c.Scale(a.c, 0.37), 0)
		compare(t, "silu "+dt.String(), g, c, g.SiLU(a.g), c.SiLU(a.c), tol(dt)/10)
		compare(t, "gelu_tanh "+dt.String(), g, c, g.GELUTanh(a.g), c.GELUTanh(a.c), tol(dt)/10)
	}
}

func TestLinear(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		name          string
		xdt, wdt      tensor.DType
		bias          tensor.DType // Invalid: none
		m, n, k, lead int
	}{
		{"bf16 bias bf16", tensor.BF16, tensor.BF16, tensor.BF16, 300, 384, 512, 1},
		{"bf16 no bias", tensor.BF16, tensor.BF16, tensor.Invalid, 257, 96, 1536, 1},
		{"bf16 bias f32", tensor.BF16, tensor.BF16, tensor.F32, 129, 256, 256, 2},
		{"f32 x, bf16 w (fp32 region)", tensor.F32, tensor.BF16, tensor.F32, 1, 1536 * 6 / 8, 1536, 1},
		{"f32 all", tensor.F32, tensor.F32, tensor.F32, 64, 128, 256, 1},
	} {
		x := up(g, c, tc.xdt, []int{tc.lead, tc.m, tc.k}, randn(r, tc.lead*tc.m*tc.k, 1))
		w := up(g, c, tc.wdt, []int{tc.n, tc.k}, randn(r, tc.n*tc.k, 1/math.Sqrt(float64(tc.k))))
		var bg, bc backend.Tensor
		if tc.bias != tensor.Invalid {
			b := up(g, c, tc.bias, []int{tc.n}, randn(r, tc.n, 1))
			bg, bc = b.g, b.c
		}
		tl := tol(tc.xdt)
		if tc.xdt == tensor.F32 {
			tl = 1e-5 // fp32 GEMM, different summation order
		}
		compare(t, "linear "+tc.name, g, c, g.Linear(x.g, w.g, bg), c.Linear(x.c, w.c, bc), tl)
	}
}

// TestLinearGELU checks the GEMM+GELU epilogue against Linear then GELU on
// the CPU with no rounding in between (the fused op's contract). The fp32
// case would fail (rel-L2 ≈ 2e-4 > 1e-5) if cuBLASLt's GELU were the erf
// form rather than the tanh approximation the model needs.
func TestLinearGELU(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		name    string
		dt      tensor.DType
		bias    bool
		m, n, k int
		tl      float64
	}{
		{"bf16 bias", tensor.BF16, true, 300, 384, 512, tol(tensor.BF16)},
		{"bf16 FFN-like", tensor.BF16, true, 1000, 8960 / 4, 1536, tol(tensor.BF16)},
		{"bf16 no bias", tensor.BF16, false, 129, 256, 256, tol(tensor.BF16)},
		{"f32 bias", tensor.F32, true, 64, 128, 256, 1e-5},
	} {
		x := up(g, c, tc.dt, []int{tc.m, tc.k}, randn(r, tc.m*tc.k, 1.5))
		w := up(g, c, tc.dt, []int{tc.n, tc.k}, randn(r, tc.n*tc.k, 1/math.Sqrt(float64(tc.k))))
		var bg, bc, bc32 backend.Tensor
		if tc.bias {
			b := up(g, c, tc.dt, []int{tc.n}, randn(r, tc.n, 1))
			bg, bc = b.g, b.c
			bc32 = c.Cast(bc, tensor.F32)
		}
		want := c.Cast(c.GELUTanh(c.Linear(c.Cast(x.c, tensor.F32), c.Cast(w.c, tensor.F32), bc32)), tc.dt)
		compare(t, "linear+gelu "+tc.name, g, c, g.LinearGELU(x.g, w.g, bg), want, tc.tl)
	}
}

func TestNorms(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		dt tensor.DType
		D  int
	}{{tensor.F32, 1536}, {tensor.BF16, 1536}, {tensor.BF16, 5120}, {tensor.BF16, 1001}, {tensor.BF16, 4104}} {
		dt, D := tc.dt, tc.D
		t.Logf("width %d", D)
		x := up(g, c, dt, []int{2, 77, D}, randn(r, 2*77*D, 3))
		w := up(g, c, tensor.BF16, []int{D}, randn(r, D, 1))
		bb := up(g, c, tensor.F32, []int{D}, randn(r, D, 1))
		for _, out := range dtypes() {
			name := dt.String() + "->" + out.String()
			compare(t, "layernorm "+name, g, c, g.LayerNorm(x.g, nil, nil, 1e-6, out), c.LayerNorm(x.c, nil, nil, 1e-6, out), tol(out))
			compare(t, "layernorm affine "+name, g, c, g.LayerNorm(x.g, w.g, bb.g, 1e-6, out), c.LayerNorm(x.c, w.c, bb.c, 1e-6, out), tol(out))
		}
		for _, mode := range []backend.NormMode{backend.NormFast, backend.NormDefault} {
			compare(t, "rmsnorm "+dt.String(), g, c, g.RMSNorm(x.g, w.g, 1e-6, mode), c.RMSNorm(x.c, w.c, 1e-6, mode), tol(dt))
		}
		sh := up(g, c, tensor.F32, []int{D}, randn(r, D, 0.5))
		sc := up(g, c, tensor.F32, []int{D}, randn(r, D, 0.5))
		compare(t, "modulate "+dt.String(), g, c, g.Modulate(x.g, sh.g, sc.g), c.Modulate(x.c, sh.c, sc.c), tol(dt)/5)
		want := c.Modulate(c.LayerNorm(x.c, nil, nil, 1e-6, dt), sh.c, sc.c)
		compare(t, "layernorm+modulate fused "+dt.String(), g, c, g.LayerNormModulate(x.g, sh.g, sc.g, 1e-6), want, tol(dt))
		y := up(g, c, dt, []int{2, 77, D}, randn(r, 2*77*D, 1))
		gate := up(g, c, tensor.F32, []int{D}, randn(r, D, 0.5))
		compare(t, "gated add "+dt.String(), g, c, g.GatedAdd(x.g, y.g, gate.g), c.GatedAdd(x.c, y.c, gate.c), tol(dt)/5)
	}
}

// TestRMSNormRoPE checks the fused op against the CPU's two ops and is
// bit-identical to the GPU's own RMSNorm then RoPE (its contract).
func TestRMSNormRoPE(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		dt                tensor.DType
		lead, L, heads, d int
	}{
		{tensor.BF16, 1, 300, 12, 128}, {tensor.BF16, 2, 77, 40, 128}, {tensor.BF16, 1, 65, 24, 64}, {tensor.F32, 1, 50, 12, 128},
	} {
		D := tc.heads * tc.d
		x := up(g, c, tc.dt, []int{tc.lead, tc.L, D}, randn(r, tc.lead*tc.L*D, 2))
		w := up(g, c, tensor.F32, []int{D}, randn(r, D, 1))
		ang := make([]float32, tc.L*tc.d/2)
		for i := range ang {
			ang[i] = float32(r.Float64() * 60)
		}
		a := up(g, c, tensor.F32, []int{tc.L, tc.d / 2}, ang)
		for _, mode := range []backend.NormMode{backend.NormFast, backend.NormDefault} {
			name := fmt.Sprintf("rmsnorm+rope %v lead %d D %d d %d mode %d", tc.dt, tc.lead, D, tc.d, mode)
			got := g.RMSNormRoPE(x.g, w.g, 1e-6, mode, a.g, tc.heads)
			compare(t, name+" vs cpu", g, c, got, c.RoPE(c.RMSNorm(x.c, w.c, 1e-6, mode), a.c, tc.heads), tol(tc.dt)/5)
			two := g.RoPE(g.RMSNorm(x.g, w.g, 1e-6, mode), a.g, tc.heads)
			gv, tv := g.Download(got), g.Download(two)
			for i := range gv {
				if gv[i] != tv[i] {
					t.Fatalf("%s: element %d is %g fused, %g unfused (want bit-identical)", name, i, gv[i], tv[i])
				}
			}
		}
	}
}

// TestAddLayerNorm checks the fused residual update + LayerNorm against the
// CPU's separate ops and requires both outputs bit-identical to the GPU's
// own separate ops (its contract).
func TestAddLayerNorm(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		D          int
		gate, mod  bool
		lead, rows int
	}{
		{1536, true, false, 1, 300}, {1536, false, true, 1, 300}, {5120, true, false, 2, 33}, {5120, false, true, 1, 70}, {1001, true, false, 1, 20},
	} {
		D := tc.D
		name := fmt.Sprintf("add+layernorm D %d gate %v modulate %v", D, tc.gate, tc.mod)
		x := up(g, c, tensor.BF16, []int{tc.lead, tc.rows, D}, randn(r, tc.lead*tc.rows*D, 3))
		y := up(g, c, tensor.BF16, []int{tc.lead, tc.rows, D}, randn(r, tc.lead*tc.rows*D, 2))
		var gate, w, bias, shift, scale pair
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
		sum, normed := g.AddLayerNorm(x.g, y.g, gate.g, w.g, bias.g, shift.g, scale.g, 1e-6)
		// The separate ops, on the CPU and on the GPU.
		var cs, gs backend.Tensor
		if tc.gate {
			cs, gs = c.GatedAdd(x.c, y.c, gate.c), g.GatedAdd(x.g, y.g, gate.g)
		} else {
			cs, gs = c.Add(x.c, y.c), g.Add(x.g, y.g)
		}
		var cn, gn backend.Tensor
		if tc.mod {
			cn = c.Modulate(c.LayerNorm(cs, nil, nil, 1e-6, tensor.BF16), shift.c, scale.c)
			gn = g.LayerNormModulate(gs, shift.g, scale.g, 1e-6)
		} else {
			cn, gn = c.LayerNorm(cs, w.c, bias.c, 1e-6, tensor.BF16), g.LayerNorm(gs, w.g, bias.g, 1e-6, tensor.BF16)
		}
		compare(t, name+": sum vs cpu", g, c, sum, cs, tol(tensor.BF16)/5)
		compare(t, name+": norm vs cpu", g, c, normed, cn, tol(tensor.BF16))
		for _, p := range []struct {
			what      string
			got, want backend.Tensor
		}{{"sum", sum, gs}, {"norm", normed, gn}} {
			a, e := g.Download(p.got), g.Download(p.want)
			for i := range a {
				if a[i] != e[i] {
					t.Fatalf("%s: %s element %d is %g fused, %g separate (want bit-identical)", name, p.what, i, a[i], e[i])
				}
			}
		}
	}
}

func TestRoPE(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, dt := range dtypes() {
		L, heads, d := 300, 12, 128
		x := up(g, c, dt, []int{L, heads * d}, randn(r, L*heads*d, 1))
		ang := make([]float32, L*d/2)
		for i := range ang {
			ang[i] = float32(r.Float64() * 60)
		}
		a := up(g, c, tensor.F32, []int{L, d / 2}, ang)
		compare(t, "rope "+dt.String(), g, c, g.RoPE(x.g, a.g, heads), c.RoPE(x.c, a.c, heads), tol(dt)/5)
	}
}

func TestAttention(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct {
		name             string
		lq, lk, heads, d int
		batch            int
	}{
		{"self d128 L=1000", 1000, 1000, 3, 128, 1},
		{"self d64 L=777", 777, 777, 4, 64, 1},
		{"cross d128 512 keys", 1500, 512, 2, 128, 1},
		{"tiny L=5 batch 2", 5, 37, 2, 128, 2},
		{"long L=4000 12 heads", 4000, 4000, 12, 128, 1},
	} {
		w := tc.heads * tc.d
		q := up(g, c, tensor.BF16, []int{tc.batch, tc.lq, w}, randn(r, tc.batch*tc.lq*w, 1))
		k := up(g, c, tensor.BF16, []int{tc.batch, tc.lk, w}, randn(r, tc.batch*tc.lk*w, 1))
		v := up(g, c, tensor.BF16, []int{tc.batch, tc.lk, w}, randn(r, tc.batch*tc.lk*w, 1))
		s := float32(1 / math.Sqrt(float64(tc.d)))
		want := c.Attention(q.c, k.c, v.c, tc.heads, s)
		kerns := []string{"mma"}
		for _, v := range WGMMAVariants {
			kerns = append(kerns, "wgmma:"+v)
		}
		for _, kern := range kerns {
			g.SetAttentionKernel(kern)
			if got := g.AttentionKernel(); !strings.HasPrefix(got, strings.Split(kern, ":")[0]) {
				t.Logf("attention kernel %s not available here: %s", kern, got)
				continue
			}
			compare(t, "attention["+kern+"] "+tc.name, g, c, g.Attention(q.g, k.g, v.g, tc.heads, s), want, 1e-2)
		}
		g.SetAttentionKernel("")
	}
}

// TestAttentionF32 checks the float32 path (the reference's fp32 mode).
func TestAttentionF32(t *testing.T) {
	g, c, r := gpu(t), ref(t), rng(t)
	for _, tc := range []struct{ lq, lk, heads, d, batch int }{{300, 257, 2, 128, 1}, {33, 70, 3, 64, 2}, {10, 5, 1, 80, 1}} {
		w := tc.heads * tc.d
		q := up(g, c, tensor.F32, []int{tc.batch, tc.lq, w}, randn(r, tc.batch*tc.lq*w, 1))
		k := up(g, c, tensor.F32, []int{tc.batch, tc.lk, w}, randn(r, tc.batch*tc.lk*w, 1))
		v := up(g, c, tensor.F32, []int{tc.batch, tc.lk, w}, randn(r, tc.batch*tc.lk*w, 1))
		s := float32(1 / math.Sqrt(float64(tc.d)))
		compare(t, fmt.Sprintf("attention f32 Lq=%d Lk=%d h=%d d=%d b=%d", tc.lq, tc.lk, tc.heads, tc.d, tc.batch), g, c,
			g.Attention(q.g, k.g, v.g, tc.heads, s), c.Attention(q.c, k.c, v.c, tc.heads, s), 1e-5)
	}
}

// TestErrors checks bad input and missing features fail with clear errors.
func TestErrors(t *testing.T) {
	g := gpu(t)
	run := func(f func()) (err error) {
		defer backend.Recover(&err)
		f()
		return nil
	}
	err := run(func() { g.Upload(tensor.F32, []int{2, 3}, make([]float32, 5)) })
	if err == nil || !strings.Contains(err.Error(), "[2 3]") {
		t.Errorf("bad upload: %v", err)
	}
	err = run(func() {
		defer g.enter()()
		g.newTensor(tensor.F32, []int{1 << 20, 1 << 20, 64})
	})
	if err == nil || !strings.Contains(err.Error(), "out of device memory") || !strings.Contains(err.Error(), "free of") {
		t.Errorf("huge allocation: %v", err)
	} else {
		t.Log(err)
	}
	x := g.Upload(tensor.BF16, []int{4, 8}, make([]float32, 32))
	g.Free(x)
	if err := run(func() { g.Scale(x, 2) }); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("use after free: %v", err)
	}
	y := g.Upload(tensor.BF16, []int{4, 128}, make([]float32, 512))
	err = run(func() { g.Int8Linear(y, y, y, nil) })
	if err == nil || !strings.Contains(err.Error(), "int8") {
		t.Errorf("Int8Linear with a bf16 weight: %v", err)
	}
	if err := run(func() { g.Linear(y, g.Upload(tensor.BF16, []int{3, 5}, make([]float32, 15)), nil) }); err == nil {
		t.Error("Linear with mismatched K did not fail")
	}
	var me *MissingLibraryError
	_ = errors.As(err, &me)
}

// TestPoolReuse checks freed memory is reused rather than re-allocated.
func TestPoolReuse(t *testing.T) {
	g := gpu(t)
	_, _, held0 := g.MemStats()
	for i := 0; i < 50; i++ {
		x := g.Upload(tensor.F32, []int{1 << 20}, make([]float32, 1<<20))
		g.Free(x)
	}
	_, _, held1 := g.MemStats()
	if held1-held0 > 8<<20 {
		t.Errorf("pool grew by %d bytes over 50 alloc/free cycles of 4 MiB", held1-held0)
	}
}
