package quant

import (
	"bytes"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func openCheckpoint(t *testing.T, path string) checkpoint.File {
	t.Helper()
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestQuantizeCheckpointConformance quantises the golden dit_weights.pth and
// compares every tensor with dit_int8.pth, written by the reference's
// modify_model.py --quant_linear: codes and scales exact except codes at
// .5 boundaries (counted), every other tensor identical in dtype, shape and
// bytes.
func TestQuantizeCheckpointConformance(t *testing.T) {
	in := openCheckpoint(t, golden.Path(t, "dit_weights.pth"))
	want := openCheckpoint(t, golden.Path(t, "dit_int8.pth"))
	out := filepath.Join(t.TempDir(), "dit-quant.pth")
	calls := 0
	err := QuantizeCheckpointProgress(in, out, func(done, total int, name string) {
		calls++
		if done != calls || total != len(want.Names()) {
			t.Errorf("progress %d/%d after %d calls, want %d/%d", done, total, calls, calls, len(want.Names()))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	got := openCheckpoint(t, out)
	if g, w := strings.Join(got.Names(), ","), strings.Join(want.Names(), ","); g != w {
		t.Fatalf("tensor names differ:\n got %s\nwant %s", g, w)
	}
	quantized, boundary, total := 0, 0, 0
	for _, name := range want.Names() {
		gi, _ := got.Info(name)
		wi, _ := want.Info(name)
		if gi.DType != wi.DType || !slices.Equal(gi.Shape, wi.Shape) {
			t.Errorf("%s: %v %v, reference %v %v", name, gi.DType, gi.Shape, wi.DType, wi.Shape)
			continue
		}
		gb, err := got.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		wb, err := want.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, ".int8_weight") {
			if !bytes.Equal(gb, wb) {
				t.Errorf("%s: bytes differ from the reference", name)
			}
			continue
		}
		quantized++
		base := strings.TrimSuffix(name, ".int8_weight")
		w, err := in.Float32(base + ".weight")
		if err != nil {
			t.Fatal(err)
		}
		sc, err := want.Float32(base + ".scale")
		if err != nil {
			t.Fatal(err)
		}
		n, k := wi.Shape[0], wi.Shape[1]
		_, cols := ScaleShape(n, k)
		for i := range gb {
			total++
			if gb[i] == wb[i] {
				continue
			}
			r, c := i/k, i%k
			v := float64(w[i]) * 128 / (float64(sc[(r/Block)*cols+c/Block]) * 128)
			dist := math.Abs(v - (math.Floor(v) + 0.5))
			d := int(int8(gb[i])) - int(int8(wb[i]))
			t.Logf("%s[%d,%d]: x·128/amax = %.9f (%.1e from .5), code %d, reference %d", name, r, c, v, dist, int8(gb[i]), int8(wb[i]))
			if dist > 1e-6 || (d != 1 && d != -1) {
				t.Errorf("%s[%d,%d]: code %d vs reference %d away from a .5 boundary", name, r, c, int8(gb[i]), int8(wb[i]))
			}
			boundary++
		}
	}
	if quantized == 0 {
		t.Fatal("the reference holds no int8_weight tensors")
	}
	t.Logf("%d Linears quantised; %d of %d codes differ from the reference, all at .5 boundaries; scales and %d other tensors identical",
		quantized, boundary, total, len(want.Names())-2*quantized)
}

func TestQuantizedTensorsRejectsQuantized(t *testing.T) {
	in := openCheckpoint(t, golden.Path(t, "dit_int8.pth"))
	if _, err := QuantizedTensors(in); err == nil || !strings.Contains(err.Error(), "already quantised") {
		t.Fatalf("want an 'already quantised' error, got %v", err)
	}
}

func TestIsQuantizedLinear(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape []int
		want  bool
	}{
		{"blocks.0.self_attn.q.weight", []int{256, 256}, true},
		{"blocks.3.ffn.2.weight", []int{256, 1024}, true},
		{"blocks.0.self_attn.attn_op.local_attn.proj_l.weight", []int{128, 128}, false},
		{"blocks.0.self_attn.q.bias", []int{256}, false},
		{"blocks.0.norm3.weight", []int{256}, false},
		{"blocks.0.modulation", []int{1, 6, 256}, false},
		{"text_embedding.0.weight", []int{256, 4096}, false},
		{"head.head.weight", []int{64, 256}, false},
	} {
		if got := IsQuantizedLinear(checkpoint.Info{Name: c.name, DType: tensor.BF16, Shape: c.shape}); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestQuantizeSafetensorsInput: a safetensors DiT (dit_weights.safetensors,
// same values, WanModel key names) gives the same codes and scales: scales
// bit-exact, every differing code off by one at a .5 boundary.
func TestQuantizeSafetensorsInput(t *testing.T) {
	in := openCheckpoint(t, golden.Path(t, "dit_weights.safetensors"))
	want := openCheckpoint(t, golden.Path(t, "dit_int8.pth"))
	out := filepath.Join(t.TempDir(), "q.pth")
	if err := QuantizeCheckpoint(in, out); err != nil {
		t.Fatal(err)
	}
	got := openCheckpoint(t, out)
	n, diff, total := 0, 0, 0
	for _, name := range want.Names() {
		if !strings.HasSuffix(name, ".int8_weight") && !strings.HasSuffix(name, ".scale") {
			continue
		}
		gb, err := got.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		wb, _ := want.Raw(name)
		if len(gb) != len(wb) {
			t.Fatalf("%s: %d bytes, reference %d", name, len(gb), len(wb))
		}
		n++
		if strings.HasSuffix(name, ".scale") {
			if !bytes.Equal(gb, wb) {
				t.Fatalf("%s: scale bytes differ", name)
			}
			continue
		}
		base := strings.TrimSuffix(name, ".int8_weight")
		w, err := in.Float32(base + ".weight")
		if err != nil {
			t.Fatal(err)
		}
		sc, err := want.Float32(base + ".scale")
		if err != nil {
			t.Fatal(err)
		}
		wi, _ := want.Info(name)
		k := wi.Shape[1]
		_, cols := ScaleShape(wi.Shape[0], k)
		total += len(gb)
		for i := range gb {
			if gb[i] == wb[i] {
				continue
			}
			diff++
			r, c := i/k, i%k
			v := float64(w[i]) * 128 / (float64(sc[(r/Block)*cols+c/Block]) * 128)
			dist := math.Abs(v - (math.Floor(v) + 0.5))
			if d := int(int8(gb[i])) - int(int8(wb[i])); dist > 1e-6 || (d != 1 && d != -1) {
				t.Errorf("%s[%d,%d]: code %d vs reference %d, x·128/amax %.9f is %.1e from a .5 boundary", name, r, c, int8(gb[i]), int8(wb[i]), v, dist)
			}
		}
	}
	t.Logf("%d int8/scale tensors; %d of %d codes differ, all by one at .5 boundaries", n, diff, total)
	if n == 0 {
		t.Error("the reference holds no int8_weight/scale tensors")
	}
}
