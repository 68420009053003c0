package wan

import (
	"fmt"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestGoldenRCMLoop runs the reference's whole rCM loops with this DiT and
// the recorded noise: the float32 dense run must land within 1e-4 of the
// reference's final latent, the bf16 SLA runs within 5e-2 (the set's
// recommended tolerances). The runs, their steps, σmax, dtype, attention,
// norms and top-k come from the manifest (configs.rcm); the weights are the
// set's DiT (every run's checkpoint holds the same values). The text context
// is the set's DiT input context.
func TestGoldenRCMLoop(t *testing.T) {
	man := golden.LoadManifest(t)
	f := golden.Open(t, "rcm_sampler.safetensors")
	in := loadInputs(t)
	init, shape := golden.Tensor(t, f, "noise.init")
	for _, name := range man.Keys(t, "configs", "rcm") {
		t.Run(name, func(t *testing.T) {
			rn := man.RunNumerics(t, "rcm", name)
			opt := Options{DType: rn.DType, Attention: rn.Attention, Norm: rn.Norm}
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
			sigmaMax := man.ArgvNumber(t, name, "--sigma_max")
			be := cpuDiT(t)
			m, err := Load(be, golden.Open(t, "dit_weights.safetensors"), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			txt, err := m.EmbedText(in.text, in.rows)
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Free()
			noise := &sampler.Recorded{Draws: [][]float32{init}}
			for i := 0; i < steps; i++ {
				d, _ := golden.Tensor(t, f, fmt.Sprintf("noise.step.%d", i))
				noise.Draws = append(noise.Draws, d)
			}
			vshape := shape[1:]
			vel := func(st sampler.Step, x []float32) ([]float32, error) {
				v, err := m.Forward(x, vshape, st.Timestep, txt)
				if err == nil {
					ref, _ := golden.Tensor(t, f, fmt.Sprintf("%s.step.%d.v_pred", name, st.Index))
					t.Logf("step %d: v_pred rel_l2 %.3e", st.Index, golden.RelL2(v, ref))
				}
				return v, err
			}
			out, err := sampler.RCM{Steps: steps, SigmaMax: sigmaMax, NetDType: opt.DType}.Sample(len(init), noise, vel)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := golden.Tensor(t, f, name+".final_latent")
			golden.Compare(t, name+".final_latent", out, ref, tol)
		})
	}
}
