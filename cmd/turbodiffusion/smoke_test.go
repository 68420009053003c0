package main

import (
	"strings"
	"testing"
)

// doctor --smoke generates a clip with tiny random models on the CPU and
// prints the stage timings; it passes whether or not a GPU is usable.
func TestDoctorSmoke(t *testing.T) {
	stdout, _, err := run(t, "doctor", "--smoke", "--device", "cpu")
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	for _, want := range []string{"smoke:      tiny random models", "sample 1", "load DiT", "total", "smoke:      OK"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}
