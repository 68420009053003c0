// Package cuda is the GPU backend: CUDA driver, NVRTC and cuBLASLt loaded at
// run time through purego (no cgo), kernels embedded as CUDA C++ (package
// kernels) and compiled for the device on first use, then cached on disk.
//
// Threading: a CUDA context is current per OS thread and goroutines move
// between threads, so every entry point locks its goroutine to the thread,
// takes the backend's lock and makes the context current (one ~100 ns call)
// before any CUDA call. All work goes to one stream, in order.
package cuda

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

// Backend is the CUDA backend for one GPU.
type Backend struct {
	mu  sync.Mutex
	drv *driverAPI
	rtc *NVRTC
	lt  *cublasLt

	dev    int32
	ctx    uintptr
	stream uintptr
	// memCap, when positive, caps the bytes the pool holds (MemCapEnv).
	memCap int64
	// copyStr is the stream of Streamer copies (stream.go), 0 until used.
	copyStr uintptr
	info    DeviceInfo

	pool    pool
	arena   backend.Arena[*buffer] // scopes (scope.go)
	modules map[string]uintptr     // module name -> CUmodule
	funcs   map[string]*kernel
	stage   [2]staging // pinned upload/download buffers
	launchA *launchArgs
	gemms   map[gemmKey]*gemmPlan
	wsPtr   uintptr // cuBLASLt workspace
	wsSize  int64
	attn    attnState
	// Poison fills every new tensor with 0xFF bytes (NaN in f32 and bf16),
	// so tests catch outputs a kernel failed to write.
	Poison bool

	prof *kernelProfile // non-nil between StartProfile and StopProfile (profile.go)

	// pinnedFree are free page-locked buffers of DownloadAsync (download.go).
	pinnedFree []pinnedBuf
}

// DeviceInfo describes the GPU and the libraries in use.
type DeviceInfo struct {
	Name          string
	Ordinal       int
	CC            [2]int // compute capability
	Arch          string // NVRTC target, "sm_90"
	SMs           int
	L2Bytes       int
	TotalMem      int64
	MaxSmemOptin  int
	DriverVersion int // e.g. 13000
	Libs          []*Library
	NVRTCVersion  string
	CublasLtVer   int
}

// Open starts the backend on GPU 0.
func Open() (*Backend, error) { return OpenDevice(0) }

// OpenDevice starts the backend on the given GPU ordinal.
func OpenDevice(ordinal int) (b *Backend, err error) {
	defer backend.Recover(&err)
	drv, err := loadDriver()
	if err != nil {
		return nil, err
	}
	b = &Backend{drv: drv, modules: map[string]uintptr{}, funcs: map[string]*kernel{},
		launchA: &launchArgs{}, gemms: map[gemmKey]*gemmPlan{}}
	b.pool.free = map[int64][]uintptr{}
	if os.Getenv(MemTraceEnv) == "1" {
		b.pool.live, b.pool.atPeak = map[int64]int{}, map[int64]int{}
	}
	initArena(&b.arena, &b.pool)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := drv.check("cuInit", call(drv.cuInit, 0)); err != nil {
		return nil, fmt.Errorf("%w (is an NVIDIA GPU visible to this process? libcuda: %s)", err, drv.lib.Path)
	}
	var n int32
	if err := drv.check("cuDeviceGetCount", call(drv.cuDeviceGetCount, uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, err
	}
	if n == 0 || ordinal >= int(n) {
		return nil, fmt.Errorf("cuda: no GPU %d (the driver sees %d)", ordinal, n)
	}
	if err := drv.check("cuDeviceGet", call(drv.cuDeviceGet, uintptr(unsafe.Pointer(&b.dev)), uintptr(ordinal))); err != nil {
		return nil, err
	}
	if err := drv.check("cuDevicePrimaryCtxRetain", call(drv.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&b.ctx)), uintptr(b.dev))); err != nil {
		return nil, err
	}
	if err := drv.check("cuCtxSetCurrent", call(drv.cuCtxSetCurrent, b.ctx)); err != nil {
		return nil, err
	}
	if err := drv.check("cuStreamCreate", call(drv.cuStreamCreate, uintptr(unsafe.Pointer(&b.stream)), streamNonBlocking)); err != nil {
		return nil, err
	}
	b.info = b.queryInfo(ordinal)
	b.rtc, err = LoadNVRTC()
	if err != nil {
		return nil, err
	}
	b.info.Libs = append(b.info.Libs, b.rtc.Lib, b.rtc.Builtins)
	b.info.NVRTCVersion = b.rtc.Version()
	b.lt, err = loadCublasLt()
	if err != nil {
		return nil, err
	}
	b.info.Libs = append(b.info.Libs, b.lt.lib)
	b.info.CublasLtVer = b.lt.version()
	if v := os.Getenv(MemCapEnv); v != "" {
		if b.memCap, err = parseBytes(v); err != nil {
			return nil, err
		}
	}
	if err := b.lt.init(b); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Backend) queryInfo(ordinal int) DeviceInfo {
	d := b.drv
	inf := DeviceInfo{Ordinal: ordinal, Libs: []*Library{d.lib}}
	name := make([]byte, 256)
	call(d.cuDeviceGetName, uintptr(unsafe.Pointer(&name[0])), 256, uintptr(b.dev))
	inf.Name = goString(uintptr(unsafe.Pointer(&name[0])))
	attr := func(a int) int {
		var v int32
		call(d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(b.dev))
		return int(v)
	}
	inf.CC = [2]int{attr(attrCCMajor), attr(attrCCMinor)}
	inf.Arch = fmt.Sprintf("sm_%d%d", inf.CC[0], inf.CC[1])
	inf.SMs = attr(attrSMCount)
	inf.L2Bytes = attr(attrL2Size)
	inf.MaxSmemOptin = attr(attrMaxSmemOptin)
	var tot uint64
	call(d.cuDeviceTotalMem, uintptr(unsafe.Pointer(&tot)), uintptr(b.dev))
	inf.TotalMem = int64(tot)
	var v int32
	call(d.cuDriverGetVersion, uintptr(unsafe.Pointer(&v)))
	inf.DriverVersion = int(v)
	return inf
}

// Info describes the device and libraries.
func (b *Backend) Info() DeviceInfo { return b.info }

func (b *Backend) Name() string { return "cuda" }

// enter makes the device usable from this goroutine; defer the returned
// func. Typical use: `defer b.enter()()`.
func (b *Backend) enter() func() {
	runtime.LockOSThread()
	b.mu.Lock()
	if r := call(b.drv.cuCtxSetCurrent, b.ctx); r != 0 {
		b.mu.Unlock()
		runtime.UnlockOSThread()
		backend.FailErr(b.drv.check("cuCtxSetCurrent", r))
	}
	return b.leave
}

func (b *Backend) leave() {
	b.mu.Unlock()
	runtime.UnlockOSThread()
}

// must fails the current op when a CUDA call failed.
func (b *Backend) must(what string, r uintptr) {
	if r != 0 {
		backend.FailErr(b.drv.check(what, r))
	}
}

// Sync waits for all queued work and reports any asynchronous kernel error.
func (b *Backend) Sync() {
	defer b.enter()()
	b.must("cuStreamSynchronize", call(b.drv.cuStreamSynchronize, b.stream))
}

// kernel is a resolved function plus its dynamic shared memory limit.
type kernel struct {
	name    string
	fn      uintptr
	smemSet int
}

// fn returns the named kernel of an embedded module, compiling (or reading
// from the disk cache) and loading the module on first use.
func (b *Backend) fn(module, name string) *kernel {
	key := module + "/" + name
	if k := b.funcs[key]; k != nil {
		return k
	}
	mod, ok := b.modules[module]
	if !ok {
		src, found := kernels.Module(module)
		if !found {
			backend.Fail("cuda: no embedded kernel module %q", module)
		}
		arch, ok := kernels.Arch(module, b.info.Arch)
		if !ok {
			backend.Fail("cuda: kernel module %s does not run on %s", module, b.info.Arch)
		}
		cubin, _, err := b.rtc.CompileCached(src, arch)
		if err != nil {
			backend.FailErr(err)
		}
		b.must("cuModuleLoadData("+module+")", call(b.drv.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&cubin[0]))))
		runtime.KeepAlive(cubin)
		b.modules[module] = mod
	}
	k := &kernel{name: name}
	cname := cString(name)
	r := call(b.drv.cuModuleGetFunction, uintptr(unsafe.Pointer(&k.fn)), mod, uintptr(unsafe.Pointer(&cname[0])))
	runtime.KeepAlive(cname)
	b.must(fmt.Sprintf("cuModuleGetFunction(%s in %s)", name, module), r)
	b.funcs[key] = k
	return k
}

// Preload compiles and loads every embedded module now (the first op would
// otherwise pay for it), returning how many came from the disk cache.
func (b *Backend) Preload() (compiled, cached int, err error) {
	defer backend.Recover(&err)
	defer b.enter()()
	for _, m := range kernels.Modules() {
		if _, ok := b.modules[m.Name]; ok {
			continue
		}
		arch, ok := kernels.Arch(m.Name, b.info.Arch)
		if !ok || arch != b.info.Arch {
			continue // optional arch-specific modules load on first use, with a fallback
		}
		cubin, hit, err := b.rtc.CompileCached(m, arch)
		if err != nil {
			return compiled, cached, err
		}
		if hit {
			cached++
		} else {
			compiled++
		}
		var mod uintptr
		b.must("cuModuleLoadData("+m.Name+")", call(b.drv.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&cubin[0]))))
		runtime.KeepAlive(cubin)
		b.modules[m.Name] = mod
	}
	return compiled, cached, nil
}

// launchArgs is heap storage for kernel parameters: cuLaunchKernel takes an
// array of pointers to each value, and these must not move during the call.
type launchArgs struct {
	vals [32]uint64
	ptrs [32]uintptr
	maps [4*16 + 8]uint64 // room for 4 tensor maps at a 64-byte-aligned offset
}

// launch queues k on the stream. Arguments: uintptr (device pointers),
// int32, int64, float32 — matching the kernel's C parameter types.
func (b *Backend) launch(k *kernel, grid, block [3]int, smem int, args ...any) {
	a := b.launchA
	nmaps := 0
	if len(args) > len(a.vals) {
		backend.Fail("cuda: %s: too many kernel arguments", k.name)
	}
	for i, v := range args {
		switch x := v.(type) {
		case uintptr:
			a.vals[i] = uint64(x)
		case int32:
			a.vals[i] = uint64(uint32(x))
		case int64:
			a.vals[i] = uint64(x)
		case float32:
			a.vals[i] = uint64(*(*uint32)(unsafe.Pointer(&x)))
		case float64:
			a.vals[i] = *(*uint64)(unsafe.Pointer(&x))
		case *tensorMap:
			// 128-byte __grid_constant__ parameter: the driver copies it from here.
			if nmaps == 4 {
				backend.Fail("cuda: %s: more than 4 tensor-map arguments", k.name)
			}
			off := (64 - int(uintptr(unsafe.Pointer(&a.maps[0]))%64)) % 64 / 8
			dst := a.maps[off+16*nmaps : off+16*nmaps+16]
			copy(dst, x[:])
			nmaps++
			a.ptrs[i] = uintptr(unsafe.Pointer(&dst[0]))
			continue
		default:
			backend.Fail("cuda: %s: unsupported kernel argument type %T", k.name, v)
		}
		a.ptrs[i] = uintptr(unsafe.Pointer(&a.vals[i]))
	}
	if smem > 48<<10 && k.smemSet < smem {
		b.must("cuFuncSetAttribute("+k.name+")", call(b.drv.cuFuncSetAttribute, k.fn, funcAttrMaxDynSmem, uintptr(smem)))
		k.smemSet = smem
	}
	if b.prof != nil {
		b.profMark(k.name, true)
		defer b.profMark("", false)
	}
	r := call(b.drv.cuLaunchKernel, k.fn, uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]), uintptr(smem), b.stream, uintptr(unsafe.Pointer(&a.ptrs[0])), 0)
	runtime.KeepAlive(a)
	if r != 0 {
		backend.FailErr(fmt.Errorf("cuda: launching %s (grid %v, block %v, %d B shared): %s", k.name, grid, block, smem, b.drv.errText(r)))
	}
}

// gridFor sizes a grid-stride launch of n elements.
func (b *Backend) gridFor(n int64) [3]int {
	g := (n + 255) / 256
	if lim := int64(b.info.SMs) * 16; g > lim {
		g = lim
	}
	return [3]int{int(max(g, 1)), 1, 1}
}
