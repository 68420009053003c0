package memplan

import (
	"testing"
	"unsafe"
)

// TestMemoryStatusExLayout: the struct handed to GlobalMemoryStatusEx has
// MEMORYSTATUSEX's size and the offsets of the two fields read.
func TestMemoryStatusExLayout(t *testing.T) {
	var s memoryStatusEx
	if got := unsafe.Sizeof(s); got != 64 {
		t.Errorf("size %d, want 64", got)
	}
	if got := unsafe.Offsetof(s.totalPhys); got != 8 {
		t.Errorf("ullTotalPhys at %d, want 8", got)
	}
	if got := unsafe.Offsetof(s.availPhys); got != 16 {
		t.Errorf("ullAvailPhys at %d, want 16", got)
	}
}
