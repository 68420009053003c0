package wan

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/sla"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// slaShim adds SparseLinearAttention (via package sla) to a CPU backend
// that does not have it yet, so the model tests run while backend/cpu grows.
type slaShim struct{ *cpu.Backend }

func (s slaShim) SparseLinearAttention(q, k, v backend.Tensor, heads int, cfg backend.SLAConfig, projW, projB backend.Tensor) backend.Tensor {
	qt := cpu.T(q)
	L, d := q.Shape()[0], q.Shape()[1]/heads
	c := sla.Config{
		Geometry: sla.Geometry{L: L, Heads: heads, D: d, BlockQ: cfg.BlockQ, BlockK: cfg.BlockK, TopK: cfg.TopK},
		Sage:     cfg.Kind == backend.SageSLA, BF16Map: q.DType() == tensor.BF16, BlockMap: cfg.BlockMap,
	}
	var pb []float32
	if projB != nil {
		pb = cpu.T(projB).F
	}
	out, _, err := sla.Forward(qt.F, cpu.T(k).F, cpu.T(v).F, c, cpu.T(projW).F, pb)
	if err != nil {
		backend.FailErr(err)
	}
	return cpu.NewTensor(q.DType(), q.Shape(), out)
}

// cpuDiT returns the CPU backend, shimmed if it lacks SLA.
func cpuDiT(t testing.TB) backend.DiT {
	var b any = cpu.New()
	if d, ok := b.(backend.DiT); ok {
		return d
	}
	var d any = slaShim{cpu.New()}
	dit, ok := d.(backend.DiT)
	if !ok {
		t.Skip("backend/cpu does not implement backend.DiT yet")
	}
	return dit
}
