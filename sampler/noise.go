package sampler

import (
	"fmt"
	"math/rand/v2"
)

// Noise supplies standard normal samples, one call per tensor the reference
// draws (the initial latent, then one per SDE step).
type Noise interface {
	// Normal fills dst with independent N(0,1) samples.
	Normal(dst []float32) error
}

// Gaussian is the production noise source: a seeded PCG generator with Go's
// ziggurat normal sampler, identical on every platform for a given seed.
// It does not reproduce PyTorch's CUDA Philox stream (that depends on the
// GPU's SM count, docs/NUMERICS.md §7.3), so the same seed gives a different,
// equally distributed, video than the Python reference.
type Gaussian struct{ r *rand.Rand }

// NewGaussian returns a Gaussian noise source seeded with seed.
func NewGaussian(seed uint64) *Gaussian {
	return &Gaussian{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

// Normal fills dst with N(0,1) samples rounded to float32.
func (g *Gaussian) Normal(dst []float32) error {
	for i := range dst {
		dst[i] = float32(g.r.NormFloat64())
	}
	return nil
}

// Recorded replays noise tensors in order, e.g. the reference's recorded
// draws, so a loop can be checked bit for bit.
type Recorded struct {
	Draws [][]float32
	next  int
}

// Normal copies the next recorded draw into dst; it fails if the draws are
// used up or the lengths differ.
func (r *Recorded) Normal(dst []float32) error {
	if r.next >= len(r.Draws) {
		return fmt.Errorf("sampler: recorded noise exhausted after %d draws", len(r.Draws))
	}
	d := r.Draws[r.next]
	if len(d) != len(dst) {
		return fmt.Errorf("sampler: recorded noise draw %d has %d values, want %d", r.next, len(d), len(dst))
	}
	copy(dst, d)
	r.next++
	return nil
}
