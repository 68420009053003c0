package sla

import "math"

// exp2f returns 2^x rounded to float32. A float64 polynomial on the
// reduced argument (error ~1e-10 relative) makes it faithfully rounded and
// about 3x faster than math.Exp2, which matters in the softmax loops.
func exp2f(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < -160:
		return 0
	case x > 130:
		return float32(math.Inf(1))
	}
	return float32(exp2Poly(float64(x)))
}

// expf returns e^x rounded to float32 (same method as exp2f).
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < -110:
		return 0
	case x > 90:
		return float32(math.Inf(1))
	}
	return float32(exp2Poly(float64(x) * math.Log2E))
}

// exp2Poly is 2^x for |x| ≤ ~160: x = n + f with |f| ≤ 0.5, 2^f from the
// Taylor series of e^(f·ln2) to degree 9, scaled by 2^n exactly.
func exp2Poly(x float64) float64 {
	n := math.Floor(x + 0.5)
	t := (x - n) * math.Ln2
	p := 1 + t*(1+t*(1.0/2+t*(1.0/6+t*(1.0/24+t*(1.0/120+t*(1.0/720+t*(1.0/5040+t*(1.0/40320+t*(1.0/362880)))))))))
	return p * math.Float64frombits(uint64(int64(n)+1023)<<52)
}
