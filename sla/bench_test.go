package sla

import (
	"math/rand/v2"
	"testing"
)

func benchSLA(b *testing.B, sage bool) {
	g := Geometry{L: 4096, Heads: 2, D: 128, BlockQ: 128, BlockK: 64, TopK: 0.1}
	if sage {
		g.BlockQ, g.BlockK = 64, 128
	}
	r := rand.New(rand.NewPCG(1, 1))
	n := g.L * g.Heads * g.D
	q, k, v := randBF16(r, n, 1), randBF16(r, n, 1), randBF16(r, n, 1)
	pw, pb := randBF16(r, g.D*g.D, 0.1), randBF16(r, g.D, 0.1)
	b.ResetTimer()
	for range b.N {
		if _, _, err := Forward(q, k, v, Config{Geometry: g, Sage: sage, BF16Map: true}, pw, pb); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSLA is SLA on 4096 tokens, 2 heads, topk 0.1.
func BenchmarkSLA(b *testing.B) { benchSLA(b, false) }

// BenchmarkSageSLA is the SageSLA emulation on the same problem.
func BenchmarkSageSLA(b *testing.B) { benchSLA(b, true) }
