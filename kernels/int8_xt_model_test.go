package kernels

import (
	"fmt"
	"testing"
)

// A CPU replay of the cross-tile k-block stream of i8g_body_x
// (int8_gemm_sm90a.cu; the instances int8_gemm_tma_n128px_i2f,
// int8_gemm_tma_n128w3x_i2f and int8_gemm_tma_n128px_i2f_gq): the
// producer's tile walk and ring items, and the consumers' issues, waits,
// releases, folds (with the scale values loaded a fold ahead) and
// epilogues, in the kernel's order, with the kernel's index math. Each
// wgmma group is a record of the k block it computes; wait<N> completes
// all but the newest N committed groups, as wgmma.wait_group does. It
// asserts, for every block of many grid and tile shapes, that every k
// block is folded exactly once, in ascending order within its tile, from
// an int32 set whose newest group is that k block and is complete, with
// the scales of its own tile and k block; that each tile's epilogue comes
// right after its last fold, on a sum of all its k blocks in order; that
// the stage a consumer reads holds the producer's item for that k block;
// that no issue overwrites a set that has not been folded; that every
// tile of the grid is stored by exactly one block; and that the next k
// block is in flight during every epilogue but the stream's last (with two
// sets also during every fold): the point of the cross-tile stream. Change it with
// the kernel.

// xtCfg is one kernel instance and launch: PIPE and NCW as the template
// arguments, the rest as ops_int8.go launches it.
type xtCfg struct {
	pipe          bool
	ncw, ns       int
	m, n, k, grid int
}

// xtScale names one scale value: the row of SX or SW it comes from and the
// k block (the column).
type xtScale struct{ row, kb int }

// xtGroup is one committed wgmma group: the k block (stream index q) it
// computes into a set.
type xtGroup struct {
	set, q int
	done   bool
}

// xtFold is what a fold added to acc: the tile's item and its scales.
type xtFold struct {
	mt, n0, kb int
	cx, cw0    xtScale
}

// i8gTileModel is i8g_tile (int8_gemm_sm90a.cu) with I8G_GM = 16.
func i8gTileModel(t, nM, nN, bn int) (mt, n0 int) {
	const gmRows = 16 // I8G_GM
	grp := t / (gmRows * nN)
	first := grp * gmRows
	gm := min(nM-first, gmRows)
	r := t - grp*gmRows*nN
	return first + r%gm, (r / gm) * bn
}

// xtReplay runs one block (blockIdx.x = b) of the configuration and
// returns the tiles whose epilogue it ran, or an error naming the first
// broken rule. brk, when not empty, replays a deliberate mistake so that
// the test can show each check catches one.
func xtReplay(c xtCfg, b int, brk string) ([][2]int, error) {
	const bn = 128 // BN: every cross-tile instance has 128-column tiles
	bm := 64 * c.ncw
	nM, nN, nSB := (c.m+bm-1)/bm, (c.n+bn-1)/bn, (c.m+127)/128
	kbN := c.k / 128                     // KB
	units, u0, ustep := nM*nN, b, c.grid // units, u0, ustep
	type item struct{ mt, n0, kb int }
	// The producer (wg == NCW): for u = u0; u < units; u += ustep, kb in
	// 0..KB-1, it counting on: ring item it goes to stage it % NS.
	var ring []item
	for u := u0; u < units; u += ustep {
		mt, n0 := i8gTileModel(u, nM, nN, bn)
		for kb := 0; kb < kbN; kb++ {
			ring = append(ring, item{mt, n0, kb})
		}
	}

	// The consumers, for warpgroup 0 and, where it differs, the others: the
	// scale rows are per warpgroup (tile_scales' sxr).
	var stored [][2]int
	for wg := 0; wg < c.ncw; wg++ {
		sets := 1
		if c.pipe {
			sets = 2 // SETS = PIPE ? 2 : 1
		}
		var groups []*xtGroup      // committed, oldest first
		last := map[int]*xtGroup{} // the newest group issued into each set (0: ia, 1: ib)
		folded := map[int]bool{}   // whether that group has been folded
		released := 0              // stages released so far, in stream order
		var acc []xtFold
		var fail error
		bad := func(f string, a ...any) {
			if fail == nil {
				fail = fmt.Errorf("block %d wg %d: "+f, append([]any{b, wg}, a...)...)
			}
		}
		inFlight := func() int {
			n := 0
			for _, g := range groups {
				if !g.done {
					n++
				}
			}
			return n
		}
		// tile_scales: sxr's row min((mt·BM + wg·64)/128, nSB-1), sw0's row
		// n0/128 (BN = 128: sw1 = sw0, split = BN).
		tileScales := func(mt, n0 int) (sxr, sw0 int) {
			return min((mt*bm+wg*64)/128, nSB-1), n0 / 128
		}
		// issue_g(d, q): waits for stage q % NS (full barrier parity
		// (q/NS)&1, so the producer's item q) and issues into d.
		issueG := func(d, q int) {
			if q >= len(ring) {
				bad("issue of k block %d past the producer's %d items", q, len(ring))
				return
			}
			if g := last[d]; g != nil && !folded[g.q] {
				bad("issue of k block %d into set %d whose k block %d is not folded yet", q, d, g.q)
			}
			g := &xtGroup{set: d, q: q}
			groups = append(groups, g)
			last[d] = g
		}
		// hp_wg_wait<N>: all but the newest N groups complete.
		wait := func(n int) {
			for i := 0; i < len(groups)-n; i++ {
				groups[i].done = true
			}
		}

		ntile := 0 // ntile = u0 < units ? (units - 1 - u0) / ustep + 1 : 0; total = ntile * KB
		if u0 < units {
			ntile = (units-1-u0)/ustep + 1
		}
		total := ntile * kbN
		u, mt, n0, kb, gk := u0, 0, 0, 0, 0
		sxr, sw0 := 0, 0
		var cx, cw0 xtScale
		setTile := func() { // set_tile
			mt, n0 = i8gTileModel(u, nM, nN, bn)
			sxr, sw0 = tileScales(mt, n0)
		}
		// fold_g(cur): release_g(cur, gk), then sc = cx·cw from the values
		// loaded a fold ahead, then the next fold's loads, acc zeroed at
		// kb == 0, the fold.
		foldG := func(cur int) {
			g := last[cur]
			switch {
			case g == nil || g.q != gk:
				bad("fold of k block %d from set %d, whose newest group is %v", gk, cur, g)
				return
			case !g.done:
				bad("fold of k block %d before its wgmmas completed", gk)
			}
			if gk != released {
				bad("stage of k block %d released out of order (after %d)", gk, released)
			}
			released++ // release_g(cur, gk): arrive on empty[gk % NS]
			if c.pipe && gk+1 < total && inFlight() == 0 && brk == "" {
				bad("no wgmma in flight during the fold of k block %d", gk)
			}
			scx, scw := cx, cw0 // sc0 = cx·cw0, sc1 = cx·cw1
			if kb+1 < kbN {     // cx = sxr[kb + 1], cw0 = sw0[kb + 1]
				nk := kb + 1
				if brk == "scale-kb" {
					nk = kb
				}
				cx, cw0 = xtScale{sxr, nk}, xtScale{sw0, nk}
			} else if gk+1 < total { // i8g_tile(u + ustep, ...); tile_scales(...); cx = sxr2[0], ...
				nu := u + ustep
				if brk == "scale-tile" {
					nu = u
				}
				mt2, n02 := i8gTileModel(nu, nM, nN, bn)
				sxr2, sw02 := tileScales(mt2, n02)
				cx, cw0 = xtScale{sxr2, 0}, xtScale{sw02, 0}
			}
			if kb == 0 && brk != "no-zero" { // if (kb == 0) acc[i] = 0.f
				acc = acc[:0]
			}
			acc = append(acc, xtFold{mt, n0, kb, scx, scw}) // i8g_fold<BN, CVT>(acc, cur, sc0, sc1, split)
			folded[gk] = true
			it := ring[gk]
			if it != (item{mt, n0, kb}) {
				bad("k block %d folded as tile (%d,%d) kb %d but its stage holds (%d,%d) kb %d", gk, mt, n0, kb, it.mt, it.n0, it.kb)
			}
		}
		epilogue := func() {
			if gk+1 < total && inFlight() == 0 { // both: the next k block is issued before the epilogue
				bad("no wgmma in flight during the epilogue of tile (%d,%d)", mt, n0)
			}
			if len(acc) != kbN {
				bad("epilogue of tile (%d,%d) on %d k blocks, want %d", mt, n0, len(acc), kbN)
			}
			wsx, wsw := tileScales(mt, n0)
			for i, f := range acc {
				if i >= kbN {
					break
				}
				want := xtFold{mt, n0, i, xtScale{wsx, i}, xtScale{wsw, i}}
				if f != want {
					bad("tile (%d,%d) k block %d folded as %+v, want %+v", mt, n0, i, f, want)
				}
			}
			stored = append(stored, [2]int{mt, n0})
		}
		// next_kb: a tile's last k block ends with its epilogue, then the
		// next tile (set_tile, fetch_bias) while one remains.
		nextKB := func() {
			kb++ // if (++kb == KB) {
			if kb == kbN {
				epilogue()        //   epilogue(mt, n0, bpre0, bpre1);
				kb = 0            //   kb = 0;
				u += ustep        //   u += ustep;
				if gk+1 < total { //   if (gk + 1 < total) { set_tile(); fetch_bias(...); }
					setTile()
				}
			}
			gk++ // ++gk;
		}
		if total > 0 { // if (total > 0) {
			setTile()                                  // set_tile(); fetch_bias(...);
			cx, cw0 = xtScale{sxr, 0}, xtScale{sw0, 0} // cx = sxr[0], cw0 = sw0[0], cw1 = cw0 (BN 128)
			issueG(0, 0)                               // issue_g(ia, 0);
			if sets == 2 {
				for steps := 0; gk+2 < total; steps++ { // for (; gk + 2 < total;)
					if steps > total {
						bad("the stream does not end")
						break
					}
					issueG(1, gk+1) // issue_g(ib, gk + 1);
					wait(1)         // hp_wg_wait<1>();
					foldG(0)        // fold_g(ia);
					nextKB()        // next_kb();
					q := gk + 1     // issue_g(ia, gk + 1);
					if brk == "skip" {
						q = gk + 2
					}
					issueG(0, q)
					wait(1)  // hp_wg_wait<1>();
					foldG(1) // fold_g(ib);
					nextKB() // next_kb();
				}
				if gk+1 < total { // the last two
					issueG(1, gk+1) // issue_g(ib, gk + 1);
					wait(1)         // hp_wg_wait<1>();
					foldG(0)        // fold_g(ia);
					nextKB()        // next_kb();
					if brk != "wait1" {
						wait(0) // hp_wg_wait<0>();
					} else {
						wait(1)
					}
					foldG(1) // fold_g(ib);
					nextKB() // next_kb();
				} else { // the last one
					wait(0)  // hp_wg_wait<0>();
					foldG(0) // fold_g(ia);
					nextKB() // next_kb();
				}
			} else {
				for steps := 0; gk+1 < total; steps++ { // for (; gk + 1 < total;)
					if steps > total {
						bad("the stream does not end")
						break
					}
					wait(0)  // hp_wg_wait<0>();
					foldG(0) // fold_g(ia);
					if brk == "late-issue" {
						nextKB() // the epilogue before the next issue
						issueG(0, gk)
						continue
					}
					issueG(0, gk+1) // issue_g(ia, gk + 1);
					nextKB()        // next_kb();
				}
				wait(0)  // hp_wg_wait<0>();
				foldG(0) // fold_g(ia);
				nextKB() // next_kb();
			}
		}
		if fail == nil && gk != total {
			fail = fmt.Errorf("block %d wg %d: %d k blocks folded, want %d", b, wg, gk, total)
		}
		if fail == nil && released != len(ring) {
			fail = fmt.Errorf("block %d wg %d: %d stages released, producer filled %d", b, wg, released, len(ring))
		}
		if fail != nil {
			return nil, fail
		}
	}
	// Every warpgroup stores the same tiles; return warpgroup 0's.
	return stored[:len(stored)/c.ncw], nil
}

// xtReplayGrid replays every block of the launch and checks that each
// tile of the output is stored by exactly one block.
func xtReplayGrid(c xtCfg, brk string) error {
	bm := 64 * c.ncw
	nM, nN := (c.m+bm-1)/bm, (c.n+127)/128
	seen := map[[2]int]int{}
	for b := 0; b < c.grid; b++ {
		st, err := xtReplay(c, b, brk)
		if err != nil {
			return err
		}
		for _, t := range st {
			seen[t]++
		}
	}
	for mt := 0; mt < nM; mt++ {
		for n0 := 0; n0 < c.n; n0 += 128 {
			if seen[[2]int{mt, n0}] != 1 {
				return fmt.Errorf("tile (%d,%d) stored %d times", mt, n0, seen[[2]int{mt, n0}])
			}
		}
	}
	if len(seen) != nM*nN {
		return fmt.Errorf("%d tiles stored, want %d", len(seen), nM*nN)
	}
	return nil
}

// xtConfigs are the instances (n128px_i2f and its _gq: PIPE, 2 warpgroups,
// NS 6; n128w3x_i2f: 3 warpgroups, NS 4) over shapes with one and many
// tiles per block, one and many k blocks, ragged M and N, and the grids
// ops_int8.go launches (min(tiles, SMs), or int8GridCap).
func xtConfigs() []xtCfg {
	var cs []xtCfg
	inst := []xtCfg{{pipe: true, ncw: 2, ns: 6}, {pipe: false, ncw: 3, ns: 4}}
	for _, in := range inst {
		for _, m := range []int{1, 64, 127, 128, 129, 192, 300, 1000, 4680} {
			for _, n := range []int{128, 200, 384, 1536} {
				for _, k := range []int{128, 256, 384, 640, 1536} {
					bm := 64 * in.ncw
					tiles := ((m + bm - 1) / bm) * ((n + 127) / 128)
					for _, g := range []int{1, 2, 3, 5, 7, 132} {
						c := in
						c.m, c.n, c.k, c.grid = m, n, k, min(tiles, g)
						cs = append(cs, c)
					}
				}
			}
		}
	}
	return cs
}

func TestInt8CrossTileStreamModel(t *testing.T) {
	n := 0
	for _, c := range xtConfigs() {
		if err := xtReplayGrid(c, ""); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		n++
	}
	t.Logf("%d launches replayed", n)
}

// TestInt8CrossTileStreamModelBreaks: each deliberate mistake in the
// replayed stream is caught, so the checks above can fail.
func TestInt8CrossTileStreamModelBreaks(t *testing.T) {
	for _, brk := range []string{"scale-kb", "scale-tile", "no-zero", "skip", "wait1", "late-issue"} {
		caught := false
		for _, c := range xtConfigs() {
			if brk == "skip" || brk == "wait1" {
				if !c.pipe {
					continue
				}
			}
			if err := xtReplayGrid(c, brk); err != nil {
				t.Logf("%s: %+v: %v", brk, c, err)
				caught = true
				break
			}
		}
		if !caught {
			t.Errorf("break %q not caught", brk)
		}
	}
}
