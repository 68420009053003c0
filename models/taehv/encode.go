package taehv

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Encode turns a video [3,F,H,W] with values in [0, 1] into a latent
// [Z,⌈F/4⌉,H/8,W/8] (each stride-2 stage rounds up, as the reference's
// convolutions do for sizes that are not multiples of 8), every frame at
// once (TAEHV's parallel mode). As in the reference, F is first padded to a
// multiple of 4 by repeating the last frame.
func (m *Model) Encode(video []float32, shape []int) (latent []float32, lshape []int, err error) {
	if m.enc == nil {
		return nil, nil, fmt.Errorf("taehv: encode: the checkpoint has no encoder")
	}
	if len(shape) != 4 || shape[0] != ImageChannels || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return nil, nil, fmt.Errorf("taehv: encode: want a video [3,F,H,W], got shape %v", shape)
	}
	if n := tensor.NumElements(shape); n != len(video) {
		return nil, nil, fmt.Errorf("taehv: encode: video shape %v holds %d values, got %d", shape, n, len(video))
	}
	defer backend.Recover(&err)
	F, plane := shape[1], shape[2]*shape[3]
	Fp := (F + TemporalFactor - 1) / TemporalFactor * TemporalFactor
	in := video
	if Fp != F {
		in = make([]float32, ImageChannels*Fp*plane)
		for c := 0; c < ImageChannels; c++ {
			copy(in[c*Fp*plane:], video[c*F*plane:(c+1)*F*plane])
			last := video[(c*F+F-1)*plane : (c*F+F)*plane]
			for f := F; f < Fp; f++ {
				copy(in[(c*Fp+f)*plane:], last)
			}
		}
	}
	b := m.b
	sc := b.Begin() // the video and the latent
	defer sc.End()
	x := b.Upload(m.dt, []int{ImageChannels, Fp, shape[2], shape[3]}, in)
	out := backend.Scoped(b, func() backend.Tensor { return m.encodeRaw(x) })
	return b.Download(out), out.Shape(), nil
}

// encodeRaw runs the encoder on x [3,F,H,W] (F a multiple of 4; not freed).
// TPool (frames grouped along channels, then a 1x1 conv) is a convolution
// with stride·1·1 taps and time stride; the downsampling convs have
// spatial stride 2. Run it in a scope: its activations are the scope's.
func (m *Model) encodeRaw(x backend.Tensor) backend.Tensor {
	b, e := m.b, m.enc
	s := newState(b, false)
	y := b.ConvFused(x, e.in.w, e.in.b, pad1, backend.ConvFusion{ReLU: true})
	for st := 0; st < 3; st++ {
		p := e.pools[st]
		y = then(b, y, func(y backend.Tensor) backend.Tensor {
			return b.Conv3d(y, e.pool[st].w, nil, backend.Conv3dParams{Stride: [3]int{p, 1, 1}})
		})
		y = then(b, y, func(y backend.Tensor) backend.Tensor {
			return b.Conv3d(y, e.down[st].w, nil, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}, Stride: [3]int{1, 2, 2}})
		})
		for _, mb := range e.mem[st] {
			y = then(b, y, func(y backend.Tensor) backend.Tensor { return s.mem(mb, y, false) })
		}
	}
	return then(b, y, func(y backend.Tensor) backend.Tensor {
		return b.ConvFused(y, e.out.w, e.out.b, pad1, backend.ConvFusion{})
	})
}
