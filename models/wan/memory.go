package wan

import (
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// DeviceTensors lists the tensors Load puts on the backend for a checkpoint
// described by fi loaded with opt, with the dtype and shape each gets there
// (a quantised Linear weight as its int8 codes and, under <prefix>.scale,
// its float32 scales): what a memory estimate counts, without reading any
// weight. With Offload the streamed Linear weights count as two blocks'
// slots.
func DeviceTensors(fi FileInfo, opt Options) ([]checkpoint.Info, error) {
	opt, err := opt.withDefaults(fi)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: fi.Config, Info: fi, Opt: opt}
	m.blocks = make([]block, fi.Config.Layers)
	if opt.Offload {
		m.off = &offload{} // streamed weights: two blocks' worth of slots on the device
	}
	file := map[string][]int{}
	for _, s := range expectedTensors(fi.Config, layout{quantized: fi.Quantized, projL: fi.ProjL, convPatch: fi.ConvPatch}) {
		file[s.name] = s.shape
	}
	var out []checkpoint.Info
	for _, p := range m.params() {
		if i, _, ok := m.streamed(p); ok && i >= len(m.off.slots) {
			continue
		}
		if p.scale != nil {
			prefix := strings.TrimSuffix(p.name, ".weight")
			s := file[prefix+".int8_weight"]
			sr, sc := quant.ScaleShape(s[0], s[1])
			out = append(out, checkpoint.Info{Name: prefix + ".int8_weight", DType: tensor.I8, Shape: s},
				checkpoint.Info{Name: prefix + ".scale", DType: tensor.F32, Shape: []int{sr, sc}})
			continue
		}
		shape := p.shape
		if len(shape) == 0 {
			shape = file[p.name]
		}
		out = append(out, checkpoint.Info{Name: p.name, DType: p.dt, Shape: shape})
	}
	return out, nil
}
