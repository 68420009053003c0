package kernels

import (
	"fmt"
	"sort"
	"strings"
)

// Shared-memory layout constants that both the host launchers (which size
// each launch's dynamic shared memory) and the kernel sources (which lay it
// out) depend on. The kernels read them from the generated header smem.cuh
// (see smemHeader), so one number changes both sides.
const (
	// SmemAlign: the 128-byte-swizzled tiles that wgmma descriptors and the
	// copy engine read must start on this boundary. The dynamic
	// shared-memory base is only 16-byte aligned, so kernels round it up and
	// launches reserve this much slack.
	SmemAlign = 1024
	// AttnTMAStages: K/V shared-memory stages of the TMA attention kernels.
	AttnTMAStages = 3
	// AttnBarrierBytes: room after the TMA attention kernels' stages for
	// their 8-byte mbarriers: full and empty per stage, and Q's full (and
	// empty, in the persistent kernel).
	AttnBarrierBytes = 64
	// SLATMAStages: K/V stages of the Hopper SLA and SageSLA kernels
	// (sla_sparse_sm90a.cu).
	SLATMAStages = 3
	// SLATMAStageKeys: keys per stage of those kernels, one m64n128 S tile
	// (two 64-key blocks or one 128-key block); fixed by the wgmma shape.
	SLATMAStageKeys = 128
)

// smemDefines are the constants as the kernels see them.
var smemDefines = map[string]int{
	"TD_SMEM_ALIGN":         SmemAlign,
	"TD_ATTN_TMA_STAGES":    AttnTMAStages,
	"TD_ATTN_BARRIER_BYTES": AttnBarrierBytes,
	"TD_SLA_TMA_STAGES":     SLATMAStages,
	"TD_SLA_TMA_STAGE_KEYS": SLATMAStageKeys,
}

// smemHeader is the generated header smem.cuh, one #define per constant.
func smemHeader() Source {
	var names []string
	for k := range smemDefines {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("// smem.cuh: generated from kernels/smem.go (do not edit; it is not a file).\n#pragma once\n")
	for _, k := range names {
		fmt.Fprintf(&b, "#define %s %d\n", k, smemDefines[k])
	}
	return Source{Name: "smem.cuh", Code: b.String()}
}

// AttnSmemBytes is a wgmma attention kernel's dynamic shared memory: a Q
// tile of 64·nwg rows and `stages` K and V stages of bn keys, all d-wide
// bf16; swizzled tiles add SmemAlign of slack, and the TMA kernels their
// mbarriers.
func AttnSmemBytes(d, nwg, bn, stages int, swizzled, tma bool) int {
	s := (64*nwg*d + 2*stages*bn*d) * 2
	if swizzled || tma {
		s += SmemAlign
	}
	if tma {
		s += AttnBarrierBytes
	}
	return s
}
