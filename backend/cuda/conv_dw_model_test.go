package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// dwModel replays, on the CPU, every copy and every wgmma operand read of
// conv3d_tma_k32_n96_m2_dw (kernels/conv3d_sm90a.cu, conv_tma with DW) for
// one convolution on the padded grid: the planar packed input of
// conv_pack_*_pl (cw_xp_pl), the weight tiles of conv_wpack_dw_kernel, the
// producer's bulk-copy addresses and sizes per stage, and the unswizzled
// K-major descriptors (8-row × 16-byte core matrices, SBO 128 bytes
// between 8-row groups, LBO between the two 8-channel halves of a k16
// step). The stage layout and the input's slack come from the launcher's
// own convTMA.stage, dwRows and slackRows. It returns the convolution of
// the valid output positions and fails t where a copy would read outside
// the allocation or land outside its stage.
func dwModel(t *testing.T, k convTMA, cin, cout, kt, kh, tp, hp, wp int, x []float64, w []float64) []float64 {
	t.Helper()
	const kw = 3
	n, bk, mw := k.n, k.bk, k.mw
	bm, ar := k.rows(), k.dwRows()
	rows, hwp := tp*hp*wp, hp*wp
	to := tp - kt + 1
	nci, ntap := cin/bk, kt*kh*kw

	// conv_pack_*_pl: plane c/8 holds channels c..c+7 of every padded row;
	// the launcher's slack after it is filled with NaN (never-written pool
	// memory): it may only reach output rows that are not stored.
	xq := make([]float64, (rows+k.slackRows(cin, kh, wp))*cin)
	for i := range xq {
		xq[i] = math.NaN()
	}
	for r := 0; r < rows; r++ {
		for c := 0; c < cin; c++ {
			xq[((c>>3)*rows+r)*8+c&7] = x[r*cin+c]
		}
	}
	// conv_wpack_dw_kernel's index arithmetic, element by element.
	nt := (cout + n - 1) / n
	wq := make([]float64, nt*ntap*cin*96)
	for i := range wq {
		e, r := i&7, (i>>3)%96
		q := i / (8 * 96)
		pl := q & 3
		q >>= 2
		d := q % 3
		q /= 3
		cic := q % nci
		q /= nci
		tq, ntt := q%(ntap/3), q/(ntap/3)
		if co := ntt*96 + r; co < cout {
			wq[i] = w[(co*cin+cic*32+pl*8+e)*ntap+tq*3+d]
		}
	}

	// One stage, in bf16 elements: the three B tiles, then per consumer
	// warpgroup four planes of ar rows (aw elements, rounded as the kernel
	// rounds AW to 128 bytes).
	bt := n * bk
	aw := (4*ar*16 + 127) / 128 * 128 / 2
	if 3*bt+2*aw > k.stage()/2 {
		t.Fatalf("stage layout %d elements exceeds convTMA.stage %d bytes", 3*bt+2*aw, k.stage())
	}
	tx := 0
	copyIn := func(st []float64, dst int, src []float64, off, count int, what string) {
		if off < 0 || off+count > len(src) {
			t.Fatalf("%s: copy of [%d, %d) outside the %d-element allocation", what, off, off+count, len(src))
		}
		copy(st[dst:dst+count], src[off:off+count])
		tx += 2 * count
	}
	// desc reads element (m, kk) of an unswizzled K-major tile.
	desc := func(st []float64, start, lbo, m, kk int) float64 {
		return st[start+(m%8)*8+(m/8)*64+kk%8+(kk/8)*lbo]
	}
	mrows := to * hwp
	y := make([]float64, mrows*cout)
	st := make([]float64, 3*bt+2*aw)
	acc := make([]float64, bm*n)
	for m0 := 0; m0 < mrows; m0 += bm {
		for n0 := 0; n0 < cout; n0 += n {
			clear(acc)
			for a := 0; a < kt; a++ {
				for bb := 0; bb < kh; bb++ {
					for cic := 0; cic < nci; cic++ {
						tx = 0
						arow := m0 + a*hwp + bb*wp
						copyIn(st, 0, wq, ((((n0/n)*kt+a)*kh+bb)*nci+cic)*(3*n*bk), 3*bt, "B")
						for w2 := 0; w2 < 2; w2++ {
							for pl := 0; pl < 4; pl++ {
								copyIn(st, 3*bt+w2*aw+pl*ar*8, xq, ((cic*4+pl)*rows+arow+w2*64*mw)*8, ar*8, "A")
							}
						}
						if want := 3*bt*2 + 2*4*ar*16; tx != want {
							t.Fatalf("a stage delivers %d bytes, the kernel expects TX = %d", tx, want)
						}
						for wg := 0; wg < 2; wg++ {
							for d := 0; d < 3; d++ {
								for kk := 0; kk < 2; kk++ {
									for mi := 0; mi < mw; mi++ {
										sa := 3*bt + wg*aw + kk*2*ar*8 + (mi*64+d)*8
										sb := d*bt + kk*2*n*8
										for m := 0; m < 64; m++ {
											row := acc[(wg*64*mw+mi*64+m)*n:]
											for j := 0; j < n; j++ {
												s := 0.0
												for e := 0; e < 16; e++ {
													s += desc(st, sa, ar*8, m, e) * desc(st, sb, n*8, j, e)
												}
												row[j] += s
											}
										}
									}
								}
							}
						}
					}
				}
			}
			for m := 0; m < bm && m0+m < mrows; m++ {
				for j := 0; j < n && n0+j < cout; j++ {
					y[(m0+m)*cout+n0+j] = acc[m*n+j]
				}
			}
		}
	}
	return y
}

// TestConvDWModel checks the dw kernel's data movement (dwModel) against a
// direct convolution on the padded grid, exactly (small integers), for
// Cin 32/64/96/160, Cout below, at and above one N = 96 tile, 1 to 3 time
// taps, grids whose w taps cross row and frame ends and whose last tile is
// partial. It needs no GPU: it checks the launcher's sizes (stage layout,
// transaction bytes, the input's slack) and the index arithmetic the
// kernels share with it; TestConv3dHopperMatchesCPU runs the kernels.
func TestConvDWModel(t *testing.T) {
	defer func(d bool, p *bool, s bool) { convDW, convPersist, convSplit96 = d, p, s }(convDW, convPersist, convSplit96)
	convDW, convPersist, convSplit96 = true, nil, false
	r := rand.New(rand.NewPCG(7, 9))
	for _, c := range []struct{ cin, cout, kt, kh, tp, hp, wp int }{
		{32, 40, 3, 3, 4, 5, 9},
		{96, 96, 1, 3, 2, 6, 12},
		{64, 100, 2, 3, 3, 5, 30},
		{96, 192, 3, 3, 3, 4, 25},
		{160, 96, 3, 3, 4, 7, 40},
		{96, 288, 3, 1, 3, 3, 60},
	} {
		t.Run(fmt.Sprintf("c%dto%d_k%dx%dx3_%dx%dx%d", c.cin, c.cout, c.kt, c.kh, c.tp, c.hp, c.wp), func(t *testing.T) {
			k := convDWPick(convTMA{bk: 32, n: 96, mw: 2, ns: 8}, 3, false)
			if !k.dw {
				t.Fatalf("convDWPick = %+v, want the dw kernel", k)
			}
			rows, ntap := c.tp*c.hp*c.wp, c.kt*c.kh*3
			x := make([]float64, rows*c.cin)
			for i := range x {
				x[i] = float64(r.IntN(7) - 3)
			}
			w := make([]float64, c.cout*c.cin*ntap)
			for i := range w {
				w[i] = float64(r.IntN(5) - 2)
			}
			y := dwModel(t, k, c.cin, c.cout, c.kt, c.kh, c.tp, c.hp, c.wp, x, w)
			hwp, ho, wo := c.hp*c.wp, c.hp-c.kh+1, c.wp-2
			checked := 0
			for row := 0; row < len(y)/c.cout; row++ {
				h, ww := row%hwp/c.wp, row%c.wp
				if h >= ho || ww >= wo {
					continue // not an output position: the epilogue skips it
				}
				checked++
				for co := 0; co < c.cout; co++ {
					want := 0.0
					for a := 0; a < c.kt; a++ {
						for bb := 0; bb < c.kh; bb++ {
							for d := 0; d < 3; d++ {
								src := (row + a*hwp + bb*c.wp + d) * c.cin
								for ci := 0; ci < c.cin; ci++ {
									want += w[(co*c.cin+ci)*ntap+(a*c.kh+bb)*3+d] * x[src+ci]
								}
							}
						}
					}
					if got := y[row*c.cout+co]; got != want {
						t.Fatalf("output row %d channel %d: %v, want %v", row, co, got, want)
					}
				}
			}
			if checked == 0 {
				t.Fatal("no output position checked")
			}
		})
	}
}
