package wan

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
)

// LoRA merging. Options.LoRA is merged while Load uploads the weights:
// each touched parameter is read from the checkpoint in float32, its
// delta added in float32 and the sum rounded once to the model dtype (for
// a -quant checkpoint: dequantised, merged, rounded to bf16 and quantised
// again, see loader.quantized). SetLoRA changes the merged set of a loaded
// model: every parameter touched before or after is re-read from the
// checkpoint and merged again, so removing all request LoRAs restores the
// weights Load made, bit for bit, and the host keeps no copy of them.

// loraTarget lists the parameters a LoRA may change: those Load uploads,
// with their checkpoint shapes (a quantised Linear's weight under its
// .weight name with the [out, in] shape of its codes).
func loraTarget(f checkpoint.File, ps []param) lora.Target {
	t := lora.Target{}
	for _, p := range ps {
		name := p.name
		if p.scale != nil {
			name = name[:len(name)-len(".weight")] + ".int8_weight"
		}
		if info, ok := f.Info(name); ok {
			t[p.name] = info.Shape
		}
	}
	return t
}

// bindLoRA binds adapters to this model's parameters.
func (m *Model) bindLoRA(f checkpoint.File, ps []param, adapters []*lora.Adapter) (*lora.Set, []string, error) {
	if len(adapters) == 0 {
		return nil, nil, nil
	}
	s, warn, err := lora.Bind(loraTarget(f, ps), adapters, m.Opt.LoRALenient)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	return s, warn, nil
}

// LoRAParams lists the parameters the merged LoRAs (load-time and
// SetLoRA's) change.
func (m *Model) LoRAParams() []string { return lora.Join(m.base, m.extra).Params() }

// SetLoRA makes adapters (on top of Options.LoRA) the LoRAs merged into
// the loaded model, replacing the ones an earlier SetLoRA merged;
// SetLoRA(src, nil) restores the weights Load made. With Options.Offload
// the streamed weights are merged into their host copies (what the slots
// are filled from), the rest as without. src must be the
// checkpoint the model was loaded from (it is checked to have the same
// layout): every parameter either set touches is read from it again and
// merged with Options.LoRA and adapters, one tensor at a time (each freed
// before its replacement is uploaded, so device memory does not grow). It returns the skipped keys under
// Options.LoRALenient. Everything is checked before any weight changes;
// a failure after that (I/O, device memory) leaves a mix of old and new
// weights, which SetLoRA(src, nil) repairs. Text contexts embedded before
// the call (EmbedText) keep the old text and cross-attention weights.
func (m *Model) SetLoRA(src checkpoint.File, adapters []*lora.Adapter) (warnings []string, err error) {
	if m == nil || m.be == nil {
		return nil, fmt.Errorf("wan: SetLoRA on a freed or nil model")
	}
	fi, err := DetectConfig(src)
	if err != nil {
		return nil, err
	}
	if fi.Config != m.Config || fi.Quantized != m.Info.Quantized || fi.ProjL != m.Info.ProjL {
		return nil, fmt.Errorf("wan: SetLoRA: %s is a %s checkpoint (quantised %v), the model was loaded from a %s one (quantised %v)",
			src.Path(), fi.Config, fi.Quantized, m.Config, m.Info.Quantized)
	}
	ps := m.params()
	extra, warnings, err := m.bindLoRA(src, ps, adapters)
	if err != nil {
		return nil, err
	}
	touched := map[string]bool{}
	for _, p := range m.extra.Params() {
		touched[p] = true
	}
	for _, p := range extra.Params() {
		touched[p] = true
	}
	defer backend.Recover(&err)
	ld := m.loader(m.be, src, lora.Join(m.base, extra))
	for _, p := range ps {
		if !touched[p.name] {
			continue
		}
		if i, l, ok := m.streamed(p); ok {
			// Offload: the host copy the slots are filled from is replaced
			// (freed first, so host memory does not grow); the next fetch
			// copies the new weights in.
			h := &m.off.host[i][l]
			for k, x := range h {
				if x != nil {
					m.off.st.FreeHost(x)
					h[k] = nil
				}
			}
			h[0], h[1] = ld.loadHost(m.off.st, p)
			continue
		}
		// Freed first (and cleared, so a failure leaves nil, not a freed
		// tensor, for Free), so device memory does not grow.
		m.be.Free(*p.dst)
		*p.dst = nil
		if p.scale != nil {
			m.be.Free(*p.scale)
			*p.scale = nil
		}
		ld.load(p)
	}
	m.extra = extra
	return warnings, nil
}

// LoRATarget lists the parameters Load(f, opt) would let a LoRA change,
// with their checkpoint shapes, from f's header alone: what a server binds
// a request's LoRA against before queueing it, without the model loaded.
func LoRATarget(f checkpoint.File, opt Options) (lora.Target, error) {
	fi, err := DetectConfigWith(f, DetectOptions{HeadDim: opt.HeadDim})
	if err != nil {
		return nil, err
	}
	if opt, err = opt.withDefaults(fi); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	m := &Model{Config: fi.Config, Info: fi, Opt: opt, blocks: make([]block, fi.Config.Layers)}
	return loraTarget(f, m.params()), nil
}
