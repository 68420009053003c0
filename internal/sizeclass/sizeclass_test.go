package sizeclass

import (
	"math/rand"
	"testing"
)

// TestRoundClasses: each class boundary, and for random sizes the class
// is the smallest of its kind that holds n.
func TestRoundClasses(t *testing.T) {
	for _, c := range []struct{ n, want int64 }{
		{-5, 512}, {0, 512}, {1, 512}, {511, 512}, {512, 512}, {513, 1024},
		{4096, 4096}, {4097, 8192}, {1<<20 - 1, 1 << 20}, {1 << 20, 1 << 20},
		{1<<20 + 1, 2 << 20}, {2 << 20, 2 << 20}, {2<<20 + 1, 4 << 20}, {3 << 20, 4 << 20},
		{335_462_400, 335_544_320}, {905_748_480, 905_969_664},
	} {
		if got := Round(c.n); got != c.want {
			t.Errorf("Round(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 10000; i++ {
		n := r.Int63n(1 << uint(1+r.Intn(36)))
		c := Round(n)
		small := c <= 1<<20
		ok := c >= max(n, 1)
		if small {
			ok = ok && c >= 512 && c&(c-1) == 0 && (c == 512 || c/2 < n)
		} else {
			ok = ok && n > 1<<20 && c%(2<<20) == 0 && c-(2<<20) < n
		}
		if !ok {
			t.Fatalf("Round(%d) = %d: not the smallest class holding it", n, c)
		}
	}
}
