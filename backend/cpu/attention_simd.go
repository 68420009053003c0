package cpu

import "math"

// SIMD attention tiles: a task is one head × attnSimdBQ queries (a multiple
// of the kernel's 6 rows); keys go in tiles of attnSimdBK (a multiple of 16).
const (
	attnSimdBQ = 48
	attnSimdBK = 256
)

// attnGeom describes one Attention call on row-major [batch, L, width]
// tensors.
type attnGeom struct {
	batch, lq, lk, heads, d, width int
	scale                          float32
	roundP                         bool
}

// attentionSIMD is Attention on the GEMM micro-kernel: per key tile,
// S = Q·Kᵀ and O = O·α + P·V both run as packed 6×16 tiles. Numerics are
// those of the scalar path (float32 scores, online softmax, bf16 P when
// asked) up to summation order.
func (b *Backend) attentionSIMD(q, k, v, out []float32, g attnGeom) {
	const bq, bk = attnSimdBQ, attnSimdBK
	d := g.d
	dp := (d + gemmNR - 1) / gemmNR * gemmNR // channels padded to panels
	// Pack K and V of every (batch, head) once: K as 16-key panels
	// [d][16], V per key tile as 16-channel panels [nk][16].
	kPanelsAll := (g.lk + gemmNR - 1) / gemmNR
	kStride, vStride := kPanelsAll*gemmNR*d, g.lk*dp
	kpAll := make([]float32, g.batch*g.heads*kStride)
	vpAll := make([]float32, g.batch*g.heads*vStride)
	b.parallelFor(g.batch*g.heads, func(lo, hi int) {
		for bh := lo; bh < hi; bh++ {
			base := (bh/g.heads)*g.lk*g.width + (bh%g.heads)*d
			kp := kpAll[bh*kStride : (bh+1)*kStride]
			for p := 0; p < kPanelsAll; p++ {
				packB(kp[p*gemmNR*d:(p+1)*gemmNR*d], k[base:], g.width, p*gemmNR, min(gemmNR, g.lk-p*gemmNR), 0, d)
			}
			vp := vpAll[bh*vStride : (bh+1)*vStride]
			for k0 := 0; k0 < g.lk; k0 += bk {
				nk := min(bk, g.lk-k0)
				tile := vp[k0*dp : k0*dp+nk*dp]
				for p := 0; p < dp/gemmNR; p++ {
					packBT(tile[p*gemmNR*nk:(p+1)*gemmNR*nk], v[base:], g.width, k0, nk, p*gemmNR, min(gemmNR, d-p*gemmNR))
				}
			}
		}
	})
	qBlocks := (g.lq + bq - 1) / bq
	tasks := g.batch * g.heads * qBlocks
	b.parallelFor(tasks, func(lo, hi int) {
		qp := make([]float32, bq*d)  // packed Q block, [bq/6][d][6]
		s := make([]float32, bq*bk)  // scores, then P
		pp := make([]float32, bq*bk) // packed P, [bq/6][nk][6]
		o := make([]float32, bq*dp)  // output accumulator
		m := make([]float32, bq)
		l := make([]float32, bq)
		for t := lo; t < hi; t++ {
			qb := t % qBlocks
			bh := t / qBlocks
			h := bh % g.heads
			bi := bh / g.heads
			q0 := qb * bq
			nq := min(bq, g.lq-q0)
			qBase := bi*g.lq*g.width + h*d
			kpAllH := kpAll[bh*kStride : (bh+1)*kStride]
			vpAllH := vpAll[bh*vStride : (bh+1)*vStride]
			packA(qp, q[qBase:], g.width, q0, nq, 0, d)
			for i := range m {
				m[i] = float32(math.Inf(-1))
				l[i] = 0
			}
			clear(o)
			for k0 := 0; k0 < g.lk; k0 += bk {
				nk := min(bk, g.lk-k0)
				kPanels := (nk + gemmNR - 1) / gemmNR
				kp := kpAllH[k0*d : k0*d+kPanels*gemmNR*d]
				vp := vpAllH[k0*dp : k0*dp+nk*dp]
				for ir := 0; ir < nq; ir += gemmMR {
					kernelRow(d, qp[ir*d:(ir+gemmMR)*d], kp, kPanels, s[ir*bk:], bk, false)
				}
				for i := 0; i < nq; i++ {
					sr := s[i*bk : i*bk+nk]
					alpha, sum := softmaxTile(sr, &m[i], g.scale, g.roundP)
					l[i] = l[i]*alpha + sum
					if alpha != 1 {
						or := o[i*dp : (i+1)*dp]
						for c := range or {
							or[c] *= alpha
						}
					}
				}
				packA(pp, s, bk, 0, nq, 0, nk)
				for ir := 0; ir < nq; ir += gemmMR {
					kernelRow(nk, pp[ir*nk:(ir+gemmMR)*nk], vp, dp/gemmNR, o[ir*dp:], dp, true)
				}
			}
			for i := 0; i < nq; i++ {
				inv := 1 / l[i]
				dst := out[qBase+(q0+i)*g.width : qBase+(q0+i)*g.width+d]
				for c := range dst {
					dst[c] = o[i*dp+c] * inv
				}
				if g.roundP {
					roundBF16(dst)
				}
			}
		}
	})
}

// packBT packs rows k0..k0+kc of a row-major [K, N] matrix b (stride ldb),
// columns j0..j0+nr, into one panel laid out [kc][NR] (zero-padded columns):
// the B operand of P·V, where V is stored keys-major.
func packBT(dst, b []float32, ldb, k0, kc, j0, nr int) {
	for p := 0; p < kc; p++ {
		row := b[(k0+p)*ldb+j0 : (k0+p)*ldb+j0+nr]
		d := dst[p*gemmNR : (p+1)*gemmNR]
		copy(d, row)
		clear(d[nr:])
	}
}
