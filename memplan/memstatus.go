package memplan

// memoryStatusEx is Windows' MEMORYSTATUSEX (sysinfoapi.h): two DWORDs,
// then seven DWORDLONGs; 64 bytes. It is declared on every OS so that
// TestMemoryStatusExLayout checks its layout where the tests run.
//
//lint:ignore U1000 the fields are Windows' to fill (meminfo_windows.go); elsewhere only the layout test reads the type
type memoryStatusEx struct {
	length, memoryLoad                          uint32
	totalPhys, availPhys                        uint64
	totalPageFile, availPageFile                uint64
	totalVirtual, availVirtual, availExtVirtual uint64
}
