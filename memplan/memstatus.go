package memplan

// memoryStatusEx is Windows' MEMORYSTATUSEX (sysinfoapi.h): two DWORDs,
// then seven DWORDLONGs; 64 bytes. It is declared on every OS so that
// TestMemoryStatusExLayout checks its layout where the tests run.
type memoryStatusEx struct {
	length, memoryLoad                          uint32
	totalPhys, availPhys                        uint64
	totalPageFile, availPageFile                uint64
	totalVirtual, availVirtual, availExtVirtual uint64
}
