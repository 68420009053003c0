//go:build windows

package memplan

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

var procGlobalMemoryStatusEx = windows.NewLazySystemDLL("kernel32.dll").NewProc("GlobalMemoryStatusEx")

// meminfo answers the two /proc/meminfo keys the callers ask for from
// GlobalMemoryStatusEx: MemAvailable as the available physical memory,
// MemTotal as the total.
func meminfo(key string) (int64, bool) {
	var st memoryStatusEx
	st.length = uint32(unsafe.Sizeof(st))
	if procGlobalMemoryStatusEx.Find() != nil {
		return 0, false
	}
	if r, _, _ := procGlobalMemoryStatusEx.Call(uintptr(unsafe.Pointer(&st))); r == 0 {
		return 0, false
	}
	switch key {
	case "MemAvailable:":
		return int64(st.availPhys), true
	case "MemTotal:":
		return int64(st.totalPhys), true
	}
	return 0, false
}
