package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestKernelChoiceDecide covers the one-time decision shared by the
// optional kernel paths (the Hopper sparse kernels, the fused SLA linear
// branch): what runs and the note that says why, for each way the choice
// can go. No GPU needed.
func TestKernelChoiceDecide(t *testing.T) {
	const env = "TURBODIFFUSION_TEST_KERNEL_CHOICE"
	tryDefault := optionalPath{env: env, on: "wgmma", off: "mma", defaultOn: true, what: "wgmma kernel", ref: "mma.sync"}
	offDefault := optionalPath{env: env, on: "fused", off: "unfused", what: "fused kernels", ref: "unfused"}
	pass := func() (float64, error) { return 3e-3, nil }
	cases := []struct {
		name        string
		p           optionalPath
		env, forced string
		unavailable string
		check       func() (float64, error)
		on, checked bool
		note        string
	}{
		{"default on, check passes", tryDefault, "", "", "", pass, true, true, "(start-up check: worst rel-L2 3.0e-03 vs mma.sync)"},
		{"default off", offDefault, "", "", "", pass, false, false, "(default; " + env + "=fused picks the fused kernels)"},
		{"env picks on", offDefault, "fused", "", "", pass, true, true, "vs unfused)"},
		{"env picks off", tryDefault, "mma", "", "", pass, false, false, "(chosen by " + env + " or the caller)"},
		{"caller overrides env", tryDefault, "wgmma", "mma", "", pass, false, false, "(chosen by"},
		{"unknown value", tryDefault, "flash", "", "", pass, false, false, `(unknown ` + env + ` "flash"; want wgmma or mma)`},
		{"unavailable", tryDefault, "", "", "needs sm_90", pass, false, false, "(needs sm_90)"},
		{"check fails", tryDefault, "", "", "", func() (float64, error) { return 0.5, nil }, false, true, "(wgmma kernel rejected: rel-L2 5.00e-01 vs mma.sync)"},
		{"check errors", offDefault, "fused", "", "", func() (float64, error) { return 0, errors.New("no kernel") }, false, true, "(fused kernels rejected: no kernel)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(env, c.env)
			calls := 0
			check := func() (float64, error) { calls++; return c.check() }
			var unavailable func() string
			if c.unavailable != "" {
				unavailable = func() string { return c.unavailable }
			}
			s := &kernelChoice{forced: c.forced}
			for i := 0; i < 2; i++ { // decided once: the second call repeats the answer
				if got := s.decide(c.p, unavailable, check); got != c.on {
					t.Errorf("call %d: on = %v, want %v (note %s)", i+1, got, c.on, s.note)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[c.checked]; calls != want {
				t.Errorf("start-up check ran %d times, want %d", calls, want)
			}
			if !strings.Contains(s.note, c.note) {
				t.Errorf("note %q, want it to contain %q", s.note, c.note)
			}
		})
	}
}
