package sampler

import (
	"fmt"
	"math"
)

// WanSigmaMax is the largest σ of Wan's flow-matching scheduler:
// float32(1 − 1/1000) widened to float64 (0.9990000128746033).
var WanSigmaMax = float64(float32(0.999))

// UniPCSchedule returns Wan's FlowUniPCMultistepScheduler schedule for
// steps steps and the given shift (docs/NUMERICS.md §7.2): σ_i =
// linspace(σmax, 0, steps+1)[:steps] in float64, shifted as
// shift·σ/(1+(shift−1)·σ), timesteps t_i = int(σ_i·1000) (truncated), and
// the σ array stored as float32 with a final 0.
func UniPCSchedule(steps int, shift float64) (sigmas []float32, timesteps []int64, err error) {
	if steps < 1 {
		return nil, nil, fmt.Errorf("sampler: UniPC needs at least 1 step, got %d", steps)
	}
	if !(shift > 0) || math.IsInf(shift, 0) {
		return nil, nil, fmt.Errorf("sampler: UniPC shift must be positive and finite, got %g", shift)
	}
	sig := linspace(WanSigmaMax, 0, steps+1)[:steps]
	sigmas = make([]float32, steps+1)
	timesteps = make([]int64, steps)
	for i, s := range sig {
		s = float64(shift*s) / (1 + float64((shift-1)*s))
		timesteps[i] = int64(float64(s * 1000))
		sigmas[i] = float32(s)
	}
	return sigmas, timesteps, nil
}

// linspace is numpy.linspace(start, stop, num) in float64: start + i·step
// with step = (stop−start)/(num−1), the last element set to stop.
func linspace(start, stop float64, num int) []float64 {
	out := make([]float64, num)
	if num == 1 {
		out[0] = start
		return out
	}
	step := (stop - start) / float64(num-1)
	for i := range out {
		out[i] = float64(float64(i)*step) + start
	}
	out[num-1] = stop
	return out
}

// UniPC configures Wan's flow-matching UniPC sampler: solver order 2,
// bh2, predict-x0, lower_order_final, corrector on every step after the
// first — the original 50-step baseline. All arithmetic is float32, as in
// the reference (the σ tensors and the latents are float32).
type UniPC struct {
	Steps int
	Shift float64
}

// Sample integrates from the initial latent x (pure noise at σ≈1, used as
// is, not scaled) and returns the final latent. The network sees the
// float32 state and the integer timestep; classifier-free guidance belongs
// inside v (see CFG).
func (c UniPC) Sample(x []float32, v Velocity) ([]float32, error) {
	sig, ts, err := UniPCSchedule(c.Steps, c.Shift)
	if err != nil {
		return nil, err
	}
	u := newUniPCState(sig)
	x = append([]float32(nil), x...)
	for i := range ts {
		vel, err := callVelocity(v, Step{Index: i, Time: float64(sig[i]), Timestep: float32(ts[i])}, x)
		if err != nil {
			return nil, err
		}
		x = u.step(vel, x)
	}
	return x, nil
}

// CFG combines conditional and unconditional velocities as Wan does:
// uncond + scale·(cond − uncond), each operation rounded to float32.
func CFG(cond, uncond []float32, scale float32) ([]float32, error) {
	if len(cond) != len(uncond) {
		return nil, fmt.Errorf("sampler: CFG: conditional has %d values, unconditional %d", len(cond), len(uncond))
	}
	out := make([]float32, len(cond))
	for i := range out {
		out[i] = uncond[i] + float32(scale*float32(cond[i]-uncond[i]))
	}
	return out, nil
}

// uniPCState is the multistep memory of the solver (the diffusers-style
// scheduler's model_outputs, last_sample, this_order, lower_order_nums).
type uniPCState struct {
	sigmas     []float32
	lambdas    []float32
	index      int
	mPrev      []float32 // x0 prediction of step index−2 (model_outputs[-2] after the shift)
	mLast      []float32 // x0 prediction of step index−1
	lastSample []float32 // state before the previous predictor
	lastOrder  int
	lowerNums  int
}

func newUniPCState(sigmas []float32) *uniPCState {
	lam := make([]float32, len(sigmas))
	for i, s := range sigmas {
		lam[i] = lambda(s)
	}
	return &uniPCState{sigmas: sigmas, lambdas: lam}
}

// lambda is log α − log σ with α = 1 − σ, each in float32 (+Inf at σ = 0).
func lambda(s float32) float32 {
	return log32(1-s) - log32(s)
}

// log32 and expm1f are the float32 functions of the reference (computed in
// float64 and rounded once).
func log32(x float32) float32  { return float32(math.Log(float64(x))) }
func expm1f(x float32) float32 { return float32(math.Expm1(float64(x))) }

// alpha is α_i = 1 − σ_i.
func (u *uniPCState) alpha(i int) float32 { return 1 - u.sigmas[i] }

// step consumes the velocity at the current index and returns the state at
// the next σ: x0 conversion, corrector (from the second step on), then the
// predictor.
func (u *uniPCState) step(v, x []float32) []float32 {
	i := u.index
	s := u.sigmas[i]
	m := make([]float32, len(x))
	for j := range m {
		m[j] = x[j] - float32(s*v[j])
	}
	if i > 0 && u.lastSample != nil {
		x = u.correct(m, x)
	}
	u.mPrev, u.mLast = u.mLast, m
	order := min(2, len(u.sigmas)-1-i, u.lowerNums+1) // lower_order_final, warm-up
	u.lastSample = x
	next := u.predict(x, order)
	u.lastOrder = order
	if u.lowerNums < 2 {
		u.lowerNums++
	}
	u.index++
	return next
}

// predict is UniP-bh2 from σ_i to σ_{i+1} with x0 outputs mLast (and mPrev
// for order 2, whose single coefficient is fixed to 0.5).
func (u *uniPCState) predict(x []float32, order int) []float32 {
	i := u.index
	h := u.lambdas[i+1] - u.lambdas[i]
	hh := -h
	phi := expm1f(hh) // h·φ1(h); bh2 also uses it as B(h)
	ratio := u.sigmas[i+1] / u.sigmas[i]
	ap := u.alpha(i+1) * phi // α_t·φ, and α_t·B(h) as well
	out := make([]float32, len(x))
	m0 := u.mLast
	if order == 1 {
		for j := range out {
			out[j] = float32(ratio*x[j]) - float32(ap*m0[j])
		}
		return out
	}
	rk := (u.lambdas[i-1] - u.lambdas[i]) / h
	inv := 1 / rk // PyTorch divides a CUDA tensor by a CPU scalar as a multiply by its reciprocal
	for j := range out {
		d1 := float32(u.mPrev[j]-m0[j]) * inv
		res := float32(0.5 * d1)
		xt := float32(ratio*x[j]) - float32(ap*m0[j])
		out[j] = xt - float32(ap*res)
	}
	return out
}

// correct is UniC-bh2 at index i: it refines the state predicted from
// lastSample using the new x0 prediction m (order = the previous
// predictor's order).
func (u *uniPCState) correct(m, xt []float32) []float32 {
	i := u.index
	h := u.lambdas[i] - u.lambdas[i-1]
	hh := -h
	phi := expm1f(hh)
	ratio := u.sigmas[i] / u.sigmas[i-1]
	ap := u.alpha(i) * phi
	m0, x := u.mLast, u.lastSample
	out := make([]float32, len(xt))
	if u.lastOrder == 1 {
		const rho = 0.5
		for j := range out {
			xr := float32(ratio*x[j]) - float32(ap*m0[j])
			out[j] = xr - float32(ap*float32(rho*float32(m[j]-m0[j])))
		}
		return out
	}
	rk := (u.lambdas[i-2] - u.lambdas[i-1]) / h
	// b_k from the φ recursion (factorials 1, 2), B(h) = expm1(−h).
	hphik := phi/hh - 1
	b1 := hphik * 1 / phi
	hphik = hphik/hh - 0.5
	b2 := hphik * 2 / phi
	rho0, rho1 := solve2(1, 1, rk, 1, b1, b2)
	inv := 1 / rk
	for j := range out {
		d1 := float32(u.mPrev[j]-m0[j]) * inv
		corr := float32(rho0 * d1)
		d1t := float32(m[j] - m0[j])
		xr := float32(ratio*x[j]) - float32(ap*m0[j])
		out[j] = xr - float32(ap*float32(corr+float32(rho1*d1t)))
	}
	return out
}

// solve2 solves [[a,b],[c,d]]·[x,y] = [e,f] in float32 by LU with partial
// pivoting (the row with the larger |first column| is the pivot, the first
// row on ties), as LAPACK's getrf/getrs do for a 2×2 system.
func solve2(a, b, c, d, e, f float32) (float32, float32) {
	if abs32(c) > abs32(a) {
		a, b, c, d, e, f = c, d, a, b, f, e
	}
	l := c / a
	d -= float32(l * b)
	f -= float32(l * e)
	y := f / d
	x := (e - float32(b*y)) / a
	return x, y
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }
