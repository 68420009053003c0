//go:build !amd64

package cpu

// haveKernel is false off amd64: Gemm uses its portable dot-product path.
var (
	haveKernel = false
	haveAVX512 = false
	useAVX512  = false
)

func kernel6x16(k int, a, b, c []float32, ldc int, acc bool) {
	panic("cpu: no SIMD GEMM kernel on this architecture")
}

func kernelRow(k int, a, b []float32, np int, c []float32, ldc int, acc bool) {
	panic("cpu: no SIMD GEMM kernel on this architecture")
}
