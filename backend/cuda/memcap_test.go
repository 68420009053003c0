package cuda

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/memplan"
)

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{{"24GiB", 24 << 30}, {"24G", 24 << 30}, {"20000MiB", 20000 << 20}, {" 1.5 GiB", 3 << 29}, {"4096", 4096}, {"512M", 512 << 20}} {
		if got, err := parseBytes(c.in); err != nil || got != c.want {
			t.Errorf("%q: %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "x", "-1G", "0", "GiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// TestRoundClassMatchesPlanner: the planner's copy of the pool's size
// classes is the pool's.
func TestRoundClassMatchesPlanner(t *testing.T) {
	for _, n := range []int64{0, 1, 511, 512, 513, 4096, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3 << 20, 335_462_400, 905_748_480} {
		if a, b := roundClass(n), memplan.RoundClass(n); a != b {
			t.Errorf("%d bytes: pool class %d, planner %d", n, a, b)
		}
	}
}
