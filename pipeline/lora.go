package pipeline

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

// applied is a model with the request's LoRAs merged and the checkpoint
// its weights are restored from.
type applied struct {
	m   *wan.Model
	src checkpoint.File
}

// applyLoRA merges the call's LoRAs into m (loaded from path) unless they
// already are.
func (e *Engine) applyLoRA(m *wan.Model, path string) error {
	for _, a := range e.call.applied {
		if a.m == m {
			return nil
		}
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

// restoreLoRAs restores every model of the call that is still loaded to
// the weights it was loaded with. A model that cannot be restored is freed
// (the next request loads it again) and the error returned.
func (e *Engine) restoreLoRAs() error {
	var errs []error
	for _, a := range e.call.applied {
		if m := a.m; e.resident(m) {
			if _, err := m.SetLoRA(a.src, nil); err != nil {
				errs = append(errs, fmt.Errorf("restoring the DiT after the request's LoRA: %w (the model was unloaded)", err))
				e.unload(m)
			}
		}
		a.src.Close()
	}
	e.call.applied = nil
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
