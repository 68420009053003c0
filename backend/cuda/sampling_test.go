package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// downloadF64 copies an F64 tensor (the rCM state) back bit for bit.
func downloadF64(g *Backend, t backend.Tensor) []float64 {
	ct := T(t)
	if ct.dt != tensor.F64 {
		panic(fmt.Sprintf("downloadF64: %v tensor", ct.dt))
	}
	b := g.rawBytes(ct)
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// TestRCMOpsMatchHost: the device rCM steps equal the host loop's
// (sampler.HostOps) bit for bit: the initial state, the network input in
// bf16 and float32, and the SDE and ODE updates at every step of the
// 4-step schedule, on a latent longer than one grid-stride pass.
func TestRCMOpsMatchHost(t *testing.T) {
	g := gpu(t)
	var h sampler.HostOps
	r := rng(t)
	shape := []int{3, 5, 271, 263} // 1,069,095 values: not a multiple of the block, several grid strides
	n := tensor.NumElements(shape)
	eps := randn(r, n, 1)
	s, err := sampler.RCMTimes(4, 80)
	if err != nil {
		t.Fatal(err)
	}
	sc := g.Begin()
	defer sc.End()
	hx := h.RCMInit(h.Upload(tensor.F32, shape, eps), s[0]).(*sampler.HostTensor)
	gx := g.RCMInit(g.Upload(tensor.F32, shape, eps), s[0])
	checkState := func(what string) {
		t.Helper()
		got := downloadF64(g, gx)
		for i, w := range hx.D {
			if math.Float64bits(got[i]) != math.Float64bits(w) {
				t.Fatalf("%s: state[%d] = %v, host %v", what, i, got[i], w)
			}
		}
	}
	checkState("RCMInit")
	for i := 0; i < 4; i++ {
		for _, dt := range []tensor.DType{tensor.BF16, tensor.F32} {
			got, want := g.Download(g.RCMInput(gx, dt)), h.Download(h.RCMInput(hx, dt))
			for j := range want {
				if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
					t.Fatalf("step %d RCMInput %v: [%d] = %v, host %v", i, dt, j, got[j], want[j])
				}
			}
		}
		// Velocities at the scale of the state, so the products round.
		v := randn(r, n, 30)
		e := randn(r, n, 1)
		ode := i == 2 // one ODE step between SDE steps
		var ge, he backend.Tensor
		if !ode {
			ge, he = g.Upload(tensor.F32, shape, e), h.Upload(tensor.F32, shape, e)
		}
		g.RCMUpdate(gx, g.Upload(tensor.F32, shape, v), ge, s[i], s[i+1])
		h.RCMUpdate(hx, h.Upload(tensor.F32, shape, v), he, s[i], s[i+1])
		checkState(fmt.Sprintf("step %d RCMUpdate (ode %v)", i, ode))
	}
	// Bad operands are errors naming the operand.
	for _, c := range []struct {
		name, operand string
		f             func()
	}{
		{"bf16 noise", "RCMInit noise: dtype bfloat16", func() { g.RCMInit(g.Upload(tensor.BF16, shape, eps), 1) }},
		{"short velocity", "RCMUpdate velocity: 5 elements", func() { g.RCMUpdate(gx, g.Upload(tensor.F32, []int{5}, eps[:5]), nil, 1, 0) }},
		{"float32 state", "RCMInput state: dtype float32", func() { g.RCMInput(g.Upload(tensor.F32, shape, eps), tensor.BF16) }},
	} {
		var err error
		func() {
			defer backend.Recover(&err)
			c.f()
		}()
		if err == nil || !strings.Contains(err.Error(), c.operand) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.operand)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// TestGoldenRCMLoopOnGPU runs the reference's rCM loops (configs.rcm of the
// manifest, recorded noise) on the GPU twice: with the latent on the host
// between steps (Sample, Forward) and kept on the device (SampleOn,
// ForwardDevice, the pipeline's GPU path). Both must land within the set's
// tolerance of the reference's final latent (float32 dense 1e-4, bf16 5e-2,
// as TestGoldenRCMLoop on the CPU), and where the forward is deterministic
// (dense attention; SLA's block map sums with atomics) the two loops must
// agree bit for bit.
func TestGoldenRCMLoopOnGPU(t *testing.T) {
	g := gpu(t)
	man := golden.LoadManifest(t)
	f := golden.Open(t, "rcm_sampler.safetensors")
	in := golden.Open(t, "dit_inputs.safetensors")
	text, txs := golden.Tensor(t, in, "text_valid")
	init, shape := golden.Tensor(t, f, "noise.init")
	vshape := shape[1:]
	for _, name := range man.Keys(t, "configs", "rcm") {
		t.Run(name, func(t *testing.T) {
			rn := man.RunNumerics(t, "rcm", name)
			opt := wan.Options{DType: rn.DType, Attention: rn.Attention, Norm: rn.Norm}
			tol := 5e-2
			if rn.Attention == backend.Dense && rn.DType == tensor.F32 {
				tol = 1e-4
			}
			if rn.Attention == backend.SLA {
				opt.TopK = man.ArgvNumber(t, name, "--sla_topk")
				opt.BlockQ = man.Int(t, "configs", "dit", "sla_BLKQ")
				opt.BlockK = man.Int(t, "configs", "dit", "sla_BLKK")
			}
			steps := man.Int(t, "configs", "rcm", name, "steps")
			m, err := wan.Load(g, golden.Open(t, "dit_weights.safetensors"), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			txt, err := m.EmbedText(text, txs[1])
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Free()
			noise := func() sampler.Noise {
				r := &sampler.Recorded{Draws: [][]float32{init}}
				for i := 0; i < steps; i++ {
					d, _ := golden.Tensor(t, f, fmt.Sprintf("noise.step.%d", i))
					r.Draws = append(r.Draws, d)
				}
				return r
			}
			c := sampler.RCM{Steps: steps, SigmaMax: man.ArgvNumber(t, name, "--sigma_max"), NetDType: opt.DType}
			host, err := c.Sample(len(init), noise(), func(st sampler.Step, x []float32) ([]float32, error) {
				return m.Forward(x, vshape, st.Timestep, txt)
			})
			if err != nil {
				t.Fatal(err)
			}
			dev, err := c.SampleOn(g, vshape, noise(), func(st sampler.Step, x backend.Tensor) (backend.Tensor, error) {
				return m.ForwardDevice(x, st.Timestep, txt)
			})
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := golden.Tensor(t, f, name+".final_latent")
			golden.Compare(t, name+".final_latent (GPU, host loop)", host, ref, tol)
			golden.Compare(t, name+".final_latent (GPU, device loop)", dev, ref, tol)
			t.Logf("device loop vs host loop: rel_l2 %.3e", golden.RelL2(dev, host))
			if opt.Attention == backend.Dense {
				for i := range host {
					if math.Float32bits(dev[i]) != math.Float32bits(host[i]) {
						t.Fatalf("dense: device loop [%d] = %v, host loop %v", i, dev[i], host[i])
					}
				}
			}
		})
	}
}
