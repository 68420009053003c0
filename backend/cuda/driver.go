package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// driverAPI holds libcuda's entry points, resolved once. Calls go through
// purego.SyscallN on these addresses (~100 ns each; RegisterFunc's
// reflection costs 2-3x that).
type driverAPI struct {
	lib *Library

	cuInit, cuDriverGetVersion, cuDeviceGet, cuDeviceGetCount, cuDeviceGetName, cuDeviceGetAttribute uintptr
	cuDeviceTotalMem, cuDevicePrimaryCtxRetain, cuCtxSetCurrent, cuCtxSynchronize                    uintptr
	cuGetErrorName, cuGetErrorString, cuMemGetInfo                                                   uintptr
	cuMemAlloc, cuMemFree, cuMemHostAlloc, cuMemFreeHost                                             uintptr
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync, cuMemsetD8Async                         uintptr
	cuStreamCreate, cuStreamSynchronize, cuStreamWaitEvent                                           uintptr
	cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy             uintptr
	cuModuleLoadData, cuModuleGetFunction, cuFuncSetAttribute, cuLaunchKernel                        uintptr
	cuTensorMapEncodeTiled                                                                           uintptr // optional (CUDA 12+)
}

func loadDriver() (*driverAPI, error) {
	lib, err := openLib(specCUDA, SearchDirs(), notCompat, true)
	if err != nil {
		return nil, err
	}
	d := &driverAPI{lib: lib}
	err = lib.symbols([]sym{
		{"cuInit", &d.cuInit}, {"cuDriverGetVersion", &d.cuDriverGetVersion}, {"cuDeviceGet", &d.cuDeviceGet},
		{"cuDeviceGetCount", &d.cuDeviceGetCount}, {"cuDeviceGetName", &d.cuDeviceGetName},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute}, {"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem},
		{"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain}, {"cuCtxSetCurrent", &d.cuCtxSetCurrent},
		{"cuCtxSynchronize", &d.cuCtxSynchronize}, {"cuGetErrorName", &d.cuGetErrorName},
		{"cuGetErrorString", &d.cuGetErrorString}, {"cuMemGetInfo_v2", &d.cuMemGetInfo},
		{"cuMemAlloc_v2", &d.cuMemAlloc}, {"cuMemFree_v2", &d.cuMemFree}, {"cuMemHostAlloc", &d.cuMemHostAlloc},
		{"cuMemFreeHost", &d.cuMemFreeHost}, {"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync},
		{"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync}, {"cuMemcpyDtoDAsync_v2", &d.cuMemcpyDtoDAsync},
		{"cuMemsetD8Async", &d.cuMemsetD8Async}, {"cuStreamCreate", &d.cuStreamCreate},
		{"cuStreamSynchronize", &d.cuStreamSynchronize}, {"cuStreamWaitEvent", &d.cuStreamWaitEvent},
		{"cuEventCreate", &d.cuEventCreate},
		{"cuEventRecord", &d.cuEventRecord}, {"cuEventSynchronize", &d.cuEventSynchronize},
		{"cuEventElapsedTime", &d.cuEventElapsedTime}, {"cuEventDestroy_v2", &d.cuEventDestroy},
		{"cuModuleLoadData", &d.cuModuleLoadData}, {"cuModuleGetFunction", &d.cuModuleGetFunction},
		{"cuFuncSetAttribute", &d.cuFuncSetAttribute}, {"cuLaunchKernel", &d.cuLaunchKernel},
	})
	if err != nil {
		return nil, err
	}
	// Optional: drivers before CUDA 12 lack it; the TMA attention kernels
	// are then not offered.
	_ = lib.symbols([]sym{{"cuTensorMapEncodeTiled", &d.cuTensorMapEncodeTiled}})
	return d, nil
}

// CUresult values the backend treats specially.
const (
	cudaErrorOutOfMemory = 2
	cudaErrorNoDevice    = 100
)

// Device attributes (CUdevice_attribute).
const (
	attrSMCount         = 16
	attrL2Size          = 38
	attrCCMajor         = 75
	attrCCMinor         = 76
	attrMaxSmemOptin    = 97
	funcAttrMaxDynSmem  = 8
	streamNonBlocking   = 1
	eventDefault        = 0
	eventDisableTiming  = 2
	hostAllocPortable   = 1
	cuMemGetInfoNoCheck = 0
)

// call invokes a C function and returns its 32-bit status. Pointer
// arguments must be written as uintptr(unsafe.Pointer(&x)) in the call
// itself: with go:uintptrescapes the compiler then moves x to the heap and
// keeps it alive, so a stack growth before the C call cannot leave C
// writing to a stale stack address (a helper that converted elsewhere lost
// that guarantee: cuMemAlloc results vanished in fresh test goroutines).
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) uintptr {
	if fn < fakeFnLimit && fakeCall != nil {
		return fakeCall(fn, args)
	}
	r, _, _ := purego.SyscallN(fn, args...)
	return uintptr(uint32(r))
}

// fakeCall, when set, takes the calls of "functions" below fakeFnLimit
// (never a real function's address) instead of C: the tests' stand-in
// driver (fake_test.go) that lets the backend's Go code, its pool above
// all, run without a GPU, while a real backend in the same process goes on
// calling libcuda. Never set outside tests.
var fakeCall func(fn uintptr, args []uintptr) uintptr

const fakeFnLimit = 1 << 16

// errText names a CUresult ("CUDA_ERROR_OUT_OF_MEMORY: out of memory").
func (d *driverAPI) errText(r uintptr) string {
	var name, desc uintptr
	call(d.cuGetErrorName, r, uintptr(unsafe.Pointer(&name)))
	call(d.cuGetErrorString, r, uintptr(unsafe.Pointer(&desc)))
	n, s := goString(name), goString(desc)
	if n == "" {
		return fmt.Sprintf("CUresult %d", r)
	}
	return fmt.Sprintf("%s (%d): %s", n, r, s)
}

// check turns a failed CUresult into an error naming the call.
func (d *driverAPI) check(what string, r uintptr) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("cuda: %s: %s", what, d.errText(r))
}

// goString copies a NUL-terminated C string.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	var b []byte
	for i := uintptr(0); i < 4096; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(nil), p+i)) //nolint:govet // C memory
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// cString returns a NUL-terminated copy of s; keep it alive across the call.
func cString(s string) []byte { return append([]byte(s), 0) }
