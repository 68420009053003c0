package wan

import (
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestForwardDevice: ForwardDevice on an uploaded latent equals Forward bit
// for bit (the patch layout changes on the backend instead of the host),
// for a bf16 SLA and a float32 dense model and either input dtype; it
// leaves only its result in the caller's scope and the input alive.
func TestForwardDevice(t *testing.T) {
	in := loadInputs(t)
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"bf16_sla", Options{DType: tensor.BF16, Attention: backend.SLA, TopK: 0.25}},
		{"f32_dense", Options{DType: tensor.F32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := cpu.New()
			m, err := Load(be, golden.Open(t, "dit_weights.safetensors"), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			txt, err := m.EmbedText(in.text, in.rows)
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Free()
			want, err := m.Forward(in.x, in.shape, in.t, txt)
			if err != nil {
				t.Fatal(err)
			}
			dts := []tensor.DType{tensor.F32} // a bf16 latent into a float32 model is another input
			if tc.opt.DType == tensor.BF16 {
				dts = append(dts, tensor.BF16)
			}
			for _, idt := range dts {
				caller := be.Begin()
				x := be.Upload(idt, in.shape, in.x)
				out, err := m.ForwardDevice(x, in.t, txt)
				if err != nil {
					caller.End()
					t.Fatal(err)
				}
				if got := be.ScopedLive(); got != 2 {
					t.Errorf("%v input: %d tensors in the caller's scope, want 2 (input and result)", idt, got)
				}
				wantShape := []int{m.Config.OutDim, in.shape[1], in.shape[2], in.shape[3]}
				if !backend.SameShape(out.Shape(), wantShape) || out.DType() != tensor.F32 {
					t.Errorf("%v input: result %v %v, want float32 %v", idt, out.DType(), out.Shape(), wantShape)
				}
				got := be.Download(out)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v input: velocity[%d] = %v, Forward's %v", idt, i, got[i], want[i])
					}
				}
				be.Download(x) // the input is the caller's
				caller.End()
			}
			// Bad latents are errors naming the problem.
			for _, bad := range []struct {
				x    backend.Tensor
				want string
			}{
				{be.Upload(tensor.F32, []int{in.shape[0], in.shape[1], in.shape[2] + 1, in.shape[3]}, make([]float32, in.shape[0]*in.shape[1]*(in.shape[2]+1)*in.shape[3])), "latent shape"},
				{be.UploadInt8(in.shape, make([]int8, tensor.NumElements(in.shape))), "latent dtype"},
				{nil, "nil latent"},
			} {
				if _, err := m.ForwardDevice(bad.x, in.t, txt); err == nil || !strings.Contains(err.Error(), bad.want) {
					t.Errorf("error %v, want one containing %q", err, bad.want)
				}
			}
		})
	}
}
