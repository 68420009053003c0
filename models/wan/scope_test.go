package wan

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestForwardScopes: EmbedText and Forward leave nothing in the caller's
// scope (the text context and the RoPE cache live on, outside scopes, until
// Text.Free and Model.Free), the activations they computed are freed when
// they return (a hooked one fails on use), and a second pass still works.
func TestForwardScopes(t *testing.T) {
	be := cpu.New()
	m, err := Load(be, golden.Open(t, "dit_weights.safetensors"), Options{DType: tensor.BF16, Attention: backend.SLA, TopK: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	in := loadInputs(t)
	caller := be.Begin()
	defer caller.End()
	txt, err := m.EmbedText(in.text, in.rows)
	if err != nil {
		t.Fatal(err)
	}
	defer txt.Free()
	if n := be.ScopedLive(); n != 0 {
		t.Errorf("EmbedText left %d tensors in the caller's scope, want 0", n)
	}
	hooked := map[string]backend.Tensor{}
	m.Hook = func(name string, x backend.Tensor) { hooked[name] = x }
	first, err := m.Forward(in.x, in.shape, in.t, txt)
	if err != nil {
		t.Fatal(err)
	}
	if n := be.ScopedLive(); n != 0 {
		t.Errorf("Forward left %d tensors in the caller's scope, want 0", n)
	}
	for _, name := range []string{"patch_embedding", "blocks.0.self_attn", "blocks.0", "head"} {
		x, ok := hooked[name]
		if !ok {
			t.Fatalf("hook %s not called", name)
		}
		func() {
			defer func() {
				if _, ok := recover().(*backend.Error); !ok {
					t.Errorf("activation %s is still usable after Forward returned", name)
				}
			}()
			be.Download(x)
		}()
	}
	m.Hook = nil
	second, err := m.Forward(in.x, in.shape, in.t, txt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("second pass differs at %d: %v vs %v", i, second[i], first[i])
		}
	}
	be.Download(txt.k[0]) // the text context lives until txt.Free
}
