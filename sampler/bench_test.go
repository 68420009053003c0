package sampler

import (
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// bench480p is the latent of a 1.3B 480p × 81-frame run: [16, 21, 60, 104].
const bench480p = 16 * 21 * 60 * 104

// BenchmarkRCMHost times the host side of the rCM loop on a 480p latent,
// part by part, with the network replaced by a velocity computed in
// advance: what the GPU waits for between two forwards with the host loop
// (Sample). "loop" is a whole 4-step SDE run (initial noise and final
// conversion included) and reports host-ns/step, its time per step beyond
// the network's; the parts are one pass each. With the device loop
// (SampleOn on the GPU) only the noise remains on the host, drawn while the
// network runs.
func BenchmarkRCMHost(b *testing.B) {
	n := bench480p
	eps := make([]float32, n)
	_ = NewGaussian(1).Normal(eps)
	vel := make([]float32, n)
	_ = NewGaussian(2).Normal(vel)
	x := make([]float64, n)
	in := make([]float32, n)
	rcmInit(x, eps, 0.98)
	b.Run("noise", func(b *testing.B) {
		g := NewGaussian(3)
		for b.Loop() {
			_ = g.Normal(eps)
		}
	})
	b.Run("init", func(b *testing.B) {
		for b.Loop() {
			rcmInit(x, eps, 0.98)
		}
	})
	b.Run("input_bf16", func(b *testing.B) {
		for b.Loop() {
			rcmInput(in, x, tensor.BF16)
		}
	})
	b.Run("sde_update", func(b *testing.B) {
		for b.Loop() {
			rcmSDEUpdate(x, vel, eps, 0.9, 0.8)
		}
	})
	b.Run("final", func(b *testing.B) {
		for b.Loop() {
			rcmInput(in, x, tensor.F32)
		}
	})
	b.Run("loop", func(b *testing.B) {
		// The network is a 50 ms wait (a GPU forward the host does not
		// compute): what the host adds on top is the loop's cost per step,
		// with the step noise drawn during the wait as on a GPU.
		const steps, forward = 4, 50 * time.Millisecond
		c := RCM{Steps: steps, SigmaMax: 80, NetDType: tensor.BF16}
		fake := func(Step, []float32) ([]float32, error) { time.Sleep(forward); return vel, nil }
		for b.Loop() {
			if _, err := c.Sample(n, NewGaussian(4), fake); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps)-float64(forward.Nanoseconds()), "host-ns/step")
	})
}
