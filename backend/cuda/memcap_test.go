package cuda

import "testing"

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
