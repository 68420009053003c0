package sampler

import (
	"fmt"
	"math"
)

// Euler is TurboDiffusion's FlowEulerSampler (rcm/samplers/euler.py):
// σ_i = shifted torch.linspace(1, 0, steps+1)[:steps] in float32,
// timesteps 1000·σ_i, update x ← x + (σ_{i+1} − σ_i)·v with σ_steps = 0.
// The inference scripts do not use it; it is here for experiments.
type Euler struct {
	Steps int
	Shift float64
}

// EulerSchedule returns the float32 σ_i (with a final 0 appended) and
// timesteps 1000·σ_i of the Euler sampler.
func EulerSchedule(steps int, shift float64) (sigmas, timesteps []float32, err error) {
	if steps < 1 {
		return nil, nil, fmt.Errorf("sampler: Euler needs at least 1 step, got %d", steps)
	}
	if !(shift > 0) || math.IsInf(shift, 0) {
		return nil, nil, fmt.Errorf("sampler: Euler shift must be positive and finite, got %g", shift)
	}
	lin := torchLinspace32(1, 0, steps+1)[:steps]
	k, km1 := float32(shift), float32(shift-1)
	sigmas = make([]float32, steps+1)
	timesteps = make([]float32, steps)
	for i, s := range lin {
		s = float32(k*s) / (1 + float32(km1*s))
		sigmas[i] = s
		timesteps[i] = s * 1000
	}
	return sigmas, timesteps, nil
}

// torchLinspace32 is torch.linspace in float32 (its scalar CPU rule): the
// first half counts up from start, the second half down from end.
func torchLinspace32(start, end float32, n int) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(n-1)
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = start + float32(step*float32(i))
		} else {
			out[i] = end - float32(step*float32(n-i-1))
		}
	}
	return out
}

// Sample integrates from x (noise at σ = 1, used as is) and returns the
// final latent.
func (c Euler) Sample(x []float32, v Velocity) ([]float32, error) {
	sig, ts, err := EulerSchedule(c.Steps, c.Shift)
	if err != nil {
		return nil, err
	}
	x = append([]float32(nil), x...)
	for i := range ts {
		vel, err := callVelocity(v, Step{Index: i, Time: float64(sig[i]), Timestep: ts[i]}, x)
		if err != nil {
			return nil, err
		}
		d := sig[i+1] - sig[i]
		for j := range x {
			x[j] += float32(vel[j] * d)
		}
	}
	return x, nil
}
