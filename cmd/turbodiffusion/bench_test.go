package main

import (
	"io"
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
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
	var be any = cpu.New()
	d, ok := be.(backend.DiT)
	if !ok {
		t.Skip("cpu backend lacks backend.DiT")
	}
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
	var be any = cpu.New()
	d, ok := be.(backend.DiT)
	if !ok {
		t.Skip("cpu backend lacks backend.DiT")
	}
	for _, kind := range []backend.AttentionKind{backend.SLA, backend.SageSLA} {
		m, err := wan.Load(d, randomDiT(c), wan.Options{DType: tensor.BF16, Attention: kind, TopK: 0.1})
		if err != nil {
			t.Fatalf("%v: %v", kind, err)
		}
		m.Free()
	}
}
