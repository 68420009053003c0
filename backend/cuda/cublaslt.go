package cuda

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// cuBLASLt enums (cublasLt.h, cublas_api.h, library_types.h).
const (
	cudaR32F          = 0
	cudaR16BF         = 14
	cublasCompute32F  = 68
	cublasOpN         = 0
	cublasOpT         = 1
	descTransA        = 3
	descTransB        = 4
	descEpilogue      = 7
	descBiasPointer   = 8
	descBiasDataType  = 26
	epilogueDefault   = 1
	epilogueBias      = 4
	epilogueGELU      = 32 // GELU, tanh approximation (checked against the CPU op in TestLinearGELU)
	epilogueGELUBias  = 36
	prefMaxWorkspace  = 1
	heuristicResultSz = 96 // cublasLtMatmulHeuristicResult_t
	workspaceBytes    = 32 << 20
)

type cublasLt struct {
	lib                                                               *Library
	handle                                                            uintptr
	create, getVersion, descCreate, descSet, layoutCreate, prefCreate uintptr
	prefSet, heuristic, matmul, statusString                          uintptr
}

func loadCublasLt() (*cublasLt, error) {
	lib, err := openLib(specCublasLt, SearchDirs(), nil, true)
	if err != nil {
		return nil, err
	}
	l := &cublasLt{lib: lib}
	err = lib.symbols([]sym{
		{"cublasLtCreate", &l.create}, {"cublasLtGetVersion", &l.getVersion},
		{"cublasLtMatmulDescCreate", &l.descCreate}, {"cublasLtMatmulDescSetAttribute", &l.descSet},
		{"cublasLtMatrixLayoutCreate", &l.layoutCreate}, {"cublasLtMatmulPreferenceCreate", &l.prefCreate},
		{"cublasLtMatmulPreferenceSetAttribute", &l.prefSet}, {"cublasLtMatmulAlgoGetHeuristic", &l.heuristic},
		{"cublasLtMatmul", &l.matmul}, {"cublasLtGetStatusString", &l.statusString},
	})
	return l, err
}

func (l *cublasLt) version() int {
	r, _, _ := purego.SyscallN(l.getVersion)
	return int(r)
}

func (l *cublasLt) status(r uintptr) string {
	s, _, _ := purego.SyscallN(l.statusString, r)
	return fmt.Sprintf("%s (%d)", goString(s), r)
}

// init creates the handle and the workspace; caller is on the device thread
// (OpenDevice holds it).
func (l *cublasLt) init(b *Backend) error {
	if r := call(l.create, uintptr(unsafe.Pointer(&l.handle))); r != 0 {
		return fmt.Errorf("cuda: cublasLtCreate: %s", l.status(r))
	}
	var err error
	func() {
		defer backend.Recover(&err)
		b.wsPtr, b.wsSize = b.alloc(workspaceBytes)
	}()
	return err
}

type gemmKey struct {
	m, n, k      int
	ab, cd, bias int32 // cuda data types; bias -1 = none
	gelu         bool  // GELU(tanh) applied to the float32 result in the epilogue
}

// gemmPlan is a matmul description with its chosen algorithm, reused for
// every call of the same shape and types.
type gemmPlan struct {
	desc, la, lb, lc uintptr
	algo             [heuristicResultSz]byte
	alpha, beta      float32
	biasPtr          uintptr
}

func (b *Backend) plan(key gemmKey) (*gemmPlan, error) {
	if p := b.gemms[key]; p != nil {
		return p, nil
	}
	l := b.lt
	p := &gemmPlan{alpha: 1}
	chk := func(what string, r uintptr) error {
		if r != 0 {
			return fmt.Errorf("cuda: cuBLASLt %s (GEMM m=%d n=%d k=%d): %s", what, key.m, key.n, key.k, l.status(r))
		}
		return nil
	}
	if err := chk("MatmulDescCreate", call(l.descCreate, uintptr(unsafe.Pointer(&p.desc)), cublasCompute32F, cudaR32F)); err != nil {
		return nil, err
	}
	ta, tb := int32(cublasOpT), int32(cublasOpN)
	call(l.descSet, p.desc, descTransA, uintptr(unsafe.Pointer(&ta)), 4)
	call(l.descSet, p.desc, descTransB, uintptr(unsafe.Pointer(&tb)), 4)
	epi := int32(epilogueDefault)
	if key.gelu {
		epi = epilogueGELU
	}
	if key.bias >= 0 {
		epi = epilogueBias
		if key.gelu {
			epi = epilogueGELUBias
		}
		bt := key.bias
		if err := chk("set bias type", call(l.descSet, p.desc, descBiasDataType, uintptr(unsafe.Pointer(&bt)), 4)); err != nil {
			return nil, err
		}
	}
	if err := chk("set epilogue", call(l.descSet, p.desc, descEpilogue, uintptr(unsafe.Pointer(&epi)), 4)); err != nil {
		return nil, err
	}
	// Row-major y[M,N] = x[M,K]·w[N,K]ᵀ is column-major yᵀ[N,M] = w·xᵀ:
	// A = w seen as K×N (transposed), B = x seen as K×M, C = D = N×M.
	if err := chk("layout A", call(l.layoutCreate, uintptr(unsafe.Pointer(&p.la)), uintptr(key.ab), uintptr(key.k), uintptr(key.n), uintptr(key.k))); err != nil {
		return nil, err
	}
	if err := chk("layout B", call(l.layoutCreate, uintptr(unsafe.Pointer(&p.lb)), uintptr(key.ab), uintptr(key.k), uintptr(key.m), uintptr(key.k))); err != nil {
		return nil, err
	}
	if err := chk("layout C", call(l.layoutCreate, uintptr(unsafe.Pointer(&p.lc)), uintptr(key.cd), uintptr(key.n), uintptr(key.m), uintptr(key.n))); err != nil {
		return nil, err
	}
	var pref uintptr
	if err := chk("PreferenceCreate", call(l.prefCreate, uintptr(unsafe.Pointer(&pref)))); err != nil {
		return nil, err
	}
	ws := uint64(b.wsSize)
	call(l.prefSet, pref, prefMaxWorkspace, uintptr(unsafe.Pointer(&ws)), 8)
	if key.bias >= 0 {
		// The heuristic looks at the bias pointer's alignment: give it an aligned one.
		p.biasPtr = b.wsPtr
		call(l.descSet, p.desc, descBiasPointer, uintptr(unsafe.Pointer(&p.biasPtr)), 8)
	}
	var got int32
	r := call(l.heuristic, l.handle, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, uintptr(unsafe.Pointer(&p.algo[0])), uintptr(unsafe.Pointer(&got)))
	if r != 0 || got == 0 {
		return nil, fmt.Errorf("cuda: cuBLASLt has no algorithm for GEMM m=%d n=%d k=%d (types %d/%d, bias %d): %s", key.m, key.n, key.k, key.ab, key.cd, key.bias, l.status(r))
	}
	b.gemms[key] = p
	return p, nil
}

// gemm runs y = x·wᵀ (+bias) on the stream; caller holds the device.
// Pointers must be 16-byte aligned (pool blocks are).
func (b *Backend) gemm(p *gemmPlan, key gemmKey, x, w, y, bias uintptr) {
	l := b.lt
	if key.bias >= 0 {
		p.biasPtr = bias
		call(l.descSet, p.desc, descBiasPointer, uintptr(unsafe.Pointer(&p.biasPtr)), 8)
	}
	if b.prof != nil {
		name := fmt.Sprintf("cublasLt gemm %dx%dx%d", key.m, key.n, key.k)
		if key.gelu {
			name += "+gelu"
		}
		b.profMark(name, true)
		defer b.profMark("", false)
	}
	r := call(l.matmul, l.handle, p.desc, uintptr(unsafe.Pointer(&p.alpha)), w, p.la, x, p.lb, uintptr(unsafe.Pointer(&p.beta)), y, p.lc, y, p.lc,
		uintptr(unsafe.Pointer(&p.algo[0])), b.wsPtr, uintptr(b.wsSize), b.stream)
	runtime.KeepAlive(p)
	if r != 0 {
		backend.Fail("cuda: cublasLtMatmul (m=%d n=%d k=%d): %s", key.m, key.n, key.k, l.status(r))
	}
}

func cudaType(dt tensor.DType) int32 {
	if dt == tensor.BF16 {
		return cudaR16BF
	}
	return cudaR32F
}

// Linear returns x·wᵀ + bias through cuBLASLt (fp32 accumulation, bias in
// the epilogue so the result is rounded once). x [..., K], w [N, K].
func (b *Backend) Linear(xt, wt, biast backend.Tensor) backend.Tensor {
	return b.linear(xt, wt, biast, false)
}

// LinearGELU returns GELU_tanh(x·wᵀ + bias) with the activation applied to
// the float32 result in cuBLASLt's epilogue (backend.LinearGELU): the FFN's
// hidden activations are written once instead of written, read and written
// again by a separate GELU pass.
func (b *Backend) LinearGELU(xt, wt, biast backend.Tensor) backend.Tensor {
	return b.linear(xt, wt, biast, true)
}

func (b *Backend) linear(xt, wt, biast backend.Tensor, gelu bool) backend.Tensor {
	x, w := T(xt), T(wt)
	checkFloat("Linear x", x)
	checkFloat("Linear w", w)
	if len(x.shape) == 0 || len(w.shape) != 2 || w.shape[1] != x.shape[len(x.shape)-1] {
		backend.Fail("cuda: Linear: x %v and w %v do not match (want w [N, %d])", x.shape, w.shape, lastDim(x.shape))
	}
	if x.dt == tensor.BF16 && w.dt != tensor.BF16 {
		backend.Fail("cuda: Linear: bfloat16 x needs a bfloat16 weight, got %v", w.dt)
	}
	N, K := w.shape[0], w.shape[1]
	M := int(x.n()) / max(K, 1)
	var bias *Tensor
	if biast != nil {
		bias = T(biast)
		checkFloat("Linear bias", bias)
		if len(bias.shape) != 1 || bias.shape[0] != N {
			backend.Fail("cuda: Linear: bias shape %v, want [%d]", bias.shape, N)
		}
	}
	defer b.enter()()
	outShape := append(append([]int(nil), x.shape[:len(x.shape)-1]...), N)
	out := b.newTensor(x.dt, outShape)
	if M == 0 || N == 0 {
		return out
	}
	if K == 0 {
		backend.Fail("cuda: Linear with K=0 (x %v) not supported", x.shape)
	}
	wp := w.buf.ptr
	if x.dt == tensor.F32 && w.dt == tensor.BF16 {
		// fp32 autocast region: upcast the weight exactly, then an fp32 GEMM.
		wf := b.newTensor(tensor.F32, w.shape)
		defer b.Free(wf)
		b.launch(b.fn("elementwise.cu", "cast_kernel"), b.gridFor(w.n()), block256, 0, wf.buf.ptr, int32(1), w.buf.ptr, int32(2), w.n())
		wp = wf.buf.ptr
	}
	key := gemmKey{m: M, n: N, k: K, ab: cudaType(x.dt), cd: cudaType(x.dt), bias: -1, gelu: gelu}
	if bias != nil {
		key.bias = cudaType(bias.dt)
	}
	p, err := b.plan(key)
	if err == nil {
		var bp uintptr
		if bias != nil {
			bp = bias.buf.ptr
		}
		b.gemm(p, key, x.buf.ptr, wp, out.buf.ptr, bp)
		return out
	}
	if bias == nil || gelu {
		backend.FailErr(err)
	}
	// No fused bias for this type mix: fp32 GEMM output, then one rounding
	// in the bias kernel.
	key2 := gemmKey{m: M, n: N, k: K, ab: key.ab, cd: cudaR32F, bias: -1}
	p2, err2 := b.plan(key2)
	if err2 != nil {
		backend.FailErr(fmt.Errorf("%v; fallback without fused bias: %w", err, err2))
	}
	acc := b.newTensor(tensor.F32, outShape)
	defer b.Free(acc)
	b.gemm(p2, key2, x.buf.ptr, wp, acc.buf.ptr, 0)
	n := out.n()
	b.launch(b.fn("elementwise.cu", "bias_add_kernel"), b.gridFor(n), block256, 0, out.buf.ptr, dtCode(out.dt), acc.buf.ptr,
		bias.buf.ptr, dtCode(bias.dt), n, int32(N))
	return out
}

func lastDim(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}
