package umt5

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// rewrite copies the golden encoder weights into a new safetensors file
// with the "weight." prefix replaced by prefix; edit may drop (return
// false) or change a tensor.
func rewrite(t *testing.T, prefix string, edit func(*checkpoint.Tensor) bool) checkpoint.File {
	t.Helper()
	src := golden.Open(t, "umt5.safetensors")
	var ts []checkpoint.Tensor
	for _, n := range src.Names() {
		name, ok := strings.CutPrefix(n, "weight.")
		if !ok {
			continue
		}
		info, _ := src.Info(n)
		raw, err := src.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		ct := checkpoint.Tensor{Name: prefix + name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)}
		if edit == nil || edit(&ct) {
			ts = append(ts, ct)
		}
	}
	p := filepath.Join(t.TempDir(), "enc.safetensors")
	if err := checkpoint.WriteSafetensors(p, ts); err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.OpenSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestLoadPlainKeys: Wan's checkpoint has no prefix; the result must not
// depend on it.
func TestLoadPlainKeys(t *testing.T) {
	f := rewrite(t, "", nil)
	g := golden.Open(t, "umt5.safetensors")
	in := loadGoldenInputs(t, g)
	enc, err := Load(cpu.New(), f, Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	got, err := enc.Encode(in.ids, in.length)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := golden.Tensor(t, g, "embedding_fp32")
	golden.Compare(t, "embedding_fp32 (unprefixed keys)", got, want, 1e-4)
}

func TestLoadErrors(t *testing.T) {
	// Tensor names and shapes come from the set's encoder: its last layer's
	// fc2, layer 0's output projection [dim, dim_attn].
	src := golden.Open(t, "umt5.safetensors")
	man := golden.LoadManifest(t)
	fc2 := fmt.Sprintf("blocks.%d.ffn.fc2.weight", man.Int(t, "configs", "umt5", "encoder_layers")-1)
	oi, ok := src.Info("weight.blocks.0.attn.o.weight")
	if !ok || len(oi.Shape) != 2 || oi.Shape[1] < 2 {
		t.Fatalf("%s: weight.blocks.0.attn.o.weight %v (present %v), want [dim, dim_attn]", src.Path(), oi.Shape, ok)
	}
	badO := []int{oi.Shape[0], oi.Shape[1] / 2}
	cases := []struct {
		name string
		edit func(*checkpoint.Tensor) bool
		msg  []string
	}{
		{"missing fc2", func(c *checkpoint.Tensor) bool { return c.Name != fc2 },
			[]string{"missing 1 tensor", fc2}},
		{"wrong o shape", func(c *checkpoint.Tensor) bool {
			if c.Name == "blocks.0.attn.o.weight" {
				c.Shape, c.Data = badO, c.Data[:len(c.Data)/oi.Shape[1]*badO[1]]
			}
			return true
		}, []string{"blocks.0.attn.o.weight", "want shape " + fmt.Sprint(oi.Shape) + ", got " + fmt.Sprint(badO)}},
		{"missing final norm", func(c *checkpoint.Tensor) bool { return c.Name != "norm.weight" },
			[]string{"missing 1 tensor", "norm.weight"}},
		{"int8 weight", func(c *checkpoint.Tensor) bool {
			if c.Name == "blocks.0.norm2.weight" {
				c.DType, c.Data = tensor.I8, c.Data[:tensor.NumElements(c.Shape)]
			}
			return true
		}, []string{"blocks.0.norm2.weight", "want a float dtype, got int8"}},
		{"no relative table", func(c *checkpoint.Tensor) bool { return !strings.Contains(c.Name, "blocks.0.pos_embedding") },
			[]string{"relative-position", "blocks.0.pos_embedding.embedding.weight"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := rewrite(t, "", c.edit)
			_, err := Load(cpu.New(), f, Options{DType: tensor.BF16})
			if err == nil {
				t.Fatal("want an error")
			}
			t.Logf("%v", err)
			for _, m := range c.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if !strings.Contains(err.Error(), f.Path()) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// not an encoder at all
	dit := golden.Open(t, "dit_weights.safetensors")
	if _, err := Load(cpu.New(), dit, Options{DType: tensor.BF16}); err == nil || !strings.Contains(err.Error(), "not a umT5 encoder") {
		t.Errorf("DiT checkpoint: error %v", err)
	}
}
