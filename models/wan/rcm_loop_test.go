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
// recommended tolerances). The text context is the set's DiT input context.
func TestGoldenRCMLoop(t *testing.T) {
	man := golden.LoadManifest(t)
	f := golden.Open(t, "rcm_sampler.safetensors")
	in := loadInputs(t)
	init, shape := golden.Tensor(t, f, "noise.init")
	runs := []struct {
		name    string
		weights string
		opt     Options
		tol     float64
	}{
		{"fp32_original_4step", "dit_weights.safetensors", Options{DType: tensor.F32, Norm: backend.NormDefault}, 1e-4},
		{"bf16_sla_fastnorm_4step", "dit_weights.pth", Options{DType: tensor.BF16, Norm: backend.NormFast, Attention: backend.SLA}, 5e-2},
		{"bf16_sla_fastnorm_2step", "dit_weights.pth", Options{DType: tensor.BF16, Norm: backend.NormFast, Attention: backend.SLA}, 5e-2},
	}
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			steps := int(man.Number(t, "configs", "rcm", run.name, "steps"))
			sigmaMax := argvNumber(t, man, run.name, "--sigma_max")
			if run.opt.Attention != backend.Dense {
				run.opt.TopK = man.Number(t, "configs", "dit", "sla_topk")
				run.opt.BlockQ = int(man.Number(t, "configs", "dit", "sla_BLKQ"))
				run.opt.BlockK = int(man.Number(t, "configs", "dit", "sla_BLKK"))
			}
			be := cpuDiT(t)
			m, err := Load(be, openWeights(t, run.weights), run.opt)
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
					ref, _ := golden.Tensor(t, f, fmt.Sprintf("%s.step.%d.v_pred", run.name, st.Index))
					t.Logf("step %d: v_pred rel_l2 %.3e", st.Index, golden.RelL2(v, ref))
				}
				return v, err
			}
			out, err := sampler.RCM{Steps: steps, SigmaMax: sigmaMax, NetDType: run.opt.DType}.Sample(len(init), noise, vel)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := golden.Tensor(t, f, run.name+".final_latent")
			golden.Compare(t, run.name+".final_latent", out, ref, run.tol)
		})
	}
}

// argvNumber reads a numeric flag of a run's recorded command line.
func argvNumber(t *testing.T, man golden.Manifest, run, flag string) float64 {
	t.Helper()
	v, _ := man.Lookup("configs", "rcm", run, "argv")
	argv, _ := v.([]any)
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			var f float64
			if _, err := fmt.Sscan(fmt.Sprint(argv[i+1]), &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("manifest.json: run %s has no numeric %s in its argv", run, flag)
	return 0
}
