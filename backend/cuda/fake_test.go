//go:build linux

package cuda

import (
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

// fakeDriver stands in for libcuda and cuBLASLt (driver.go fakeCall), so
// the backend's Go code runs without a GPU: device allocations get unique
// addresses that are never touched, page-locked host memory is anonymous
// mappings, launches, copies and GEMMs do nothing. The pool's bookkeeping —
// which tensors the ops allocate and when they free them — is then exactly
// what it is on a GPU, which is what a test of the memory planner needs.
type fakeDriver struct {
	mu     sync.Mutex
	names  map[uintptr]string
	next   uintptr // next device address
	handle uintptr // next opaque handle
	host   map[uintptr][]byte
}

// at is the memory at a pointer argument.
func at[T any](p uintptr) *T { return (*T)(unsafe.Add(unsafe.Pointer(nil), p)) }

func (d *fakeDriver) call(fn uintptr, args []uintptr) uintptr {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.names[fn] {
	case "cuMemAlloc":
		*at[uintptr](args[0]) = d.next
		d.next += (args[1] + 4095) &^ 4095
	case "cuMemHostAlloc":
		n := (int(args[1]) + 4095) &^ 4095
		m, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return cudaErrorOutOfMemory
		}
		p := uintptr(unsafe.Pointer(&m[0]))
		d.host[p] = m
		*at[uintptr](args[0]) = p
	case "cuMemFreeHost":
		if m, ok := d.host[args[0]]; ok {
			syscall.Munmap(m)
			delete(d.host, args[0])
		}
	case "cuStreamCreate", "cuEventCreate", "cuModuleLoadData", "cuModuleGetFunction",
		"cublasLtCreate", "cublasLtMatmulDescCreate", "cublasLtMatrixLayoutCreate", "cublasLtMatmulPreferenceCreate":
		d.handle++
		*at[uintptr](args[0]) = d.handle
	case "cublasLtMatmulAlgoGetHeuristic":
		*at[int32](args[9]) = 1
	case "cuMemGetInfo":
		*at[uint64](args[0]), *at[uint64](args[1]) = 140<<30, 141<<30
	}
	return 0
}

func (d *fakeDriver) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, m := range d.host {
		syscall.Munmap(m)
		delete(d.host, p)
	}
}

// fakeBackend is a Backend on the fake driver (until done is called), shaped like an H200 (sm_90,
// 132 multiprocessors) and set on the paths the H200 takes (the fused SLA
// block map and linear branch, the Hopper sparse kernels, the int8 fused
// activation ops); the attention kernel is the mma.sync one, whose
// start-up check would compare outputs the fake never computes.
func fakeBackend(t *testing.T) (b *Backend, done func()) {
	t.Helper()
	if fakeCall != nil {
		t.Fatal("fake driver already installed")
	}
	fd := &fakeDriver{names: map[uintptr]string{}, next: 1 << 40, handle: 1 << 20, host: map[uintptr][]byte{}}
	d := &driverAPI{}
	lt := &cublasLt{}
	id := uintptr(1000)
	for _, e := range []struct {
		p    *uintptr
		name string
	}{
		{&d.cuInit, "cuInit"}, {&d.cuCtxSetCurrent, "cuCtxSetCurrent"}, {&d.cuCtxSynchronize, "cuCtxSynchronize"},
		{&d.cuGetErrorName, "cuGetErrorName"}, {&d.cuGetErrorString, "cuGetErrorString"}, {&d.cuMemGetInfo, "cuMemGetInfo"},
		{&d.cuMemAlloc, "cuMemAlloc"}, {&d.cuMemFree, "cuMemFree"}, {&d.cuMemHostAlloc, "cuMemHostAlloc"}, {&d.cuMemFreeHost, "cuMemFreeHost"},
		{&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync"}, {&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync"}, {&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync"},
		{&d.cuMemsetD8Async, "cuMemsetD8Async"}, {&d.cuStreamCreate, "cuStreamCreate"}, {&d.cuStreamSynchronize, "cuStreamSynchronize"},
		{&d.cuStreamWaitEvent, "cuStreamWaitEvent"}, {&d.cuEventCreate, "cuEventCreate"}, {&d.cuEventRecord, "cuEventRecord"},
		{&d.cuEventSynchronize, "cuEventSynchronize"}, {&d.cuEventElapsedTime, "cuEventElapsedTime"}, {&d.cuEventDestroy, "cuEventDestroy"},
		{&d.cuModuleLoadData, "cuModuleLoadData"}, {&d.cuModuleGetFunction, "cuModuleGetFunction"}, {&d.cuFuncSetAttribute, "cuFuncSetAttribute"},
		{&d.cuLaunchKernel, "cuLaunchKernel"}, {&d.cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled"},
		{&lt.create, "cublasLtCreate"}, {&lt.descCreate, "cublasLtMatmulDescCreate"}, {&lt.descSet, "cublasLtMatmulDescSetAttribute"},
		{&lt.layoutCreate, "cublasLtMatrixLayoutCreate"}, {&lt.prefCreate, "cublasLtMatmulPreferenceCreate"},
		{&lt.prefSet, "cublasLtMatmulPreferenceSetAttribute"}, {&lt.heuristic, "cublasLtMatmulAlgoGetHeuristic"}, {&lt.matmul, "cublasLtMatmul"},
	} {
		*e.p = id
		fd.names[id] = e.name
		id++
	}
	fakeCall = fd.call
	b = &Backend{drv: d, lt: lt, modules: map[string]uintptr{}, funcs: map[string]*kernel{},
		launchA: &launchArgs{}, gemms: map[gemmKey]*gemmPlan{}, stream: 7, ctx: 8}
	b.pool.free = map[int64][]uintptr{}
	b.pool.live, b.pool.atPeak = map[int64]int{}, map[int64]int{}
	initArena(&b.arena, &b.pool)
	b.info = DeviceInfo{Name: "fake H200", CC: [2]int{9, 0}, Arch: "sm_90", SMs: 132, L2Bytes: 60 << 20,
		TotalMem: 141 << 30, MaxSmemOptin: 232448, DriverVersion: 13000}
	for _, m := range kernels.Modules() {
		b.modules[m.Name] = 9 // loaded: nothing is compiled
	}
	if err := lt.init(b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sync.Map{&slaLinStates, &slaPrepStates, &slaTMAStates, &sageTMAStates} {
		s.Store(b, &kernelChoice{checked: true, on: true, note: "(fake driver)"})
	}
	b.SetAttentionKernel("mma")
	return b, func() {
		for _, s := range []*sync.Map{&slaLinStates, &slaPrepStates, &slaTMAStates, &sageTMAStates} {
			s.Delete(b)
		}
		fakeCall = nil
		fd.close()
	}
}
