package cpu

import "runtime"

// SIMD names the vector instructions the CPU backend's GEMM kernels use on
// this machine: "AVX-512" (zmm micro-kernels), "AVX2+FMA" (ymm), or "" when
// the portable Go loops run instead (another architecture, or an x86 CPU
// without AVX2 and FMA).
func SIMD() string {
	switch {
	case haveAVX512:
		return "AVX-512"
	case haveKernel:
		return "AVX2+FMA"
	}
	return ""
}

// Cores is the number of cores the backend computes on (GOMAXPROCS) and the
// number the machine has.
func Cores() (used, machine int) { return runtime.GOMAXPROCS(0), runtime.NumCPU() }
