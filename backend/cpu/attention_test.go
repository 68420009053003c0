package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// refAttention is softmax(q·kᵀ·scale)·v per head in float64.
func refAttention(q, k, v []float32, batch, lq, lk, heads, d int, scale float64) []float64 {
	w := heads * d
	out := make([]float64, batch*lq*w)
	s := make([]float64, lk)
	for bi := 0; bi < batch; bi++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < lq; i++ {
				mx := math.Inf(-1)
				for j := 0; j < lk; j++ {
					var dp float64
					for c := 0; c < d; c++ {
						dp += float64(q[(bi*lq+i)*w+h*d+c]) * float64(k[(bi*lk+j)*w+h*d+c])
					}
					s[j] = dp * scale
					mx = math.Max(mx, s[j])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for c := 0; c < d; c++ {
					var o float64
					for j := 0; j < lk; j++ {
						o += s[j] * float64(v[(bi*lk+j)*w+h*d+c])
					}
					out[(bi*lq+i)*w+h*d+c] = o / sum
				}
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	forEachKernel(t, testAttention)
}

func testAttention(t *testing.T) {
	be := New()
	r := newRand(50)
	for _, c := range []struct{ batch, lq, lk, heads, d int }{
		{1, 1, 1, 1, 8}, {1, 37, 300, 2, 64}, {2, 70, 33, 3, 16}, {1, 257, 520, 1, 128}, {1, 50, 40, 2, 20},
	} {
		w := c.heads * c.d
		// sd 3 makes the softmax peaky enough that the max subtraction matters
		qv, kv, vv := randVals(r, c.batch*c.lq*w, 3), randVals(r, c.batch*c.lk*w, 1), randVals(r, c.batch*c.lk*w, 1)
		scale := 1 / math.Sqrt(float64(c.d))
		want := refAttention(qv, kv, vv, c.batch, c.lq, c.lk, c.heads, c.d, float64(float32(scale)))
		t.Run(fmt.Sprintf("b%d_q%d_k%d_h%d_d%d", c.batch, c.lq, c.lk, c.heads, c.d), func(t *testing.T) {
			both(t, func(t *testing.T, dt tensor.DType) {
				q := be.Upload(dt, []int{c.batch, c.lq, w}, qv)
				k := be.Upload(dt, []int{c.batch, c.lk, w}, kv)
				v := be.Upload(dt, []int{c.batch, c.lk, w}, vv)
				got := be.Download(be.Attention(q, k, v, c.heads, float32(scale)))
				name := fmt.Sprintf("Attention %+v %v", c, dt)
				if dt == tensor.F32 {
					checkClose(t, name, got, want, 2e-6)
					return
				}
				checkBF16(t, name, got)
				// bf16 P and output rounding: ~3e-3 relative per element, less on average.
				checkClose(t, name, got, want, 6e-3)
			})
		})
	}
	q := be.Upload(tensor.F32, []int{4, 8}, make([]float32, 32))
	expectFail(t, "Attention k width", func() {
		be.Attention(q, be.Upload(tensor.F32, []int{4, 6}, make([]float32, 24)), be.Upload(tensor.F32, []int{4, 6}, make([]float32, 24)), 2, 1)
	}, "[4 6]")
	expectFail(t, "Attention heads", func() { be.Attention(q, q, q, 3, 1) }, "3 heads")
	expectFail(t, "Attention k/v", func() { be.Attention(q, q, be.Upload(tensor.F32, []int{5, 8}, make([]float32, 40)), 2, 1) }, "v [5 8]")
}

func BenchmarkAttention(b *testing.B) {
	be := New()
	for _, c := range []struct{ l, heads, d int }{{1280, 2, 128}, {4096, 2, 128}} {
		b.Run(fmt.Sprintf("L%d_h%d_d%d", c.l, c.heads, c.d), func(b *testing.B) {
			r := newRand(1)
			w := c.heads * c.d
			q := be.Upload(tensor.BF16, []int{c.l, w}, randVals(r, c.l*w, 1))
			k := be.Upload(tensor.BF16, []int{c.l, w}, randVals(r, c.l*w, 1))
			v := be.Upload(tensor.BF16, []int{c.l, w}, randVals(r, c.l*w, 1))
			b.ResetTimer()
			cpu0 := processCPUSeconds()
			for b.Loop() {
				be.Attention(q, k, v, c.heads, 0.088)
			}
			reportFlops(b, 4*float64(c.l)*float64(c.l)*float64(w), cpu0)
		})
	}
}
