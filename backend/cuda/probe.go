package cuda

import (
	"runtime"
	"unsafe"
)

// DeviceCount loads the driver and returns how many GPUs it sees, without
// starting the backend (doctor uses it to tell a machine without a GPU,
// where the CPU backend is the set-up, from a GPU that cannot be used). It
// is 0 with a nil error when the driver is there but sees no GPU, and 0
// with the reason when there is no usable driver.
func DeviceCount() (int, error) {
	drv, err := loadDriver()
	if err != nil {
		return 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := call(drv.cuInit, 0); r == cudaErrorNoDevice {
		return 0, nil
	} else if err := drv.check("cuInit", r); err != nil {
		return 0, err
	}
	var n int32
	if err := drv.check("cuDeviceGetCount", call(drv.cuDeviceGetCount, uintptr(unsafe.Pointer(&n)))); err != nil {
		return 0, err
	}
	return int(n), nil
}
