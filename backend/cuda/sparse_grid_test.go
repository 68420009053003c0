package cuda

import (
	"strings"
	"testing"
)

// TestSparsePersistGrid checks the persistent sparse kernels' grid: perSM
// blocks per SM, never more blocks than items, capped by the caller's cap
// and sparsePersistGridCap, at least one block. No GPU needed.
func TestSparsePersistGrid(t *testing.T) {
	b := &Backend{info: DeviceInfo{SMs: 132}}
	defer func(n int) { sparsePersistGridCap = n }(sparsePersistGridCap)
	for _, c := range []struct{ items, perSM, cap, global, want int }{
		{512 * 12, 2, 0, 0, 264}, // SageSLA at 480p: two blocks per SM
		{256 * 12, 1, 0, 0, 132}, // SLA at 480p (query blocks of 128): one per SM
		{100, 2, 0, 0, 100},      // fewer items than blocks
		{6144, 2, 5, 0, 5},       // the start-up check's cap
		{6144, 2, 5, 3, 3},       // the tests' cap below it
		{6144, 1, 0, 7, 7},
		{0, 2, 0, 0, 1},
	} {
		sparsePersistGridCap = c.global
		if got := b.sparsePersistGrid(c.items, c.perSM, c.cap); got != c.want {
			t.Errorf("items %d, %d per SM, cap %d, global cap %d: grid %d, want %d", c.items, c.perSM, c.cap, c.global, got, c.want)
		}
	}
}

// TestSparseGridChoice checks SparseGridEnv: unset keeps the tile grid
// without running the persistent kernel's check; "persist" where the
// Hopper kernel does not run says so and keeps the mma.sync kernel; an
// unknown value is named. No GPU needed (the backend is not sm_90).
func TestSparseGridChoice(t *testing.T) {
	for _, c := range []struct{ env, note string }{
		{"", "(default; " + SparseGridEnv + "=persist picks the persistent wgmma kernel)"},
		{"persist", "(the Hopper kernel is off (the TMA/wgmma kernel needs sm_90"},
		{"tile", "(chosen by " + SparseGridEnv + " or the caller)"},
		{"ring", `(unknown ` + SparseGridEnv + ` "ring"; want persist or tile)`},
	} {
		t.Run("env="+c.env, func(t *testing.T) {
			t.Setenv(SparseGridEnv, c.env)
			b := &Backend{info: DeviceInfo{Arch: "sm_80", SMs: 108}}
			if b.slaPersist() || b.sagePersist() {
				t.Fatalf("%s=%q on sm_80: persistent grid chosen", SparseGridEnv, c.env)
			}
			for _, s := range []*kernelChoice{b.slaPersistState(), b.sagePersistState()} {
				if !strings.HasPrefix(s.note, c.note) {
					t.Errorf("note %q, want it to start with %q", s.note, c.note)
				}
			}
			if k := b.SageSparseKernel(); !strings.HasPrefix(k, "mma.sync") {
				t.Errorf("SageSparseKernel() = %q, want mma.sync", k)
			}
		})
	}
}
