package testmodels

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestRandomDeterministicAndScaled(t *testing.T) {
	specs := []checkpoint.Info{
		{Name: "a.weight", DType: tensor.BF16, Shape: []int{300, 1024}},
		{Name: "a.bias", DType: tensor.BF16, Shape: []int{300}},
		{Name: "norm.weight", DType: tensor.F32, Shape: []int{64}},
	}
	r := NewRandom("random:test", specs, 5)
	w1, err := r.Float32("a.weight")
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := NewRandom("random:test", specs, 5).Float32("a.weight")
	var sum, sq float64
	for i, v := range w1 {
		if v != w2[i] {
			t.Fatalf("value %d differs between two generations: %v vs %v", i, v, w2[i])
		}
		if v != tensor.RoundBF16(v) {
			t.Fatalf("bf16 tensor value %v is not bf16-exact", v)
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(w1))
	std := math.Sqrt(sq/n - (sum/n)*(sum/n))
	if want := 1 / math.Sqrt(1024); math.Abs(std-want) > 0.05*want || math.Abs(sum/n) > 0.01*want {
		t.Errorf("weight mean %.2e std %.4f, want ~0 and %.4f (1/sqrt(fan_in))", sum/n, std, want)
	}
	other, _ := NewRandom("random:test", specs, 6).Float32("a.weight")
	if other[0] == w1[0] && other[1] == w1[1] {
		t.Error("another seed gives the same values")
	}
	g, _ := r.Float32("norm.weight")
	for _, v := range g {
		if math.Abs(float64(v)-1) > 0.1 {
			t.Fatalf("norm scale %v, want about 1", v)
		}
	}
	raw, err := r.Raw("a.bias")
	if err != nil || len(raw) != 600 {
		t.Fatalf("Raw: %d bytes, %v", len(raw), err)
	}
	if _, err := r.Float32("missing"); err == nil {
		t.Error("a missing tensor must be an error")
	}
}
