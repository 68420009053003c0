package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

// applied is a model with the request's LoRAs merged and the checkpoint
// its weights are restored from.
type applied struct {
	m   *wan.Model
	src checkpoint.File
}

// keptLoRA is a finished request's LoRAs, left merged for a next request
// with the same list (Request.KeepLoRA).
type keptLoRA struct {
	key     string
	loras   []*lora.Adapter
	applied []applied
}

// merged reports whether the call's LoRAs are merged into m already.
func (c *call) merged(m *wan.Model) bool {
	for _, a := range c.applied {
		if a.m == m {
			return true
		}
	}
	return false
}

// loraKey identifies a LoRA list for reuse: each file's path, size and
// modification time, and its scale, in order ("" when a file cannot be
// read, which never matches).
func loraKey(specs []lora.Spec) string {
	var b strings.Builder
	for _, s := range specs {
		st, err := os.Stat(s.Path)
		if err != nil {
			return ""
		}
		fmt.Fprintf(&b, "%q %d %d %s\n", s.Path, st.Size(), st.ModTime().UnixNano(), strconv.FormatFloat(s.Scale, 'g', -1, 64))
	}
	return b.String()
}

// startLoRA sets up the call's LoRAs: the ones a previous request left
// merged are reused when r asks for the same list, and restored otherwise;
// r's are opened (merged into each DiT as it is used: applyLoRA).
func (e *Engine) startLoRA(r Request) error {
	key := loraKey(r.LoRA)
	if k := e.kept; k != nil {
		if len(r.LoRA) > 0 && key != "" && key == k.key {
			e.kept = nil
			e.call.loras, e.call.applied = k.loras, k.applied
			e.call.notes = append(e.call.notes, "LoRA: the weights merged for the previous request are reused")
			return nil
		}
		if err := e.ReleaseLoRA(); err != nil {
			// The model that failed is unloaded: this request loads it again.
			e.call.notes = append(e.call.notes, err.Error())
		}
	}
	if len(r.LoRA) == 0 {
		return nil
	}
	as, err := openLoRAs(r.LoRA)
	if err != nil {
		return err
	}
	e.call.loras = as
	return nil
}

// endLoRA ends the call's LoRAs: left merged when the request succeeded
// and r.KeepLoRA says so, else the weights are restored and the files
// closed.
func (e *Engine) endLoRA(r Request, ok bool) error {
	as, ap := e.call.loras, e.call.applied
	e.call.loras, e.call.applied = nil, nil
	if len(as) == 0 {
		return nil
	}
	if ok && r.KeepLoRA != nil && r.KeepLoRA() {
		if key := loraKey(r.LoRA); key != "" {
			e.kept = &keptLoRA{key: key, loras: as, applied: ap}
			return nil
		}
	}
	err := e.restore(ap)
	closeLoRAs(as)
	return err
}

// ReleaseLoRA restores the weights a request left merged (Request.KeepLoRA)
// and closes its files; nothing to do without one. A model that cannot be
// restored is unloaded (the next request loads it again) and the error
// returned. Call it between requests (a server: when its queue empties).
func (e *Engine) ReleaseLoRA() error {
	k := e.kept
	if k == nil {
		return nil
	}
	e.kept = nil
	err := e.restore(k.applied)
	closeLoRAs(k.loras)
	return err
}

// applyLoRA merges the call's LoRAs into m (loaded from path) unless they
// already are.
func (e *Engine) applyLoRA(m *wan.Model, path string) error {
	if e.call.merged(m) {
		return nil
	}
	src, err := e.opt.OpenCheckpoint(path)
	if err != nil {
		return err
	}
	// Recorded first: a merge that fails half-way is restored too.
	e.call.applied = append(e.call.applied, applied{m: m, src: src})
	warn, err := m.SetLoRA(src, e.call.loras)
	for _, w := range warn {
		e.call.notes = append(e.call.notes, fmt.Sprintf("%s: %s", filepath.Base(path), w))
	}
	return err
}

// restore restores every model of ap that is still loaded to the weights
// it was loaded with and closes the checkpoints. A model that cannot be
// restored is freed (the next request loads it again) and the error
// returned.
func (e *Engine) restore(ap []applied) error {
	var errs []error
	for _, a := range ap {
		if m := a.m; e.resident(m) {
			if _, err := m.SetLoRA(a.src, nil); err != nil {
				errs = append(errs, fmt.Errorf("restoring the DiT after the request's LoRA: %w (the model was unloaded)", err))
				e.unload(m)
			}
		}
		a.src.Close()
	}
	return errors.Join(errs...)
}

// resident reports whether m is one of the engine's loaded DiTs.
func (e *Engine) resident(m *wan.Model) bool {
	if m == e.model {
		return m != nil
	}
	for _, x := range e.experts {
		if x == m && m != nil {
			return true
		}
	}
	return false
}

// unload frees m and forgets it.
func (e *Engine) unload(m *wan.Model) {
	m.Free()
	if e.model == m {
		e.model = nil
	}
	for i, x := range e.experts {
		if x == m {
			e.experts[i] = nil
		}
	}
}

// CheckLoRA checks LoRAs against the DiT a request would run (both
// image-to-video experts when i2v) from the files' headers, without
// loading anything: each file must parse as a LoRA in a known naming and
// bind to the model, every key naming a parameter of the right shape
// (keys that match nothing are allowed under Options.LoRALenient). With
// Offload the LoRAs are merged into the host copies the DiT streams from
// (wan.Model.SetLoRA). Errors
// are *FieldError (FieldLoRA, the file's base name as Value) whose message
// names the key and the shapes. It reads no state Generate changes, so a
// server may call it while a job runs.
func (e *Engine) CheckLoRA(specs []lora.Spec, i2v bool) error {
	if len(specs) == 0 {
		return nil
	}
	paths := []string{e.opt.DiT}
	if i2v {
		paths = []string{e.opt.DiTHigh, e.opt.DiTLow}
	}
	var targets []lora.Target
	for _, p := range paths {
		if p == "" {
			continue
		}
		t, err := e.loraTarget(p)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}
	for _, s := range specs {
		bad := func(format string, args ...any) error {
			return fieldErr(FieldLoRA, CodeInvalid, filepath.Base(s.Path), format, args...)
		}
		a, err := lora.Open(s)
		if err != nil {
			return bad("%v", err)
		}
		if len(a.Modules()) == 0 {
			a.Close()
			return bad("%s is not a LoRA: none of its keys has a LoRA naming (PEFT/diffusers lora_A/lora_B, kohya lora_down/lora_up, diff/diff_b) of a Wan module", filepath.Base(s.Path))
		}
		for _, t := range targets {
			if _, _, err = lora.Bind(t, []*lora.Adapter{a}, e.opt.LoRALenient); err != nil {
				break
			}
		}
		a.Close()
		if err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// loraTarget is the parameters of the DiT at path a LoRA may change, read
// from its header once.
func (e *Engine) loraTarget(path string) (lora.Target, error) {
	e.infoMu.Lock()
	t, ok := e.targets[path]
	e.infoMu.Unlock()
	if ok {
		return t, nil
	}
	f, err := e.opt.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if t, err = wan.LoRATarget(f, e.planOptions()); err != nil {
		return nil, err
	}
	e.infoMu.Lock()
	if e.targets == nil {
		e.targets = map[string]lora.Target{}
	}
	e.targets[path] = t
	e.infoMu.Unlock()
	return t, nil
}
