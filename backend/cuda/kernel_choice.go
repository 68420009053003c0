package cuda

import (
	"fmt"
	"os"
	"sync"
)

// kernelChoice records, per backend, whether an optional kernel path (the
// Hopper sparse kernels, the fused linear branch) runs, and why.
type kernelChoice struct {
	mu      sync.Mutex // serialises the one-time check (it runs ops itself)
	checked bool
	on      bool // the optional path runs
	forced  string
	note    string
}

// optionalPath names an optional kernel path for kernelChoice.decide.
type optionalPath struct {
	env       string // environment variable that forces the choice
	on, off   string // its two values: the optional path, the reference path
	defaultOn bool   // unset: try the optional path (else keep the reference)
	what      string // the optional kernels, as the notes name them
	ref       string // the path the start-up check compares with
}

// decide decides once whether the optional path p runs: not when p.env
// (or the caller, through forced) picks p.off or an unknown value, nor
// when unset and p is off by default, nor when unavailable (nil: always
// available) says why it cannot run, and only if check's worst rel-L2
// against the reference path is < 1e-2. note says why. The caller must not
// hold the device: check runs ops itself.
func (s *kernelChoice) decide(p optionalPath, unavailable func() string, check func() (float64, error)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checked {
		return s.on
	}
	s.checked = true
	want := s.forced
	if want == "" {
		want = os.Getenv(p.env)
	}
	switch {
	case want == p.off:
		s.note = "(chosen by " + p.env + " or the caller)"
		return false
	case want == "" && !p.defaultOn:
		s.note = fmt.Sprintf("(default; %s=%s picks the %s)", p.env, p.on, p.what)
		return false
	case want != "" && want != p.on:
		s.note = fmt.Sprintf("(unknown %s %q; want %s or %s)", p.env, want, p.on, p.off)
		return false
	}
	if unavailable != nil {
		if why := unavailable(); why != "" {
			s.note = "(" + why + ")"
			return false
		}
	}
	rel, err := check()
	switch {
	case err != nil:
		s.note = fmt.Sprintf("(%s rejected: %v)", p.what, err)
	case rel < 1e-2:
		s.on = true
		s.note = fmt.Sprintf("(start-up check: worst rel-L2 %.1e vs %s)", rel, p.ref)
	default:
		s.note = fmt.Sprintf("(%s rejected: rel-L2 %.2e vs %s)", p.what, rel, p.ref)
	}
	return s.on
}
