package sampler

import (
	"fmt"
	"math/rand/v2"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
)

// Noise supplies standard normal samples, one call per tensor the reference
// draws (the initial latent, then one per SDE step).
type Noise interface {
	// Normal fills dst with independent N(0,1) samples.
	Normal(dst []float32) error
}

// Gaussian is the production noise source: Go's ziggurat normal sampler
// on seeded PCG generators, identical on every platform and core count for
// a given seed. Each draw (one Normal call) is cut into runs of noiseChunk
// values, and each run has its own generator keyed by (seed, draw number,
// run index), so the runs fill in parallel and the values do not depend on
// how many cores share the work. (Until December 2026 one generator filled
// every draw serially, ~20 ms of host time per 480p latent; the same seed
// now gives different, equally distributed, values.) It does not reproduce
// PyTorch's CUDA Philox stream (that depends on the GPU's SM count,
// docs/NUMERICS.md §7.3), so the same seed gives a different video than the
// Python reference.
type Gaussian struct {
	seed  uint64
	draws uint64 // Normal calls so far: the next draw's number
}

// noiseChunk is the length of the runs a draw is cut into: large enough that
// seeding a generator per run costs nothing, small enough that a 480p
// latent (2.1 M values) spreads over many cores.
const noiseChunk = 1 << 15

// NewGaussian returns a Gaussian noise source seeded with seed.
func NewGaussian(seed uint64) *Gaussian { return &Gaussian{seed: seed} }

// splitmix64 is a bijective 64-bit mixer (Steele et al.'s SplitMix64
// finaliser): distinct keys give unrelated PCG states.
func splitmix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Normal fills dst with N(0,1) samples rounded to float32.
func (g *Gaussian) Normal(dst []float32) error {
	draw := g.draws
	g.draws++
	hi := splitmix64(g.seed)
	runs := (len(dst) + noiseChunk - 1) / noiseChunk
	parallel.For(runs, func(lo, end int) {
		var pcg rand.PCG
		r := rand.New(&pcg)
		for k := lo; k < end; k++ {
			pcg.Seed(hi, splitmix64(g.seed^splitmix64(draw<<32|uint64(k))))
			seg := dst[k*noiseChunk : min((k+1)*noiseChunk, len(dst))]
			for i := range seg {
				seg[i] = float32(r.NormFloat64())
			}
		}
	})
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
