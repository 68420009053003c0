// Package sampler holds the diffusion sampling loops: TurboDiffusion's rCM
// few-step sampler (docs/NUMERICS.md §7.1), Wan's flow-matching UniPC for the
// original 50-step mode (§6.2) and a flow Euler sampler. The loops know
// nothing about networks: they call a Velocity function with the model
// input and timestep exactly as the reference scripts prepare them, and
// draw Gaussian noise from a Noise source.
package sampler

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Step describes one network evaluation of a sampling loop.
type Step struct {
	// Index counts network evaluations from 0.
	Index int
	// Time is the continuous time of the state handed to the network: the
	// rectified-flow time s_i for rCM, σ_i for UniPC and Euler. The Wan2.2
	// I2V expert switch compares it with the boundary (TD: s_i < 0.9).
	Time float64
	// Timestep is the value the network's time embedding receives, already
	// rounded as the reference rounds it (bf16(1000·s) for a bf16 rCM run,
	// the truncated integer for UniPC).
	Timestep float32
}

// Velocity evaluates the network at one step. x is the model input (the
// sampler state converted to the network dtype, so bf16-exact values for a
// bf16 network); the result is the predicted flow velocity (v ≈ ε − x0) of
// the same length, in float32 as the DiT head produces it. x must not be
// retained or modified.
type Velocity func(st Step, x []float32) ([]float32, error)

// toNet converts a float64 state value to the network input dtype the way
// PyTorch's `.to(dtype)` does: double → float32 → bfloat16, each rounding to
// nearest even.
func toNet(x float64, dt tensor.DType) float32 {
	f := float32(x)
	if dt == tensor.BF16 {
		f = tensor.RoundBF16(f)
	}
	return f
}

// checkNetDType accepts the dtypes a network can run in.
func checkNetDType(dt tensor.DType) error {
	if dt != tensor.F32 && dt != tensor.BF16 {
		return fmt.Errorf("sampler: network dtype must be float32 or bfloat16, got %v", dt)
	}
	return nil
}

// callVelocity runs v and checks the length of its result.
func callVelocity(v Velocity, st Step, x []float32) ([]float32, error) {
	out, err := v(st, x)
	if err != nil {
		return nil, fmt.Errorf("sampler: step %d (timestep %g): %w", st.Index, st.Timestep, err)
	}
	if len(out) != len(x) {
		return nil, fmt.Errorf("sampler: step %d: velocity has %d values, latent has %d", st.Index, len(out), len(x))
	}
	return out, nil
}
