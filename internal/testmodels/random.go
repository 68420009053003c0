package testmodels

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Random is a checkpoint.File of random weights for a list of tensors (name,
// dtype, shape), generated on demand and deterministically per tensor name,
// so a multi-gigabyte model at its real shapes costs no disk and no
// download: what benchmarks use. Values are scaled like a trained model's:
// weight matrices N(0, 1/fan_in), norm scales 1+N(0, 0.01²), biases,
// modulations and relative-position tables small.
type Random struct {
	name  string
	infos map[string]checkpoint.Info
	names []string
	seed  uint64
}

// NewRandom makes a random checkpoint named name (its Path) of the tensors.
func NewRandom(name string, tensors []checkpoint.Info, seed uint64) *Random {
	r := &Random{name: name, infos: map[string]checkpoint.Info{}, seed: seed}
	for _, t := range tensors {
		r.infos[t.Name] = t
		r.names = append(r.names, t.Name)
	}
	sort.Strings(r.names)
	return r
}

func (r *Random) Path() string    { return r.name }
func (r *Random) Names() []string { return r.names }
func (r *Random) Close() error    { return nil }

func (r *Random) Info(name string) (checkpoint.Info, bool) {
	i, ok := r.infos[name]
	return i, ok
}

// scale returns mean and standard deviation for a tensor by its role.
func scale(info checkpoint.Info) (mean, std float64) {
	n := info.Name
	switch {
	case strings.HasSuffix(n, ".bias"):
		return 0, 0.02
	case strings.Contains(n, "norm") || strings.HasSuffix(n, ".gamma"):
		return 1, 0.01
	case strings.HasSuffix(n, "modulation"):
		return 0, 0.1
	case strings.Contains(n, "pos_embedding") || strings.Contains(n, "token_embedding"):
		return 0, 0.5
	case len(info.Shape) >= 2:
		fanIn := tensor.NumElements(info.Shape[1:])
		return 0, 1 / math.Sqrt(float64(fanIn))
	}
	return 0, 0.02
}

func (r *Random) Float32(name string) ([]float32, error) {
	info, ok := r.infos[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q: %w", r.name, name, checkpoint.ErrNotFound)
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	base := h.Sum64() ^ r.seed
	mean, std := scale(info)
	out := make([]float32, tensor.NumElements(info.Shape))
	// Chunks of 64Ki values, each from its own stream (seeded by tensor and
	// chunk), so generation runs on every core and stays deterministic.
	const chunk = 1 << 16
	parallel.For((len(out)+chunk-1)/chunk, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			s := base + uint64(c+1)*0x9E3779B97F4A7C15
			// A fast xorshift with an approximately normal sum of uniforms
			// (Irwin-Hall, 4 terms): good enough for weights, ~10x faster
			// than NormFloat64.
			const inv = 1.0 / (1 << 24)
			for i := c * chunk; i < min(len(out), (c+1)*chunk); i++ {
				var acc float64
				for k := 0; k < 4; k++ {
					s ^= s << 13
					s ^= s >> 7
					s ^= s << 17
					acc += float64(s>>40) * inv
				}
				v := float32(mean + std*(acc-2)*math.Sqrt(3))
				if info.DType == tensor.BF16 {
					v = tensor.RoundBF16(v)
				}
				out[i] = v
			}
		}
	})
	return out, nil
}

func (r *Random) Int8(name string) ([]int8, error) {
	return nil, fmt.Errorf("%s: tensor %q: random checkpoints hold float tensors only", r.name, name)
}

func (r *Random) Raw(name string) ([]byte, error) {
	info, ok := r.infos[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q: %w", r.name, name, checkpoint.ErrNotFound)
	}
	v, _ := r.Float32(name)
	switch info.DType {
	case tensor.BF16:
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], tensor.BF16FromF32(x))
		}
		return b, nil
	case tensor.F32:
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s: tensor %q: dtype %v not supported", r.name, name, info.DType)
}
