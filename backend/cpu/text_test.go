package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func randSlice(r *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * scale)
	}
	return s
}

// naiveRelPos is the float64 definition of RelPosAttention without roundings.
func naiveRelPos(q, k, v, bias []float32, lq, lk, heads, d, keyLen int) []float64 {
	hd := heads * d
	out := make([]float64, lq*hd)
	for h := 0; h < heads; h++ {
		for i := 0; i < lq; i++ {
			l := make([]float64, keyLen)
			mx := math.Inf(-1)
			for j := range l {
				var s float64
				for c := 0; c < d; c++ {
					s += float64(q[i*hd+h*d+c]) * float64(k[j*hd+h*d+c])
				}
				l[j] = s + float64(bias[h*(lq+lk-1)+j-i+lq-1])
				mx = math.Max(mx, l[j])
			}
			var sum float64
			for j := range l {
				l[j] = math.Exp(l[j] - mx)
				sum += l[j]
			}
			for j := range l {
				for c := 0; c < d; c++ {
					out[i*hd+h*d+c] += l[j] / sum * float64(v[j*hd+h*d+c])
				}
			}
		}
	}
	return out
}

func TestRelPosAttention(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(1, 2))
	const lq, lk, heads, d = 7, 9, 3, 8
	q, k, v := randSlice(r, lq*heads*d, 0.5), randSlice(r, lk*heads*d, 0.5), randSlice(r, lk*heads*d, 1)
	bias := randSlice(r, heads*(lq+lk-1), 1)
	for _, keyLen := range []int{lk, 4, 1} {
		for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
			up := func(shape []int, x []float32) backend.Tensor { return b.Upload(dt, shape, x) }
			out := b.RelPosAttention(up([]int{lq, heads * d}, q), up([]int{lk, heads * d}, k), up([]int{lk, heads * d}, v),
				up([]int{heads, lq + lk - 1}, bias), heads, keyLen)
			got := b.Download(out)
			// the reference on the values the backend saw (rounded to dt)
			rq, rk, rv, rb := b.Download(up([]int{len(q)}, q)), b.Download(up([]int{len(k)}, k)), b.Download(up([]int{len(v)}, v)), b.Download(up([]int{len(bias)}, bias))
			want := naiveRelPos(rq, rk, rv, rb, lq, lk, heads, d, keyLen)
			var num, den float64
			for i := range want {
				num += (float64(got[i]) - want[i]) * (float64(got[i]) - want[i])
				den += want[i] * want[i]
				if dt == tensor.BF16 && got[i] != tensor.RoundBF16(got[i]) {
					t.Fatalf("bf16 output %v not bf16-exact", got[i])
				}
			}
			rel := math.Sqrt(num / den)
			tol := 1e-6
			if dt == tensor.BF16 {
				tol = 2e-2
			}
			t.Logf("keyLen %d %v: rel_l2 %.2e vs float64", keyLen, dt, rel)
			if !(rel <= tol) { // NaN fails too
				t.Errorf("keyLen %d %v: rel_l2 %.2e > %.0e", keyLen, dt, rel, tol)
			}
		}
	}
}

// TestRelPosAttentionMask: keys at or after keyLen have no influence.
func TestRelPosAttentionMask(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(3, 4))
	const l, heads, d, keyLen = 6, 2, 4, 3
	q, k, v := randSlice(r, l*heads*d, 1), randSlice(r, l*heads*d, 1), randSlice(r, l*heads*d, 1)
	bias := randSlice(r, heads*(2*l-1), 1)
	run := func(k, v []float32) []float32 {
		up := func(shape []int, x []float32) backend.Tensor { return b.Upload(tensor.F32, shape, x) }
		return b.Download(b.RelPosAttention(up([]int{l, heads * d}, q), up([]int{l, heads * d}, k), up([]int{l, heads * d}, v),
			up([]int{heads, 2*l - 1}, bias), heads, keyLen))
	}
	a := run(k, v)
	k2, v2 := append([]float32(nil), k...), append([]float32(nil), v...)
	for i := keyLen * heads * d; i < len(k2); i++ {
		k2[i], v2[i] = 1e3, -1e3
	}
	c := run(k2, v2)
	for i := range a {
		if a[i] != c[i] {
			t.Fatalf("masked keys changed output %d: %v vs %v", i, a[i], c[i])
		}
	}
}

func TestRelPosAttentionBadInput(t *testing.T) {
	b := New()
	x := b.Upload(tensor.F32, []int{4, 8}, make([]float32, 32))
	bias := b.Upload(tensor.F32, []int{2, 7}, make([]float32, 14))
	// Each error must be the check the case names: with 3 heads the bias
	// [2 7] is misshapen too, so any error would not show the heads check.
	for name, c := range map[string]struct {
		f    func()
		frag string
	}{
		"keyLen 0":   {func() { b.RelPosAttention(x, x, x, bias, 2, 0) }, "keyLen 0"},
		"bias shape": {func() { b.RelPosAttention(x, x, x, x, 2, 4) }, "relBias shape [4 8]"},
		"heads":      {func() { b.RelPosAttention(x, x, x, bias, 3, 4) }, "3 heads"},
	} {
		var err error
		func() {
			defer backend.Recover(&err)
			c.f()
		}()
		if err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.frag)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestGELUTanhSteps(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(5, 6))
	x := randSlice(r, 4096, 2)
	got := b.Download(b.GELUTanhSteps(b.Upload(tensor.F32, []int{len(x)}, x)))
	for i, v := range x {
		w := 0.5 * float64(v) * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(float64(v)+0.044715*math.Pow(float64(v), 3))))
		if !(math.Abs(float64(got[i])-w) <= 1e-6*(1+math.Abs(w))) { // NaN fails too
			t.Fatalf("gelu(%v) = %v, want %v", v, got[i], w)
		}
	}
	gotB := b.Download(b.GELUTanhSteps(b.Upload(tensor.BF16, []int{len(x)}, x)))
	rb := tensor.RoundBF16
	diff := 0
	for i, v := range x {
		v = rb(v)
		// the same chain written out independently
		p := rb(rb(v*v) * v)
		c := rb(float32(0.044715) * p)
		s := rb(v + c)
		tt := rb(float32(math.Sqrt(2/math.Pi)) * s)
		th := rb(float32(math.Tanh(float64(tt))))
		o := rb(1 + th)
		w := rb(rb(v*0.5) * o)
		if gotB[i] != w {
			t.Fatalf("bf16 gelu(%v) = %v, want %v", v, gotB[i], w)
		}
		fused := rb(float32(0.5 * float64(v) * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(float64(v)+0.044715*math.Pow(float64(v), 3))))))
		if fused != w {
			diff++
		}
	}
	// The step-wise rounding is what distinguishes this op from GELUTanh.
	t.Logf("bf16: %d of %d values differ from the once-rounded GELU", diff, len(x))
	if diff == 0 {
		t.Error("bf16 step-wise GELU equals the once-rounded one everywhere; the test input is too easy")
	}
}
