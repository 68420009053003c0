package backend

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Opener starts a backend. It returns a clear error when the device or a
// library it needs is missing.
type Opener func() (Core, error)

var (
	regMu   sync.Mutex
	openers = map[string]Opener{}
)

// Register makes a backend available by name; backends call it from init,
// so importing a backend package (usually blank) is enough to offer it.
func Register(name string, open Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	openers[name] = open
}

// Names lists the registered backends.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var names []string
	for n := range openers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open starts the named backend. "auto" tries "cuda" and, if that fails,
// uses "cpu"; note then says why the GPU was not used, for the caller to
// show (the choice is never silent).
func Open(name string) (b Core, note string, err error) {
	regMu.Lock()
	cuda, cpu := openers["cuda"], openers["cpu"]
	open, ok := openers[name]
	regMu.Unlock()
	if name == "auto" {
		if cuda != nil {
			b, err := cuda()
			if err == nil {
				return b, "", nil
			}
			note = fmt.Sprintf("no usable GPU (%v); running on the CPU", err)
		} else {
			note = "this binary has no CUDA backend; running on the CPU"
		}
		if cpu == nil {
			return nil, note, fmt.Errorf("no CPU backend registered")
		}
		b, err := cpu()
		return b, note, err
	}
	if !ok {
		return nil, "", fmt.Errorf("unknown backend %q (available: auto, %s)", name, strings.Join(Names(), ", "))
	}
	b, err = open()
	return b, "", err
}
