package cpu

import (
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestSparseLinearAttentionConformance runs the backend op on the golden
// SLA unit case (q/k/v [1000, 2·128] bf16, topk 0.25) and records its map.
func TestSparseLinearAttentionConformance(t *testing.T) {
	f := golden.Open(t, "sla_unit.safetensors")
	q, _ := golden.Tensor(t, f, "q")
	k, _ := golden.Tensor(t, f, "k")
	v, _ := golden.Tensor(t, f, "v")
	pw, _ := golden.Tensor(t, f, "proj_l.weight")
	pb, _ := golden.Tensor(t, f, "proj_l.bias")
	want, _ := golden.Tensor(t, f, "output")
	smap, err := f.Int8("sparse_map")
	if err != nil {
		t.Fatal(err)
	}
	rec := &SLARecorder{Backend: New()}
	var dit backend.DiTOps = rec
	shape := []int{1000, 256}
	out := dit.SparseLinearAttention(NewTensor(tensor.BF16, shape, q), NewTensor(tensor.BF16, shape, k), NewTensor(tensor.BF16, shape, v), 2,
		backend.SLAConfig{Kind: backend.SLA, TopK: 0.25}, NewTensor(tensor.F32, []int{128, 128}, pw), NewTensor(tensor.F32, []int{128}, pb))
	if out.DType() != tensor.BF16 || !backend.SameShape(out.Shape(), shape) {
		t.Fatalf("output %v %v, want bfloat16 %v", out.DType(), out.Shape(), shape)
	}
	golden.Compare(t, "SparseLinearAttention output", T(out).F, want, 1e-2)
	if len(rec.Maps) != 1 {
		t.Fatalf("recorded %d maps, want 1", len(rec.Maps))
	}
	for i := range smap {
		if rec.Maps[0][i] != smap[i] {
			t.Fatalf("recorded block map differs from the oracle at entry %d", i)
		}
	}
}

func TestSparseLinearAttentionErrors(t *testing.T) {
	b := New()
	x := NewTensor(tensor.BF16, []int{100, 256}, make([]float32, 25600))
	w := NewTensor(tensor.F32, []int{64, 64}, make([]float32, 4096))
	run := func(cfg backend.SLAConfig) (err error) {
		defer backend.Recover(&err)
		b.SparseLinearAttention(x, x, x, 2, cfg, w, nil)
		return nil
	}
	if err := run(backend.SLAConfig{Kind: backend.SLA, TopK: 1}); err == nil || !strings.Contains(err.Error(), "proj_l weight") {
		t.Errorf("want a proj_l shape error, got %v", err)
	}
	if err := run(backend.SLAConfig{Kind: backend.Dense, TopK: 1}); err == nil {
		t.Error("want an error for dense attention kind")
	}
}

// BenchmarkSparseLinearAttention is SLA on 4096 tokens, 2 heads, topk 0.1
// with the SIMD GEMM (compare sla.BenchmarkSLA, the portable path).
func BenchmarkSparseLinearAttention(b *testing.B) {
	const L, heads = 4096, 2
	x := make([]float32, L*heads*128)
	for i := range x {
		x[i] = float32(i%251)/125 - 1
	}
	be := New()
	q := NewTensor(tensor.BF16, []int{L, heads * 128}, append([]float32(nil), x...))
	w := NewTensor(tensor.F32, []int{128, 128}, make([]float32, 128*128))
	b.ResetTimer()
	for range b.N {
		be.SparseLinearAttention(q, q, q, heads, backend.SLAConfig{Kind: backend.SLA, TopK: 0.1}, w, nil)
	}
}

// TestSparseLinearAttentionBatchAndSage: a [2, L, H·d] batch gives each
// entry the 2-D result, and SageSLA defaults to the sm90 blocks (64/128).
func TestSparseLinearAttentionBatchAndSage(t *testing.T) {
	f := golden.Open(t, "sla_unit.safetensors")
	q, _ := golden.Tensor(t, f, "q")
	k, _ := golden.Tensor(t, f, "k")
	v, _ := golden.Tensor(t, f, "v")
	pw, _ := golden.Tensor(t, f, "proj_l.weight")
	want, _ := golden.Tensor(t, f, "output")
	rec := &SLARecorder{Backend: New()}
	two := func(x []float32) *Tensor {
		return NewTensor(tensor.BF16, []int{2, 1000, 256}, append(append([]float32(nil), x...), x...))
	}
	w := NewTensor(tensor.F32, []int{128, 128}, pw)
	cfg := backend.SLAConfig{Kind: backend.SLA, TopK: 0.25}
	out := T(rec.SparseLinearAttention(two(q), two(k), two(v), 2, cfg, w, nil)).F
	single := T(rec.SparseLinearAttention(NewTensor(tensor.BF16, []int{1000, 256}, q), NewTensor(tensor.BF16, []int{1000, 256}, k),
		NewTensor(tensor.BF16, []int{1000, 256}, v), 2, cfg, w, nil)).F
	for i := range single {
		if out[i] != single[i] || out[len(single)+i] != single[i] {
			t.Fatalf("batch entry differs from the single call at %d", i)
		}
	}
	if len(rec.Maps) != 3 {
		t.Fatalf("recorded %d maps, want 3 (2 batch entries + 1)", len(rec.Maps))
	}
	cfg.Kind = backend.SageSLA
	sage := T(rec.SparseLinearAttention(NewTensor(tensor.BF16, []int{1000, 256}, q), NewTensor(tensor.BF16, []int{1000, 256}, k),
		NewTensor(tensor.BF16, []int{1000, 256}, v), 2, cfg, w, nil)).F
	if got := len(rec.Maps[3]); got != 2*16*8 {
		t.Errorf("SageSLA map has %d entries, want 2 heads × 16 query blocks (64) × 8 key blocks (128)", got)
	}
	// A different quantised function with a different block geometry (and
	// here no proj_l bias, unlike the oracle): only a loose agreement.
	var ab, aa, bb float64
	for i := range sage {
		ab += float64(sage[i]) * float64(want[i])
		aa += float64(sage[i]) * float64(sage[i])
		bb += float64(want[i]) * float64(want[i])
	}
	cs := ab / math.Sqrt(aa*bb)
	t.Logf("SageSLA (sm90 blocks) vs SLA oracle output: cos %.4f", cs)
	if cs < 0.9 {
		t.Errorf("SageSLA output cosine %.4f < 0.9", cs)
	}
}
