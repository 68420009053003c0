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

// sgemmKernel6x32AVX512 is a 6×32 tile over two packed B panels.
//
//go:noescape
func sgemmKernel6x32AVX512(k int, a, b *float32, bstride int, c *float32, ldc int, acc bool)

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

// kernelRow computes a 6-row strip against np consecutive full 16-wide B
// panels (each 16·k floats, contiguous): c[0:6, 0:16·np] at stride ldc.
// On AVX-512 panels go in pairs through the 6×32 kernel.
func kernelRow(k int, a, b []float32, np int, c []float32, ldc int, acc bool) {
	p := 0
	if useAVX512 {
		_ = a[6*k-1]
		for ; p+2 <= np; p += 2 {
			_ = b[(p+2)*16*k-1]
			_ = c[5*ldc+p*16+31]
			sgemmKernel6x32AVX512(k, &a[0], &b[p*16*k], 16*k, &c[p*16], ldc, acc)
		}
	}
	for ; p < np; p++ {
		kernel6x16(k, a, b[p*16*k:(p+1)*16*k], c[p*16:], ldc, acc)
	}
}
