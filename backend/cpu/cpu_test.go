package cpu

import (
	"sync/atomic"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

func TestParallelForCoversRange(t *testing.T) {
	be := &Backend{threads: 3}
	for _, n := range []int{0, 1, 2, 7, 100} {
		hits := make([]int32, n)
		be.parallelFor(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				atomic.AddInt32(&hits[i], 1)
			}
		})
		for i, h := range hits {
			if h != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, h)
			}
		}
	}
}

// A failing op inside a worker must surface in the caller as a
// *backend.Error, not crash the process from another goroutine.
func TestParallelForPropagatesFail(t *testing.T) {
	be := &Backend{threads: 4}
	expectFail(t, "worker Fail", func() {
		be.parallelFor(100, func(lo, hi int) {
			if lo > 0 {
				backend.Fail("worker %d failed", lo)
			}
		})
	}, "worker", "failed")
	err := func() (err error) {
		defer backend.Recover(&err)
		be.parallelFor(8, func(lo, hi int) { backend.Fail("bad input") })
		return nil
	}()
	if err == nil || err.Error() != "bad input" {
		t.Errorf("Recover after parallelFor: got %v", err)
	}
}
