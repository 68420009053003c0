package sampler

import (
	"math"
	"math/big"
)

// The rCM schedule must match the reference's float64 times bit for bit,
// and Go's math.Sin/Cos/Atan can be an ulp away from the correctly rounded
// values the reference got (sin(atan 80) is one such case). These helpers
// evaluate in 256-bit arithmetic and round once.

const trigPrec = 256

// sinCosBig evaluates the Taylor series of sin a and cos a; accurate to
// about 2^-250 for |a| ≤ 4 (the schedule's angles lie in [0, π/2)).
func sinCosBig(a *big.Float) (sin, cos *big.Float) {
	sin = new(big.Float).SetPrec(trigPrec)
	cos = new(big.Float).SetPrec(trigPrec).SetInt64(1)
	term := new(big.Float).SetPrec(trigPrec).SetInt64(1) // a^k / k!
	eps := new(big.Float).SetMantExp(big.NewFloat(1), -trigPrec)
	for k := 1; k < 400; k++ {
		term.Mul(term, a)
		term.Quo(term, new(big.Float).SetInt64(int64(k)))
		dst := sin
		if k%2 == 0 {
			dst = cos
		}
		if (k/2)%2 == 1 { // k = 2,3 → −; 4,5 → +; 6,7 → − …
			dst.Sub(dst, term)
		} else {
			dst.Add(dst, term)
		}
		if new(big.Float).Abs(term).Cmp(eps) < 0 {
			break
		}
	}
	return sin, cos
}

// sinCosRounded returns sin a and cos a correctly rounded to float64.
func sinCosRounded(a float64) (float64, float64) {
	if math.Abs(a) > 4 {
		return math.Sin(a), math.Cos(a)
	}
	s, c := sinCosBig(new(big.Float).SetPrec(trigPrec).SetFloat64(a))
	sf, _ := s.Float64()
	cf, _ := c.Float64()
	return sf, cf
}

// atanRounded returns atan x correctly rounded to float64: two Newton steps
// on sin a − x·cos a = 0 from math.Atan's estimate.
func atanRounded(x float64) float64 {
	a0 := math.Atan(x)
	if math.IsInf(x, 0) || math.IsNaN(x) || x == 0 {
		return a0
	}
	xb := new(big.Float).SetPrec(trigPrec).SetFloat64(x)
	a := new(big.Float).SetPrec(trigPrec).SetFloat64(a0)
	for range 2 {
		s, c := sinCosBig(a)
		f := new(big.Float).SetPrec(trigPrec).Mul(xb, c)
		f.Sub(s, f)
		df := new(big.Float).SetPrec(trigPrec).Mul(xb, s)
		df.Add(c, df)
		a.Sub(a, f.Quo(f, df))
	}
	r, _ := a.Float64()
	return r
}
