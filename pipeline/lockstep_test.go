package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/sampler"
)

// fakeLoop calls v steps times, feeding each result back, like a sampler.
func fakeLoop(steps int) func(s int, v sampler.Velocity) ([]float32, error) {
	return func(s int, v sampler.Velocity) ([]float32, error) {
		x := []float32{float32(s)}
		for i := 0; i < steps; i++ {
			out, err := v(sampler.Step{Index: i}, x)
			if err != nil {
				return nil, fmt.Errorf("step %d: %w", i, err)
			}
			x = out
		}
		return x, nil
	}
}

func TestLockstepOrder(t *testing.T) {
	var order []string
	outs, err := lockstep(3, fakeLoop(4), func(s int, st sampler.Step, x []float32) ([]float32, error) {
		order = append(order, fmt.Sprintf("%d.%d", st.Index, s))
		return []float32{x[0] + 10}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "0.0 0.1 0.2 1.0 1.1 1.2 2.0 2.1 2.2 3.0 3.1 3.2"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("calls served as %s, want every sample's step i before any step i+1: %s", got, want)
	}
	for s, o := range outs {
		if len(o) != 1 || o[0] != float32(s+40) {
			t.Errorf("sample %d result %v, want [%d]", s, o, s+40)
		}
	}
}

// An error ends every loop (no goroutine left waiting) and is returned.
func TestLockstepError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	_, err := lockstep(3, fakeLoop(4), func(s int, st sampler.Step, x []float32) ([]float32, error) {
		calls++
		if s == 1 && st.Index == 2 {
			return nil, boom
		}
		return x, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if calls != 8 { // steps 0-1 of all three, step 2 of samples 0 and 1
		t.Errorf("%d calls served, want 8 (none after the error)", calls)
	}
}
