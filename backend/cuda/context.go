package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// ErrNoGPU is returned when the driver loads but sees no GPU.
var ErrNoGPU = errors.New("cuda: the driver sees no GPU")

// PrimaryContext is a GPU's primary context (the one Backend uses),
// retained for a library that takes a CUcontext, such as the NVENC video
// encoder, without starting the backend (no NVRTC or cuBLASLt needed).
type PrimaryContext struct {
	drv     *driverAPI
	dev     int32
	release uintptr
	// Handle is the CUcontext.
	Handle uintptr
}

// RetainPrimaryContext retains GPU ordinal's primary context. Release it
// when done.
func RetainPrimaryContext(ordinal int) (*PrimaryContext, error) {
	drv, err := loadDriver()
	if err != nil {
		return nil, err
	}
	c := &PrimaryContext{drv: drv}
	if err := drv.lib.symbols([]sym{{"cuDevicePrimaryCtxRelease_v2", &c.release}}); err != nil {
		return nil, err
	}
	if r := call(drv.cuInit, 0); r == cudaErrorNoDevice {
		return nil, ErrNoGPU
	} else if err := drv.check("cuInit", r); err != nil {
		return nil, err
	}
	var n int32
	if err := drv.check("cuDeviceGetCount", call(drv.cuDeviceGetCount, uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrNoGPU
	}
	if ordinal < 0 || ordinal >= int(n) {
		return nil, fmt.Errorf("cuda: no GPU %d (the driver sees %d)", ordinal, n)
	}
	if err := drv.check("cuDeviceGet", call(drv.cuDeviceGet, uintptr(unsafe.Pointer(&c.dev)), uintptr(ordinal))); err != nil {
		return nil, err
	}
	if err := drv.check("cuDevicePrimaryCtxRetain", call(drv.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&c.Handle)), uintptr(c.dev))); err != nil {
		return nil, err
	}
	return c, nil
}

// MakeCurrent binds the context to the calling OS thread; lock the
// goroutine to its thread (runtime.LockOSThread) first.
func (c *PrimaryContext) MakeCurrent() error {
	return c.drv.check("cuCtxSetCurrent", call(c.drv.cuCtxSetCurrent, c.Handle))
}

// Release drops the retain taken by RetainPrimaryContext.
func (c *PrimaryContext) Release() error {
	if c.Handle == 0 {
		return nil
	}
	c.Handle = 0
	return c.drv.check("cuDevicePrimaryCtxRelease", call(c.release, uintptr(c.dev)))
}

// LoadLibrary opens a driver library: on Linux/macOS a shared library whose
// file name starts with prefix ("libnvidia-encode.so"), on Windows the DLL
// named winDLL ("nvEncodeAPI64.dll"), from the folders SearchDirs lists
// (CUDA compat folders skipped: driver libraries must match the kernel
// driver), then through the system loader. On failure the
// *MissingLibraryError names every folder searched and what to install.
func LoadLibrary(name, prefix, winDLL, install string) (*Library, error) {
	spec := libSpec{name: name, prefix: prefix, install: install, winPrefix: winDLL, winBare: []string{winDLL}}
	return openLib(spec, SearchDirs(), notCompat, false)
}

// Symbol returns the address of an exported function of l.
func (l *Library) Symbol(name string) (uintptr, error) {
	var p uintptr
	if err := l.symbols([]sym{{name, &p}}); err != nil {
		return 0, err
	}
	return p, nil
}
