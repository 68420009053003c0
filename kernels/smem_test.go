package kernels

import (
	"fmt"
	"strings"
	"testing"
)

// TestSmemHeader checks that the generated smem.cuh is among the headers
// and defines every shared-memory constant with its Go value, and that the
// kernels that depend on them include it (through hopper.cuh) rather than
// spelling the numbers out.
func TestSmemHeader(t *testing.T) {
	var h *Source
	for _, s := range Headers() {
		if s.Name == "smem.cuh" {
			h = &s
		}
	}
	if h == nil {
		t.Fatal("smem.cuh not among the headers")
	}
	for name, v := range map[string]int{"TD_SMEM_ALIGN": SmemAlign, "TD_ATTN_TMA_STAGES": AttnTMAStages, "TD_ATTN_BARRIER_BYTES": AttnBarrierBytes,
		"TD_SLA_TMA_STAGES": SLATMAStages, "TD_SLA_TMA_STAGE_KEYS": SLATMAStageKeys} {
		if want := fmt.Sprintf("#define %s %d\n", name, v); !strings.Contains(h.Code, want) {
			t.Errorf("smem.cuh lacks %q:\n%s", want, h.Code)
		}
	}
	for _, m := range Modules() {
		if strings.Contains(m.Code, "+ 1023) & ~1023u") {
			t.Errorf("%s aligns shared memory with a bare 1023; use HP_ALIGN_SMEM (TD_SMEM_ALIGN)", m.Name)
		}
	}
	// The Hopper SLA/SageSLA kernels (tile and persistent grids) take their
	// ring from the constants the host sizes their launches with.
	if m, _ := Module("sla_sparse_sm90a.cu"); strings.Count(m.Code, "NS = TD_SLA_TMA_STAGES") != 4 {
		t.Error("sla_sparse_sm90a.cu: all four kernels should set NS = TD_SLA_TMA_STAGES")
	}
	if hp, _ := files.ReadFile("hopper.cuh"); !strings.Contains(string(hp), "#include \"smem.cuh\"") {
		t.Error("hopper.cuh does not include smem.cuh")
	}
}
