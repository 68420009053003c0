package sampler

import (
	"math"
	"testing"
)

func TestUniPCScheduleQuoted(t *testing.T) {
	// docs/NUMERICS.md §7.2 (50/5.0 verified against Wan's scheduler).
	cases := []struct {
		steps      int
		head, tail []int64
	}{
		{50, []int64{999, 995, 991, 987, 982, 978, 973, 968}, []int64{405, 356, 302, 241, 172, 92}},
		{40, []int64{999, 994, 989, 983}, []int64{288, 208, 113}},
	}
	for _, c := range cases {
		sig, ts, err := UniPCSchedule(c.steps, 5.0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != c.steps || len(sig) != c.steps+1 || sig[c.steps] != 0 {
			t.Fatalf("%d steps: %d timesteps, %d sigmas (last %v)", c.steps, len(ts), len(sig), sig[len(sig)-1])
		}
		for i, w := range c.head {
			if ts[i] != w {
				t.Errorf("%d steps: t[%d] = %d, want %d", c.steps, i, ts[i], w)
			}
		}
		for i, w := range c.tail {
			j := c.steps - len(c.tail) + i
			if ts[j] != w {
				t.Errorf("%d steps: t[%d] = %d, want %d", c.steps, j, ts[j], w)
			}
		}
		for i := 1; i < c.steps; i++ {
			if !(sig[i] < sig[i-1]) {
				t.Errorf("%d steps: σ not decreasing at %d: %v, %v", c.steps, i, sig[i-1], sig[i])
			}
		}
	}
	if WanSigmaMax != 0.9990000128746033 {
		t.Errorf("σmax = %.17g", WanSigmaMax)
	}
	if _, _, err := UniPCSchedule(0, 5); err == nil {
		t.Error("0 steps: want an error")
	}
	if _, _, err := UniPCSchedule(10, -1); err == nil {
		t.Error("negative shift: want an error")
	}
}

// gaussFlow is the exact flow-matching velocity for data x0 ~ N(mu, sd²)
// per element (x_σ = (1−σ)·x0 + σ·ε): linear in x, with the closed-form
// ODE solution x(σ) = (1−σ)·mu + sqrt((1−σ)²sd² + σ²)·z.
type gaussFlow struct{ mu, sd []float64 }

func (g gaussFlow) velocity(st Step, x []float32) ([]float32, error) {
	s := st.Time
	v := make([]float32, len(x))
	for i := range x {
		a := 1 - s
		vr := a*a*g.sd[i]*g.sd[i] + s*s
		x0 := g.mu[i] + a*g.sd[i]*g.sd[i]/vr*(float64(x[i])-a*g.mu[i])
		v[i] = float32((float64(x[i]) - x0) / s)
	}
	return v, nil
}

// endpoint is the exact σ = 0 value of the trajectory through x at σ.
func (g gaussFlow) endpoint(x []float32, s float64) []float32 {
	out := make([]float32, len(x))
	for i := range x {
		a := 1 - s
		z := (float64(x[i]) - a*g.mu[i]) / math.Sqrt(a*a*g.sd[i]*g.sd[i]+s*s)
		out[i] = float32(g.mu[i] + g.sd[i]*z)
	}
	return out
}

func newGaussFlow(n int) (gaussFlow, []float32) {
	g := gaussFlow{mu: make([]float64, n), sd: make([]float64, n)}
	x := make([]float32, n)
	_ = NewGaussian(3).Normal(x)
	u := make([]float32, 2*n)
	_ = NewGaussian(4).Normal(u)
	for i := range g.mu {
		g.mu[i] = float64(u[i])
		g.sd[i] = 0.5 + 0.5*math.Abs(float64(u[n+i]))
	}
	return g, x
}

// trajectory is the exact ODE state at σ of the trajectory through x at σ0.
func (g gaussFlow) trajectory(x []float32, s0, s float64) []float32 {
	end := g.endpoint(x, s0)
	out := make([]float32, len(x))
	for i := range x {
		z := (float64(end[i]) - g.mu[i]) / g.sd[i]
		a := 1 - s
		out[i] = float32(a*g.mu[i] + math.Sqrt(a*a*g.sd[i]*g.sd[i]+s*s)*z)
	}
	return out
}

// TestUniPCConverges integrates an ODE with a known solution. Mid-way
// (σ_{N/2}, where the λ steps shrink like 1/N) the state must converge at
// third order for shift 5 (measured: 7.8x, 8.6x, 9.4x per doubling),
// which the predictor alone (second order, measured ≈3.6x) or a broken
// corrector does not reach. Near σ = 0 the λ steps stay O(1) and the last
// step jumps to the x0 prediction, so the final sample converges more
// slowly; it must still improve with every doubling.
func TestUniPCConverges(t *testing.T) {
	g, x := newGaussFlow(2000)
	// Minimum error reduction per doubling mid-way: third order with Wan's
	// shift 5; with shift 1 the first λ steps (σ near 1) stay O(1) too and
	// only second order shows.
	for _, c := range []struct{ shift, gain float64 }{{5, 6}, {1, 2.5}} {
		shift := c.shift
		prevInner, prevFinal := math.Inf(1), math.Inf(1)
		for _, n := range []int{10, 20, 40, 80} {
			sig, _, err := UniPCSchedule(n, shift)
			if err != nil {
				t.Fatal(err)
			}
			u := newUniPCState(sig)
			y := append([]float32(nil), x...)
			var inner float64
			for i := 0; i < n; i++ {
				if i == n/2 {
					inner = maxAbsDiff(y, g.trajectory(x, float64(sig[0]), float64(sig[i])))
				}
				v, _ := g.velocity(Step{Time: float64(sig[i])}, y)
				y = u.step(v, y)
			}
			final := maxAbsDiff(y, g.endpoint(x, float64(sig[0])))
			t.Logf("UniPC shift %g, %2d steps: error at σ_N/2 %.3e, final %.3e", shift, n, inner, final)
			if !(inner <= prevInner/c.gain || inner <= 2e-6) { // NaN fails too
				t.Errorf("shift %g, %d steps: error at σ_N/2 %.3e, not %gx below %.3e", shift, n, inner, c.gain, prevInner)
			}
			if !(final <= prevFinal/1.8) {
				t.Errorf("shift %g, %d steps: final error %.3e, not below %.3e/1.8", shift, n, final, prevFinal)
			}
			prevInner, prevFinal = inner, final
		}
	}
	// The public loop runs the same solver.
	sig, _, _ := UniPCSchedule(20, 5)
	out, err := UniPC{Steps: 20, Shift: 5}.Sample(x, g.velocity)
	if err != nil {
		t.Fatal(err)
	}
	u := newUniPCState(sig)
	y := append([]float32(nil), x...)
	for i := 0; i < 20; i++ {
		v, _ := g.velocity(Step{Time: float64(sig[i])}, y)
		y = u.step(v, y)
	}
	if i := bitsEqual(out, y); i >= 0 {
		t.Errorf("Sample differs from stepping at %d", i)
	}
}

// TestUniPCOneStep: with one step (order 1, σ → 0) UniPC returns the x0
// prediction x − σ·v.
func TestUniPCOneStep(t *testing.T) {
	x := []float32{1, -2, 0.5}
	v := []float32{0.25, 1, -3}
	out, err := UniPC{Steps: 1, Shift: 5}.Sample(x, func(st Step, in []float32) ([]float32, error) {
		if st.Timestep != 999 {
			t.Errorf("timestep %v, want 999", st.Timestep)
		}
		return v, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := UniPCSchedule(1, 5)
	for i := range x {
		if w := x[i] - s[0]*v[i]; out[i] != w {
			t.Errorf("[%d] = %v, want %v", i, out[i], w)
		}
	}
}

func TestEulerConverges(t *testing.T) {
	g, x := newGaussFlow(2000)
	sig, ts, err := EulerSchedule(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sig[0] != 1 || ts[0] != 1000 || sig[4] != 0 || sig[2] != 0.5 {
		t.Errorf("schedule %v / %v", sig, ts)
	}
	want := g.endpoint(x, 1)
	prev := math.Inf(1)
	for _, n := range []int{8, 16, 32, 64} {
		out, err := Euler{Steps: n, Shift: 3}.Sample(x, g.velocity)
		if err != nil {
			t.Fatal(err)
		}
		e := maxAbsDiff(out, want)
		t.Logf("Euler %2d steps: max error %.3e", n, e)
		if !(e <= prev/1.6) { // NaN fails too
			t.Errorf("%d steps error %.3e, not below %.3e/1.6", n, e, prev)
		}
		prev = e
	}
}

func TestCFG(t *testing.T) {
	out, err := CFG([]float32{3, 1}, []float32{1, 1}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != 11 || out[1] != 1 {
		t.Errorf("CFG = %v, want [11 1]", out)
	}
	if _, err := CFG([]float32{1}, []float32{1, 2}, 5); err == nil {
		t.Error("length mismatch: want an error")
	}
}

func TestSolve2(t *testing.T) {
	for _, r := range []float32{-0.5, -1, -2, 3} {
		x, y := solve2(1, 1, r, 1, 2, 5)
		if math.Abs(float64(x+y-2)) > 1e-6 || math.Abs(float64(r*x+y-5)) > 1e-5 {
			t.Errorf("r=%v: x=%v y=%v do not solve the system", r, x, y)
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}
