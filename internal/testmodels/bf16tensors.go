package testmodels

import (
	"encoding/binary"
	"math/rand"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// bf16Tensors collects bf16 tensors of N(mean, std²) values drawn in order
// from r, for the checkpoint writers.
type bf16Tensors struct {
	r  *rand.Rand
	ts []checkpoint.Tensor
}

func (w *bf16Tensors) add(name string, shape []int, std, mean float64) {
	n := tensor.NumElements(shape)
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(b[2*i:], tensor.BF16FromF32(float32(mean+std*w.r.NormFloat64())))
	}
	w.ts = append(w.ts, checkpoint.Tensor{Name: name, DType: tensor.BF16, Shape: shape, Data: b})
}
