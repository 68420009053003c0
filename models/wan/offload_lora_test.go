package wan

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
)

// allWeights is weights with the streamed Linears of an offloaded model
// read from their host copies (what the slots are filled from).
func allWeights(t *testing.T, m *Model) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range m.params() {
		w, s := *p.dst, backend.Tensor(nil)
		if p.scale != nil {
			s = *p.scale
		}
		if i, l, ok := m.streamed(p); ok {
			h := m.off.host[i][l]
			w = h[0].(*cpu.Tensor)
			if h[1] != nil {
				s = h[1].(*cpu.Tensor)
			}
		}
		c := cpu.T(w)
		if c.I != nil || p.scale != nil {
			codes := make([]float32, len(c.I))
			for i, q := range c.I {
				codes[i] = float32(q)
			}
			out[p.name] = codes
			out[p.name+"#scale"] = append([]float32(nil), cpu.T(s).F...)
			continue
		}
		out[p.name] = append([]float32(nil), c.F...)
	}
	return out
}

// TestSetLoRAOffload: SetLoRA on an offloaded model (bf16 SLA and -quant
// SageSLA, three blocks so block 2 reuses block 0's slot) merges into the
// host copies the slots stream from: its forward equals the resident
// model's with the same LoRA bit for bit, its weights equal loading with
// the LoRA (for -quant: the codes and scales of quantising the merged bf16
// weight, as at load), and SetLoRA(nil) restores the weights Load made and
// the forward. A streamed weight missing from host memory (a SetLoRA that
// failed part-way) fails the forward instead of computing with another
// block's weights.
func TestSetLoRAOffload(t *testing.T) {
	c3 := base("", T2V, 128, 256, 1, 3, 16)
	c3.FreqDim, c3.TextDim = 64, loraTextDim
	three := testmodels.NewRandom("random:three-blocks", Tensors(c3), 4)
	quantPath := filepath.Join(t.TempDir(), "three-quant.safetensors")
	if err := quant.QuantizeCheckpoint(three, quantPath); err != nil {
		t.Fatal(err)
	}
	// A LoRA on streamed weights of blocks 0 and 2 (slot 0 both), a
	// resident Linear (the head) and a resident bias.
	r := rand.New(rand.NewPCG(14, 14))
	const D, F, rank = 128, 256, 4
	path := writeLoRAFile(t, "offload.safetensors", []loraTensor{
		{"diffusion_model.blocks.0.self_attn.q.lora_A.weight", []int{rank, D}, normals(r, rank*D, 0.3)},
		{"diffusion_model.blocks.0.self_attn.q.lora_B.weight", []int{D, rank}, normals(r, D*rank, 0.15)},
		{"diffusion_model.blocks.2.ffn.0.lora_A.weight", []int{rank, D}, normals(r, rank*D, 0.3)},
		{"diffusion_model.blocks.2.ffn.0.lora_B.weight", []int{F, rank}, normals(r, F*rank, 0.15)},
		{"diffusion_model.blocks.2.cross_attn.k.lora_A.weight", []int{rank, D}, normals(r, rank*D, 0.3)},
		{"diffusion_model.blocks.2.cross_attn.k.lora_B.weight", []int{D, rank}, normals(r, D*rank, 0.15)},
		{"diffusion_model.head.head.lora_A.weight", []int{rank, D}, normals(r, rank*D, 0.3)},
		{"diffusion_model.head.head.lora_B.weight", []int{64, rank}, normals(r, 64*rank, 0.15)},
		{"diffusion_model.blocks.1.ffn.0.diff_b", []int{F}, normals(r, F, 0.05)},
	})
	spec := lora.Spec{Path: path, Scale: 0.8}
	for _, c := range []struct {
		name string
		f    checkpoint.File
		opt  Options
	}{
		{"bf16 sla", three, Options{Attention: backend.SLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
		{"quant sagesla", openFile(t, quantPath), Options{Attention: backend.SageSLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := lora.Open(spec)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			as := []*lora.Adapter{a}
			res := loadWithLoRA(t, c.f, c.opt)
			if _, err := res.SetLoRA(c.f, as); err != nil {
				t.Fatal(err)
			}
			want := tinyForward(t, res)
			atLoad := allWeights(t, loadWithLoRA(t, c.f, c.opt, spec))

			opt := c.opt
			opt.Offload = true
			m := loadWithLoRA(t, c.f, opt)
			orig := allWeights(t, m)
			plain := tinyForward(t, m)
			if slices.Equal(plain, want) {
				t.Fatal("the LoRA does not change the output")
			}
			if _, err := m.SetLoRA(c.f, as); err != nil {
				t.Fatalf("SetLoRA on an offloaded model: %v", err)
			}
			if got := tinyForward(t, m); !slices.Equal(got, want) {
				t.Error("the offloaded model with the request LoRA differs from the resident one with it")
			}
			if n := countTouched(allWeights(t, m), atLoad); n != 0 {
				t.Errorf("%d parameters differ from loading with the LoRA", n)
			}
			for _, name := range []string{"blocks.0.self_attn.q.weight", "blocks.2.ffn.0.weight", "blocks.2.cross_attn.k.weight"} {
				if slices.Equal(orig[name], atLoad[name]) {
					t.Errorf("the LoRA does not change the streamed %s", name)
				}
			}
			if _, err := m.SetLoRA(c.f, nil); err != nil {
				t.Fatal(err)
			}
			if n := countTouched(allWeights(t, m), orig); n != 0 {
				t.Errorf("%d parameters differ from the loaded model after restoring", n)
			}
			if got := tinyForward(t, m); !slices.Equal(got, plain) {
				t.Error("the offloaded model's output is not restored after SetLoRA(nil)")
			}

			// A host copy gone (as a SetLoRA failing between freeing and
			// loading it leaves it): the forward fails, naming it.
			i, l := 2, linFFN0
			h := m.off.host[i][l]
			m.off.host[i][l] = [2]backend.HostTensor{}
			txt, err := m.EmbedText(normals(r, 3*loraTextDim, 1), 3)
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Free()
			_, err = m.Forward(normals(r, 16*2*4*4, 1), []int{16, 2, 4, 4}, 500, txt)
			if err == nil || !strings.Contains(err.Error(), "block 2's ffn.0") {
				t.Errorf("a forward with block 2's ffn.0 missing from host memory: %v", err)
			}
			m.off.host[i][l] = h
		})
	}
}
