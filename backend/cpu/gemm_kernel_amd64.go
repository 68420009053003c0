package cpu

import "golang.org/x/sys/cpu"

// sgemmKernel6x16 is the AVX2/FMA micro-kernel (gemm_kernel_amd64.s).
//
//go:noescape
func sgemmKernel6x16(k int, a, b, c *float32, ldc int, acc bool)

// sgemmKernel6x16AVX512 is the same tile with zmm registers.
//
//go:noescape
func sgemmKernel6x16AVX512(k int, a, b, c *float32, ldc int, acc bool)

// haveKernel reports whether the packed SIMD GEMM path can run here.
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// haveAVX512 selects the zmm variant of the micro-kernel; tests clear
// useAVX512 to cover the AVX2 one.
var (
	haveAVX512 = haveKernel && cpu.X86.HasAVX512F
	useAVX512  = haveAVX512
)

// kernel6x16 runs the micro-kernel on packed panels; k ≥ 1, and c must hold
// 6 rows of 16 floats at stride ldc (the slice expressions check it).
func kernel6x16(k int, a, b, c []float32, ldc int, acc bool) {
	_ = a[6*k-1]
	_ = b[16*k-1]
	_ = c[5*ldc+15]
	if useAVX512 {
		sgemmKernel6x16AVX512(k, &a[0], &b[0], &c[0], ldc, acc)
		return
	}
	sgemmKernel6x16(k, &a[0], &b[0], &c[0], ldc, acc)
}
