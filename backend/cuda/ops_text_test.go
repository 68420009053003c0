package cuda

import (
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestRelPosAttentionMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	cases := []struct {
		name                 string
		lq, lk, heads, d, kl int
	}{
		{"square", 24, 24, 4, 16, 17},
		{"fewerQueries", 7, 24, 3, 8, 24},
		{"umt5Head", 130, 150, 2, 64, 140}, // more keys than threads, d = 64 as umT5-XXL
		{"oddHead", 5, 9, 2, 6, 9},         // rows not 16-byte aligned: the scalar key loads
	}
	for _, tc := range cases {
		for _, dt := range vaeDTypes {
			t.Run(tc.name+"/"+dt.String(), func(t *testing.T) {
				hd := tc.heads * tc.d
				gq, cq := both(g, c, dt, []int{tc.lq, hd}, randVals(r, tc.lq*hd, 1))
				gk, ck := both(g, c, dt, []int{tc.lk, hd}, randVals(r, tc.lk*hd, 1))
				gv, cv := both(g, c, dt, []int{tc.lk, hd}, randVals(r, tc.lk*hd, 1))
				nb := tc.heads * (tc.lq + tc.lk - 1)
				gb, cb := both(g, c, dt, []int{tc.heads, tc.lq + tc.lk - 1}, randVals(r, nb, 4))
				gy := g.RelPosAttention(gq, gk, gv, gb, tc.heads, tc.kl)
				cy := c.RelPosAttention(cq, ck, cv, cb, tc.heads, tc.kl)
				golden.Compare(t, "relpos attention "+tc.name, g.Download(gy), c.Download(cy), vaeTol(dt))
			})
		}
	}
}

func TestGELUTanhStepsMatchesCPU(t *testing.T) {
	g, c := vaeBackends(t)
	r := rng(t)
	for _, dt := range vaeDTypes {
		x := randVals(r, 5000, 6)
		gx, cx := both(g, c, dt, []int{50, 100}, x)
		golden.Compare(t, "gelu tanh steps "+dt.String(), g.Download(g.GELUTanhSteps(gx)), c.Download(c.GELUTanhSteps(cx)), vaeTol(dt))
	}
}

func TestTextOpArgumentErrors(t *testing.T) {
	b := &Backend{}
	bf := tensor.BF16
	q, k := fakeTensor(bf, 5, 32), fakeTensor(bf, 6, 32)
	cases := []struct {
		name, want string
		f          func()
	}{
		{"bias shape", "relBias shape", func() { b.RelPosAttention(q, k, k, fakeTensor(bf, 4, 11), 4, 6) }},
		{"keyLen", "keyLen 7 outside [1, 6]", func() { b.RelPosAttention(q, k, k, fakeTensor(bf, 4, 10), 4, 7) }},
		{"heads", "do not split into 5 heads", func() { b.RelPosAttention(q, k, k, fakeTensor(bf, 5, 10), 5, 6) }},
		{"v shape", "want q [Lq, heads·d]", func() { b.RelPosAttention(q, k, fakeTensor(bf, 5, 32), fakeTensor(bf, 4, 10), 4, 6) }},
		{"gelu int8", "float32 or bfloat16", func() { b.GELUTanhSteps(fakeTensor(tensor.I8, 4)) }},
	}
	for _, tc := range cases {
		err := opErr(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	_ = backend.Text(b)
}
