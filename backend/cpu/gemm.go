package cpu

import (
	"runtime"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/vec"
)

// Gemm computes C = A·Bᵀ (+ bias) in float32 for row-major A [m,k] (row
// stride lda), B [n,k] (stride ldb) and C [m,n] (stride ldc), overwriting C.
// bias, when non-nil, has n entries added to every row after the sum (as a
// cuBLAS epilogue does). It uses every core. This is the layout of a Linear
// layer (B = weight [out, in]); convolutions call it as an implicit GEMM.
//
// Sums run over k in ascending order in KC-long slabs, each slab
// accumulated with fused multiply-adds in the SIMD kernel; results differ
// from a sequential float32 loop by rounding only (rel-L2 ~1e-7). Sizes or
// strides the slices cannot hold fail with a *backend.Error.
func Gemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	checkGemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
	(&Backend{threads: runtime.GOMAXPROCS(0)}).gemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
}

// checkGemm fails (backend.Fail) when the operands cannot hold the
// matrices their sizes and strides describe.
func checkGemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	if m < 0 || n < 0 || k < 0 {
		backend.Fail("cpu: Gemm: negative size m=%d n=%d k=%d", m, n, k)
	}
	if m == 0 || n == 0 {
		return
	}
	need := func(what string, ld, rows, cols, have int) {
		if ld < cols || (rows-1)*ld+cols > have {
			backend.Fail("cpu: Gemm: %s of %dx%d with stride %d does not fit in %d values", what, rows, cols, ld, have)
		}
	}
	need("A", lda, m, k, len(a))
	need("B", ldb, n, k, len(b))
	need("C", ldc, m, n, len(c))
	if bias != nil && len(bias) < n {
		backend.Fail("cpu: Gemm: bias has %d values, want %d", len(bias), n)
	}
}

// Blocking of the packed GEMM: an MR×NR register tile, A blocks of MC rows
// and B slabs of NC columns, both KC deep (a KC×NR B panel stays in L1, an
// MC×KC A block in L2).
const (
	gemmMR = 6
	gemmNR = 16
	gemmKC = 256
	gemmMC = 72
	gemmNC = 1024
)

// useKernel can be cleared by tests to exercise the portable path.
var useKernel = haveKernel

func (be *Backend) gemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	if m <= 0 || n <= 0 {
		return
	}
	// Tiny products and GEMVs (too few rows to fill the 6-row kernel, and
	// packing B would cost as much as using it) take the dot-product path.
	if k <= 0 || !useKernel || m*n*k < 32*32*32 || m < 2*gemmMR {
		be.gemmDot(m, n, k, a, lda, b, ldb, c, ldc, bias)
		return
	}
	be.gemmPacked(m, n, k, a, lda, b, ldb, c, ldc)
	if bias != nil {
		be.parallelFor(m, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				cr := c[i*ldc : i*ldc+n]
				for j := range cr {
					cr[j] += bias[j]
				}
			}
		})
	}
}

// gemmDot is the portable path: one dot product per output element.
func (be *Backend) gemmDot(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	work := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ar := a[i*lda : i*lda+k]
			cr := c[i*ldc : i*ldc+n]
			for j := range cr {
				s := vec.Dot(ar, b[j*ldb:j*ldb+k])
				if bias != nil {
					s += bias[j]
				}
				cr[j] = s
			}
		}
	}
	if m*n*k < 1<<16 {
		work(0, m)
		return
	}
	if m < be.threads { // few rows (a GEMV): split the columns instead
		be.parallelFor(n, func(lo, hi int) {
			for i := 0; i < m; i++ {
				ar := a[i*lda : i*lda+k]
				for j := lo; j < hi; j++ {
					s := vec.Dot(ar, b[j*ldb:j*ldb+k])
					if bias != nil {
						s += bias[j]
					}
					c[i*ldc+j] = s
				}
			}
		})
		return
	}
	be.parallelFor(m, work)
}

var (
	packAPool = sync.Pool{New: func() any { s := make([]float32, gemmMC*gemmKC); return &s }}
	packBPool = sync.Pool{New: func() any { s := make([]float32, gemmNC*gemmKC); return &s }}
	tilePool  = sync.Pool{New: func() any { s := make([]float32, gemmMR*gemmNR); return &s }}
)

// gemmPacked is the SIMD path: for each KC slab of k and NC slab of n it
// packs B once (shared), then workers pack MC-row blocks of A and run the
// micro-kernel over the tiles, overwriting C on the first slab and adding
// on later ones.
func (be *Backend) gemmPacked(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	bp := packBPool.Get().(*[]float32)
	defer packBPool.Put(bp)
	mBlocks := (m + gemmMC - 1) / gemmMC
	for pc := 0; pc < k; pc += gemmKC {
		kc := min(gemmKC, k-pc)
		for jc := 0; jc < n; jc += gemmNC {
			nc := min(gemmNC, n-jc)
			panels := (nc + gemmNR - 1) / gemmNR
			be.parallelFor(panels, func(lo, hi int) {
				for p := lo; p < hi; p++ {
					packB((*bp)[p*gemmNR*kc:(p+1)*gemmNR*kc], b, ldb, jc+p*gemmNR, min(gemmNR, n-jc-p*gemmNR), pc, kc)
				}
			})
			// Split the panels too when there are fewer A blocks than
			// workers, so small-m GEMMs still use every core.
			split := 1
			if mBlocks < 2*be.threads {
				split = min(panels, (2*be.threads+mBlocks-1)/mBlocks)
			}
			first := pc == 0
			be.parallelFor(mBlocks*split, func(lo, hi int) {
				ap := packAPool.Get().(*[]float32)
				tile := tilePool.Get().(*[]float32)
				defer packAPool.Put(ap)
				defer tilePool.Put(tile)
				packed := -1
				for t := lo; t < hi; t++ {
					ib, s := t/split, t%split
					ic := ib * gemmMC
					mc := min(gemmMC, m-ic)
					if packed != ib {
						packA(*ap, a, lda, ic, mc, pc, kc)
						packed = ib
					}
					p0, p1 := s*panels/split, (s+1)*panels/split
					step := 1
					if useAVX512 {
						step = 2 // pairs of panels through the 6×32 kernel
					}
					for p := p0; p < p1; p += step {
						np := min(step, p1-p)
						full := np // panels of 16 valid columns
						if jc+(p+np)*gemmNR > n {
							full--
						}
						j0 := jc + p*gemmNR
						bpan := (*bp)[p*gemmNR*kc : (p+np)*gemmNR*kc]
						for ir := 0; ir < mc; ir += gemmMR {
							mr := min(gemmMR, mc-ir)
							apan := (*ap)[ir*kc : ir*kc+gemmMR*kc]
							q := 0
							if mr == gemmMR && full > 0 {
								kernelRow(kc, apan, bpan, full, c[(ic+ir)*ldc+j0:], ldc, !first)
								q = full
							}
							// ragged edges: compute the full tile aside, copy the valid part
							for ; q < np; q++ {
								jq := j0 + q*gemmNR
								nr := min(gemmNR, n-jq)
								kernel6x16(kc, apan, bpan[q*gemmNR*kc:(q+1)*gemmNR*kc], *tile, gemmNR, false)
								for i := 0; i < mr; i++ {
									row := c[(ic+ir+i)*ldc+jq : (ic+ir+i)*ldc+jq+nr]
									src := (*tile)[i*gemmNR : i*gemmNR+nr]
									if first {
										copy(row, src)
									} else {
										for j := range row {
											row[j] += src[j]
										}
									}
								}
							}
						}
					}
				}
			})
		}
	}
}

// packA copies A[ic:ic+mc, pc:pc+kc] into MR-row panels laid out [kc][MR],
// zero-padding the last panel's missing rows.
func packA(dst, a []float32, lda, ic, mc, pc, kc int) {
	for ir := 0; ir < mc; ir += gemmMR {
		mr := min(gemmMR, mc-ir)
		pan := dst[ir*kc : ir*kc+gemmMR*kc]
		for i := 0; i < gemmMR; i++ {
			if i >= mr {
				for p := 0; p < kc; p++ {
					pan[p*gemmMR+i] = 0
				}
				continue
			}
			src := a[(ic+ir+i)*lda+pc : (ic+ir+i)*lda+pc+kc]
			for p, v := range src {
				pan[p*gemmMR+i] = v
			}
		}
	}
}

// packB copies B[j0:j0+nr, pc:pc+kc] into one panel laid out [kc][NR],
// zero-padding missing columns.
func packB(dst, b []float32, ldb, j0, nr, pc, kc int) {
	for j := 0; j < gemmNR; j++ {
		if j >= nr {
			for p := 0; p < kc; p++ {
				dst[p*gemmNR+j] = 0
			}
			continue
		}
		src := b[(j0+j)*ldb+pc : (j0+j)*ldb+pc+kc]
		for p, v := range src {
			dst[p*gemmNR+j] = v
		}
	}
}
