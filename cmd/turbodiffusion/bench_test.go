package main

import (
	"io"
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestRandomDiTLoads checks the bench's random checkpoint is a valid Wan DiT
// (the model's own detection accepts it) and that a forward gives finite
// output, on a tiny configuration and the CPU.
func TestRandomDiTLoads(t *testing.T) {
	c, err := wan.Preset("Wan2.1-T2V-1.3B")
	if err != nil {
		t.Fatal(err)
	}
	c.Dim, c.Heads, c.FFNDim, c.Layers, c.TextDim = 256, 2, 512, 2, 64
	f := randomDiT(c)
	fi, err := wan.DetectConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Config.Dim != 256 || fi.Config.Layers != 2 {
		t.Fatalf("detected %+v", fi.Config)
	}
	// A compile-time requirement: if the CPU backend stopped implementing
	// backend.DiT this file would not build, and the package's tests fail.
	var d backend.DiT = cpu.New()
	m, err := wan.Load(d, f, wan.Options{DType: tensor.BF16, Attention: backend.Dense})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	r := newFastRand(3)
	txt, err := m.EmbedText(r.normal(7*c.TextDim), 7)
	if err != nil {
		t.Fatal(err)
	}
	shape := []int{16, 2, 4, 6}
	out, err := m.Forward(r.normal(16*2*4*6), shape, 500, txt)
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("non-finite output")
		}
		ss += float64(v) * float64(v)
	}
	if ss == 0 {
		t.Fatal("all-zero output")
	}
}

// TestBenchDeviceFlag: bench and bench e2e take --device like generate;
// auto picks the GPU when there is one, and an unusable choice is named.
func TestBenchDeviceFlag(t *testing.T) {
	for _, c := range []struct {
		args  []string
		frags []string
	}{
		{[]string{"bench", "--device", "tpu"}, []string{"--device", "tpu", "auto"}},
		{[]string{"bench", "--device", "cpu"}, []string{"--device cpu", "bench e2e --device cpu"}},
		{[]string{"bench", "e2e", "--device", "tpu", "--tokenizer", t.TempDir()}, []string{"--device tpu", "unknown backend"}},
		{[]string{"bench", "e2e", "--device", "cpu", "--vae", "big", "--tokenizer", t.TempDir()}, []string{"--vae", "big", "wan or tiny"}},
		{[]string{"bench", "e2e", "--device", "cpu", "--vae", "tiny", "--vae-tile", "8", "--tokenizer", t.TempDir()}, []string{"--vae-tile 8", "--vae tiny"}},
	} {
		_, _, err := run(t, c.args...)
		if err == nil {
			t.Errorf("%v: accepted", c.args)
			continue
		}
		for _, f := range c.frags {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("%v: error %q does not mention %q", c.args, err, f)
			}
		}
	}
	if _, derr := cuda.DeviceCount(); derr != nil {
		// No GPU: auto says why there is nothing to time instead of
		// refusing the flag.
		_, _, err := run(t, "bench", "--device", "auto")
		if err == nil || !strings.Contains(err.Error(), "no usable GPU") {
			t.Errorf("bench --device auto without a GPU: %v", err)
		}
	}
	for _, name := range []string{"bench", "e2e"} {
		c, _, err := root.Find(append([]string{"bench"}, map[string][]string{"bench": nil, "e2e": {"e2e"}}[name]...))
		if err != nil {
			t.Fatal(err)
		}
		if fl := c.Flags().Lookup("device"); fl == nil || fl.DefValue != "auto" {
			t.Errorf("%s: --device default %v, want auto", name, fl)
		}
	}
}

// TestBenchAttentionFlags checks bench refuses a bad --attention or an SLA
// --topk outside (0, 1] before it looks for a GPU, naming the flag.
func TestBenchAttentionFlags(t *testing.T) {
	for _, c := range []struct {
		f    benchFlags
		want string
	}{
		{benchFlags{attention: "flash", topk: 0.1}, "--attention"},
		{benchFlags{attention: "sla", topk: 0}, "--topk"},
		{benchFlags{attention: "sagesla", topk: 1.5}, "--topk"},
	} {
		err := runBench(io.Discard, &c.f)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %s", c.f, err, c.want)
		}
	}
	// The random DiT carries proj_l, so SLA and SageSLA load on it.
	c, err := wan.Preset("Wan2.1-T2V-1.3B")
	if err != nil {
		t.Fatal(err)
	}
	c.Dim, c.Heads, c.FFNDim, c.Layers, c.TextDim = 256, 2, 512, 1, 64
	var d backend.DiT = cpu.New() // compile-time: the CPU backend runs the DiT
	for _, kind := range []backend.AttentionKind{backend.SLA, backend.SageSLA} {
		m, err := wan.Load(d, randomDiT(c), wan.Options{DType: tensor.BF16, Attention: kind, TopK: 0.1})
		if err != nil {
			t.Fatalf("%v: %v", kind, err)
		}
		m.Free()
	}
}
