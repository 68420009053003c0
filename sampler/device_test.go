package sampler

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// countingOps is HostOps that counts live tensors, to catch a loop that
// leaks device memory.
type countingOps struct {
	HostOps
	live, syncs int
}

func (c *countingOps) Sync() { c.syncs++ }

func (c *countingOps) Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	c.live++
	return c.HostOps.Upload(dt, shape, data)
}
func (c *countingOps) RCMInit(eps backend.Tensor, s0 float64) backend.Tensor {
	c.live++
	return c.HostOps.RCMInit(eps, s0)
}
func (c *countingOps) RCMInput(x backend.Tensor, dt tensor.DType) backend.Tensor {
	c.live++
	return c.HostOps.RCMInput(x, dt)
}
func (c *countingOps) Free(t backend.Tensor) {
	if h := t.(*HostTensor); !h.freed {
		c.live--
	}
	c.HostOps.Free(t)
}

// toyVelocity is a nonlinear velocity field of x and the timestep, so
// every input value and every step's time reaches the result.
func toyVelocity(st Step, x []float32) []float32 {
	v := make([]float32, len(x))
	for i, xv := range x {
		v[i] = float32(math.Sin(float64(xv))*0.3 + float64(st.Timestep)*1e-3 + float64(i%7)*0.01)
	}
	return v
}

// onDevice wraps a host velocity for SampleOn on dev, recording its inputs.
func onDevice(dev Device, shape []int, f func(Step, []float32) []float32, inputs *[][]float32) DeviceVelocity {
	return func(st Step, x backend.Tensor) (backend.Tensor, error) {
		in := dev.Download(x)
		*inputs = append(*inputs, in)
		return dev.Upload(tensor.F32, shape, f(st, in)), nil
	}
}

// TestSampleOnMatchesSample: the device loop on the host reference ops gives
// Sample's network inputs and final latent bit for bit, for every step
// count, SDE and ODE, float32 and bfloat16 networks, and frees every
// tensor it allocates.
func TestSampleOnMatchesSample(t *testing.T) {
	shape := []int{4, 3, 10, 13} // 1560 values: not a multiple of any vector width
	n := tensor.NumElements(shape)
	for steps := 1; steps <= MaxRCMSteps; steps++ {
		for _, ode := range []bool{false, true} {
			for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
				t.Run(fmt.Sprintf("steps%d_ode%v_%v", steps, ode, dt), func(t *testing.T) {
					c := RCM{Steps: steps, SigmaMax: 80, ODE: ode, NetDType: dt}
					var want [][]float32
					ref, err := c.Sample(n, NewGaussian(5), func(st Step, x []float32) ([]float32, error) {
						want = append(want, append([]float32(nil), x...))
						return toyVelocity(st, x), nil
					})
					if err != nil {
						t.Fatal(err)
					}
					dev := &countingOps{}
					var got [][]float32
					out, err := c.SampleOn(dev, shape, NewGaussian(5), onDevice(dev, shape, toyVelocity, &got))
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(want) {
						t.Fatalf("%d network calls, Sample made %d", len(got), len(want))
					}
					for k := range want {
						if i := bitsEqual(got[k], want[k]); i >= 0 {
							t.Fatalf("step %d: input[%d] = %v, Sample's %v", k, i, got[k][i], want[k][i])
						}
					}
					if i := bitsEqual(out, ref); i >= 0 || len(out) != n {
						t.Fatalf("final latent (%d values) differs from Sample's at %d", len(out), i)
					}
					if dev.live != 0 {
						t.Errorf("%d tensors left allocated", dev.live)
					}
				})
			}
		}
	}
}

// TestSampleOnGolden replays the reference's rCM loops (as TestRCMGolden)
// through SampleOn on the host reference ops: every network input and the
// final latent bit-identical to the reference's.
func TestSampleOnGolden(t *testing.T) {
	f := golden.Open(t, "rcm_sampler.safetensors")
	man := golden.LoadManifest(t)
	init, shape := golden.Tensor(t, f, "noise.init")
	for _, name := range man.Keys(t, "configs", "rcm") {
		t.Run(name, func(t *testing.T) {
			steps := man.Int(t, "configs", "rcm", name, "steps")
			dt := tensor.F32
			if man.String(t, "configs", "rcm", name, "dtype") == "bfloat16" {
				dt = tensor.BF16
			}
			noise := &Recorded{Draws: [][]float32{init}}
			for i := 0; i < steps; i++ {
				d, _ := golden.Tensor(t, f, fmt.Sprintf("noise.step.%d", i))
				noise.Draws = append(noise.Draws, d)
			}
			dev := &countingOps{}
			var inputs [][]float32
			vel := onDevice(dev, shape, func(st Step, x []float32) []float32 {
				v, _ := golden.Tensor(t, f, fmt.Sprintf("%s.step.%d.v_pred", name, st.Index))
				return v
			}, &inputs)
			c := RCM{Steps: steps, SigmaMax: man.ArgvNumber(t, name, "--sigma_max"), NetDType: dt}
			out, err := c.SampleOn(dev, shape, noise, vel)
			if err != nil {
				t.Fatal(err)
			}
			for k, x := range inputs {
				want, _ := golden.Tensor(t, f, fmt.Sprintf("%s.step.%d.net_input", name, k))
				if i := bitsEqual(x, want); i >= 0 {
					t.Errorf("step %d: net_input[%d] = %v, reference %v", k, i, x[i], want[i])
				}
			}
			ref, _ := golden.Tensor(t, f, name+".final_latent")
			if i := bitsEqual(out, ref); i >= 0 {
				t.Errorf("final_latent[%d] = %v, reference %v", i, out[i], ref[i])
			}
			if noise.next != len(noise.Draws) {
				t.Errorf("drew %d noise tensors, reference drew %d", noise.next, len(noise.Draws))
			}
		})
	}
}

// TestSampleOnErrors: a failing network and a velocity of the wrong size
// are errors naming the step, a failing op is its own error, and nothing
// stays allocated.
func TestSampleOnErrors(t *testing.T) {
	shape := []int{2, 3, 4}
	c := RCM{Steps: 3, SigmaMax: 80, NetDType: tensor.BF16}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		want []string
		v    func(dev Device, st Step, x backend.Tensor) (backend.Tensor, error)
	}{
		{"network error", []string{"step 1 (timestep ", "): boom"}, func(dev Device, st Step, x backend.Tensor) (backend.Tensor, error) {
			if st.Index == 1 {
				return nil, boom
			}
			return dev.Upload(tensor.F32, shape, make([]float32, 24)), nil
		}},
		{"short velocity", []string{"step 0: velocity is float32 [23]"}, func(dev Device, st Step, x backend.Tensor) (backend.Tensor, error) {
			return dev.Upload(tensor.F32, []int{23}, make([]float32, 23)), nil
		}},
		{"bf16 velocity", []string{"step 0: velocity is bfloat16"}, func(dev Device, st Step, x backend.Tensor) (backend.Tensor, error) {
			return dev.Upload(tensor.BF16, shape, make([]float32, 24)), nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := &countingOps{}
			_, err := c.SampleOn(dev, shape, NewGaussian(1), func(st Step, x backend.Tensor) (backend.Tensor, error) {
				return tc.v(dev, st, x)
			})
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want one containing %q", err, w)
				}
			}
			t.Log(err)
			if dev.live != 0 {
				t.Errorf("%d tensors left allocated", dev.live)
			}
		})
	}
	// A failing op (a backend panics with *backend.Error) is an error, not a
	// panic.
	dev := &failingOps{countingOps: &countingOps{}, failAt: 2}
	_, err := c.SampleOn(dev, shape, NewGaussian(1), func(st Step, x backend.Tensor) (backend.Tensor, error) {
		return dev.Upload(tensor.F32, shape, make([]float32, 24)), nil
	})
	if err == nil || !strings.Contains(err.Error(), "update 2 failed") {
		t.Fatalf("failing op: error %v, want the op's", err)
	}
	if dev.live != 0 {
		t.Errorf("failing op: %d tensors left allocated", dev.live)
	}
}

// failingOps fails its failAt-th RCMUpdate as a backend does.
type failingOps struct {
	*countingOps
	failAt, updates int
}

func (f *failingOps) RCMUpdate(x, v, eps backend.Tensor, cur, next float64) {
	if f.updates++; f.updates == f.failAt {
		backend.Fail("update %d failed", f.updates)
	}
	f.countingOps.RCMUpdate(x, v, eps, cur, next)
}

// TestSampleOnSyncsEachStep: the network of step i runs after i waits for
// the device (progress and cancellation stay step by step), and the state
// is not waited for again before the final download.
func TestSampleOnSyncsEachStep(t *testing.T) {
	shape := []int{8, 8}
	dev := &countingOps{}
	c := RCM{Steps: 4, SigmaMax: 80, NetDType: tensor.BF16}
	_, err := c.SampleOn(dev, shape, NewGaussian(1), func(st Step, x backend.Tensor) (backend.Tensor, error) {
		if dev.syncs != st.Index {
			t.Errorf("step %d runs after %d waits, want %d", st.Index, dev.syncs, st.Index)
		}
		return dev.Upload(tensor.F32, shape, make([]float32, 64)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dev.syncs != c.Steps {
		t.Errorf("%d waits for %d steps", dev.syncs, c.Steps)
	}
}
