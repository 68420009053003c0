package sla

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func randBF16(r *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = tensor.RoundBF16(float32(r.NormFloat64() * scale))
	}
	return x
}

// naive computes SLA in float64 from the definition, with the given map:
// exact softmax over the selected keys, the linear branch and proj_l, no
// intermediate rounding. Output [L, heads, d].
func naive(q, k, v []float32, g Geometry, bmap []int8, pw, pb []float32) []float64 {
	L, H, d := g.L, g.Heads, g.D
	at := func(x []float32, l, h, c int) float64 { return float64(x[(l*H+h)*d+c]) }
	out := make([]float64, L*H*d)
	soft := func(x []float32, l, h int) []float64 {
		m := math.Inf(-1)
		for c := 0; c < d; c++ {
			m = math.Max(m, at(x, l, h, c))
		}
		e := make([]float64, d)
		var s float64
		for c := range e {
			e[c] = math.Exp(at(x, l, h, c) - m)
			s += e[c]
		}
		for c := range e {
			e[c] /= s
		}
		return e
	}
	for h := 0; h < H; h++ {
		kv := make([]float64, d*d)
		ks := make([]float64, d)
		for l := 0; l < L; l++ {
			kf := soft(k, l, h)
			for a := 0; a < d; a++ {
				ks[a] += kf[a]
				for b := 0; b < d; b++ {
					kv[a*d+b] += kf[a] * at(v, l, h, b)
				}
			}
		}
		for l := 0; l < L; l++ {
			i := l / g.BlockQ
			row := bmap[(h*g.QBlocks()+i)*g.KBlocks() : (h*g.QBlocks()+i+1)*g.KBlocks()]
			var keys []int
			for j, s := range row {
				if s != 0 {
					for c := j * g.BlockK; c < min(L, (j+1)*g.BlockK); c++ {
						keys = append(keys, c)
					}
				}
			}
			w := make([]float64, len(keys))
			m := math.Inf(-1)
			for x, c := range keys {
				var s float64
				for y := 0; y < d; y++ {
					s += at(q, l, h, y) * at(k, c, h, y)
				}
				w[x] = s / math.Sqrt(float64(d))
				m = math.Max(m, w[x])
			}
			var z float64
			for x := range w {
				w[x] = math.Exp(w[x] - m)
				z += w[x]
			}
			qf := soft(q, l, h)
			var den float64
			for a := 0; a < d; a++ {
				den += qf[a] * ks[a]
			}
			ol := make([]float64, d)
			for b := 0; b < d; b++ {
				for a := 0; a < d; a++ {
					ol[b] += qf[a] * kv[a*d+b]
				}
				ol[b] /= den
			}
			for c := 0; c < d; c++ {
				var os float64
				for x, key := range keys {
					os += w[x] * at(v, key, h, c)
				}
				p := float64(pb[c])
				for b := 0; b < d; b++ {
					p += float64(pw[c*d+b]) * ol[b]
				}
				out[(l*H+h)*d+c] = os/z + p
			}
		}
	}
	return out
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// TestSLARaggedMatchesDefinition runs SLA on L = 300 (not a multiple of
// either block size) and compares with the float64 definition under the
// same map: the only differences are bf16 roundings.
func TestSLARaggedMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	g := Geometry{L: 300, Heads: 2, D: 128, BlockQ: 128, BlockK: 64, TopK: 0.4}
	n := g.L * g.Heads * g.D
	q, k, v := randBF16(r, n, 1), randBF16(r, n, 1), randBF16(r, n, 1)
	pw, pb := randBF16(r, g.D*g.D, 0.3), randBF16(r, g.D, 0.05)
	for _, sage := range []bool{false, true} {
		gg := g
		if sage {
			gg.BlockQ, gg.BlockK = 64, 128
		}
		out, m, err := Forward(q, k, v, Config{Geometry: gg, Sage: sage, BF16Map: true}, pw, pb)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(m); i += gg.KBlocks() {
			cnt := 0
			for _, s := range m[i : i+gg.KBlocks()] {
				cnt += int(s)
			}
			if cnt != gg.Selected() {
				t.Fatalf("map row %d selects %d blocks, want %d", i/gg.KBlocks(), cnt, gg.Selected())
			}
		}
		ref := to32(naive(q, k, v, gg, m, pw, pb))
		tol := 1e-2
		name := "SLA L=300 vs float64 definition"
		if sage {
			tol, name = 5e-2, "SageSLA L=300 vs float64 definition"
		}
		golden.Compare(t, name, out, ref, tol)
	}
}

// TestSparseAllBlocksIsDense: with topk = 1 every key block is kept, so the
// sparse branch is dense softmax attention (checked with a ragged L).
func TestSparseAllBlocksIsDense(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	g := Geometry{L: 150, Heads: 1, D: 128, BlockQ: 128, BlockK: 64, TopK: 1}
	n := g.L * g.D
	q, k, v := randBF16(r, n, 1), randBF16(r, n, 1), randBF16(r, n, 1)
	m, err := BlockMap(q, k, g, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range m {
		if s != 1 {
			t.Fatalf("topk=1: map entry %d not selected", i)
		}
	}
	o, err := Sparse(q, k, v, Config{Geometry: g, BF16Map: true, BlockMap: m})
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]float32, g.D*g.D)
	ref := naive(q, k, v, g, m, zero, make([]float32, g.D))
	// naive adds proj_l(linear) = 0 with zero weights: pure dense attention.
	golden.Compare(t, "sparse branch, all blocks, vs dense attention", o, to32(ref), 5e-3)
}

// TestTopKTies checks torch.topk's tie rule: strictly greater first, then
// equal scores by ascending block index.
func TestTopKTies(t *testing.T) {
	g := Geometry{L: 6 * 64, Heads: 1, D: 1, BlockQ: 6 * 64, BlockK: 64, TopK: 0.5}
	m := SelectTopK([]float32{1, 3, 2, 2, 2, 0}, g)
	want := []int8{0, 1, 1, 1, 0, 0}
	for i := range want {
		if m[i] != want[i] {
			t.Fatalf("map %v, want %v", m, want)
		}
	}
	if g.Selected() != 3 {
		t.Fatalf("selected %d, want 3", g.Selected())
	}
	// int(topk·Kb) in float64 truncates: 0.29·100 = 28.999999999999996 → 28
	for _, c := range []struct {
		topk float64
		kb   int
		want int
	}{{0.15, 20, 3}, {0.1, 30, 3}, {0.1, 256, 25}, {0.1, 591, 59}, {0.29, 100, 28}} {
		g := Geometry{L: c.kb * 64, BlockK: 64, TopK: c.topk}
		if got := g.Selected(); got != c.want {
			t.Errorf("topk %g of %d blocks: %d, want %d", c.topk, c.kb, got, c.want)
		}
	}
}

func TestForwardErrors(t *testing.T) {
	g := Geometry{L: 10, Heads: 1, D: 128, BlockQ: 128, BlockK: 64, TopK: 0.1}
	x := make([]float32, 10*128)
	if _, _, err := Forward(x, x, x, Config{Geometry: g}, make([]float32, 128*128), nil); err == nil {
		t.Error("want an error: topk 0.1 of 1 key block keeps none")
	}
	g.TopK = 1
	if _, _, err := Forward(x[:100], x, x, Config{Geometry: g}, make([]float32, 128*128), nil); err == nil {
		t.Error("want an error for a short q")
	}
	if _, _, err := Forward(x, x, x, Config{Geometry: g, BlockMap: []int8{1, 1}}, make([]float32, 128*128), nil); err == nil {
		t.Error("want an error for a block map of the wrong size")
	}
}
