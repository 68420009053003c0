package golden

import (
	"math"
	"sort"
	"testing"
)

// MapGap is the oracle's relative gap between the k-th and (k+1)-th pooled
// score below which a row of an SLA block map may differ from the oracle
// (manifest recommended_tolerances "sla sparse_map": an exact tie or a gap
// below ~1e-3). Which rows are near ties depends on the set, so tests apply
// this rule instead of naming rows.
const MapGap = 1e-3

// RelGap is (k-th − (k+1)-th largest score) / max|score| of one row: how
// close the top-k selection of that row is to a tie (+Inf when k keeps
// every block or the row is zero).
func RelGap(row []float32, k int) float64 {
	s := append([]float32(nil), row...)
	sort.Slice(s, func(a, b int) bool { return s[a] > s[b] })
	mx := 0.0
	for _, v := range s {
		mx = math.Max(mx, math.Abs(float64(v)))
	}
	if k <= 0 || k >= len(s) || mx == 0 {
		return math.Inf(1)
	}
	return float64(s[k-1]-s[k]) / mx
}

// CheckBlockMap compares a computed SLA block map with the oracle's, row by
// row (rows of kb key blocks, k of them selected): every row must select k
// blocks, and a row may differ from the oracle only where the oracle's
// relative gap is below gapTol; other differences fail the test. It
// returns the map to run the output comparison with: ours, with the
// oracle's row in each near-tie row that differs (the README lets the Go
// code use the oracle's sparse_map in such rows).
func CheckBlockMap(t testing.TB, what string, got, want []int8, scores []float32, kb, k int, gapTol float64) []int8 {
	t.Helper()
	if len(got) != len(want) || len(scores) != len(want) || kb <= 0 || len(want)%kb != 0 {
		t.Fatalf("%s: map of %d entries, oracle %d, %d scores, %d key blocks per row", what, len(got), len(want), len(scores), kb)
	}
	used := append([]int8(nil), got...)
	rows, differ, minGap := len(want)/kb, 0, math.Inf(1)
	for r := 0; r < rows; r++ {
		g, w := got[r*kb:(r+1)*kb], want[r*kb:(r+1)*kb]
		gap := RelGap(scores[r*kb:(r+1)*kb], k)
		minGap = math.Min(minGap, gap)
		n := 0
		same := true
		for j := range g {
			if g[j] != 0 {
				n++
			}
			same = same && g[j] == w[j]
		}
		if n != k {
			t.Errorf("%s row %d: %d key blocks selected, want int(topk·%d) = %d", what, r, n, kb, k)
		}
		if same {
			continue
		}
		differ++
		if gap < gapTol {
			t.Logf("%s row %d: selection differs from the oracle in a near tie (oracle relative gap %.2e < %.0e); using the oracle's row", what, r, gap, gapTol)
			copy(used[r*kb:(r+1)*kb], w)
			continue
		}
		t.Errorf("%s row %d: selection differs from the oracle (oracle relative gap %.2e >= %.0e)", what, r, gap, gapTol)
	}
	t.Logf("%s: %d of %d rows differ from the oracle; smallest oracle relative gap %.2e", what, differ, rows, minGap)
	return used
}
