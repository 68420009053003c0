package sampler

import (
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// rcmMidAngles are the TrigFlow angles between atan(σmax) and 0 that
// TurboDiffusion's scripts use for 2–4 steps (the first steps−1 of them).
var rcmMidAngles = []float64{1.5, 1.4, 1.0}

// MaxRCMSteps is the largest step count the rCM schedule defines.
const MaxRCMSteps = 4

// RCM configures TurboDiffusion's rCM sampler (docs/NUMERICS.md §7.1).
type RCM struct {
	// Steps is the number of network evaluations, 1–4.
	Steps int
	// SigmaMax is the TrigFlow σmax (80 for T2V, 200 for I2V).
	SigmaMax float64
	// ODE selects the deterministic update x ← x − (s_i − s_{i+1})·v
	// (TD's --ode, I2V only) instead of the default SDE update, which
	// draws fresh noise every step.
	ODE bool
	// NetDType is the network's dtype (F32 or BF16): the model input and
	// the timestep are rounded to it.
	NetDType tensor.DType
}

// RCMTimes returns the rectified-flow times s_0 > … > s_steps = 0 in
// float64: s = sin a / (cos a + sin a) for a = [atan(σmax), 1.5, 1.4,
// 1.0][:steps] + [0], with atan, sin and cos correctly rounded as the
// reference's libraries returned them.
func RCMTimes(steps int, sigmaMax float64) ([]float64, error) {
	if steps < 1 || steps > MaxRCMSteps {
		return nil, fmt.Errorf("sampler: rCM supports 1 to %d steps, got %d", MaxRCMSteps, steps)
	}
	if !(sigmaMax > 0) || math.IsInf(sigmaMax, 0) {
		return nil, fmt.Errorf("sampler: rCM sigma_max must be positive and finite, got %g", sigmaMax)
	}
	angles := append([]float64{atanRounded(sigmaMax)}, rcmMidAngles[:steps-1]...)
	angles = append(angles, 0)
	s := make([]float64, len(angles))
	for i, a := range angles {
		sn, cs := sinCosRounded(a)
		s[i] = sn / (cs + sn)
	}
	return s, nil
}

// RCMTimestep is the timestep the network receives for RF time s:
// `(float32(s) · ones_f64 · 1000).to(dtype)`, i.e. float32(s) widened back
// to float64, scaled by 1000, then rounded to the network dtype (through
// float32, as PyTorch converts double to bfloat16).
func RCMTimestep(s float64, dt tensor.DType) float32 {
	return toNet(float64(float32(s))*1000, dt)
}

// Sample runs the rCM loop on a latent of n elements and returns the final
// latent (float32 of the float64 state). Noise draws: the initial latent,
// then one tensor after every SDE step (also the last, whose weight is 0),
// exactly the reference's order; the ODE variant draws only the initial one.
func (c RCM) Sample(n int, noise Noise, v Velocity) ([]float32, error) {
	if err := checkNetDType(c.NetDType); err != nil {
		return nil, err
	}
	s, err := RCMTimes(c.Steps, c.SigmaMax)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("sampler: latent size must be positive, got %d", n)
	}
	eps := make([]float32, n)
	if err := noise.Normal(eps); err != nil {
		return nil, fmt.Errorf("sampler: initial noise: %w", err)
	}
	x := make([]float64, n)
	rcmInit(x, eps, s[0])
	in := make([]float32, n)
	for i := 0; i < c.Steps; i++ {
		cur, next := s[i], s[i+1]
		rcmInput(in, x, c.NetDType)
		st := Step{Index: i, Time: cur, Timestep: RCMTimestep(cur, c.NetDType)}
		// The step's noise does not depend on the velocity, so it is drawn
		// while the network runs (same draws, same order; eps is free once
		// the initial latent is built). A 480p draw is ~20 ms of host time
		// the GPU would otherwise wait for.
		var drawErr error
		drawn := make(chan struct{})
		if !c.ODE {
			go func() {
				defer close(drawn)
				drawErr = noise.Normal(eps)
			}()
		}
		vel, err := callVelocity(v, st, in)
		if !c.ODE {
			<-drawn
		}
		if err != nil {
			return nil, err
		}
		if c.ODE {
			rcmODEUpdate(x, vel, cur, next)
			continue
		}
		if drawErr != nil {
			return nil, fmt.Errorf("sampler: step %d noise: %w", i, drawErr)
		}
		rcmSDEUpdate(x, vel, eps, cur, next)
	}
	out := make([]float32, n)
	rcmInput(out, x, tensor.F32)
	return out, nil
}

// The loop's elementwise parts below each run over the cores: on a 480p
// latent (2.1 M values) one core takes milliseconds per pass, time the GPU
// waits for between steps. Splitting an elementwise pass changes no result.

// rcmInit is x = float64(ε)·s_0, the initial state.
func rcmInit(x []float64, eps []float32, s0 float64) {
	parallel.For(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] = float64(eps[i]) * s0
		}
	})
}

// rcmInput is the network input x.to(dt) (float64 → float32 → dt); with
// dt = F32 it is also the final float32 latent.
func rcmInput(in []float32, x []float64, dt tensor.DType) {
	parallel.For(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			in[i] = toNet(x[i], dt)
		}
	})
}

// rcmSDEUpdate is x ← (1 − s_next)·(x − s_cur·v) + float32(s_next)·ε, with
// the noise product evaluated in float32 (a float64 0-dim tensor times a
// float32 tensor is a float32 op in PyTorch) and everything else in float64.
// The explicit conversions keep the compiler from fusing multiply-adds,
// which would change the rounding.
func rcmSDEUpdate(x []float64, v, eps []float32, cur, next float64) {
	keep := 1 - next
	nextF := float32(next)
	parallel.For(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x0 := x[i] - float64(cur*float64(v[i]))
			x[i] = float64(keep*x0) + float64(float32(nextF*eps[i]))
		}
	})
}

// rcmODEUpdate is x ← x − (s_cur − s_next)·v in float64.
func rcmODEUpdate(x []float64, v []float32, cur, next float64) {
	dt := cur - next
	parallel.For(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] -= float64(dt * float64(v[i]))
		}
	})
}
