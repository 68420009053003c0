package cpu

import "math"

// expf is exp(x) in float32 arithmetic (Cody–Waite reduction by ln 2 and a
// degree-6 polynomial, Cephes' expf coefficients), within 2 ulp of the
// exact value: the accuracy of the ex2.approx/expf the GPU kernels use,
// about 4× faster than math.Exp. Inputs below ln 2^-126 give 0, above
// ln(MaxFloat32) +Inf.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if x < -87.33654 {
		return 0
	}
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	if x != x {
		return x
	}
	const shifter = 1.5 * (1 << 23) // adding it rounds to an integer
	fn := float32(float32(x*log2e)+shifter) - shifter
	r := float32(x - float32(fn*c1))
	r = float32(r - float32(fn*c2))
	p := float32(1.9875691500e-4)
	p = float32(p*r) + 1.3981999507e-3
	p = float32(p*r) + 8.3334519073e-3
	p = float32(p*r) + 4.1665795894e-2
	p = float32(p*r) + 1.6666665459e-1
	p = float32(p*r) + 5.0000001201e-1
	e := float32(float32(float32(p*r)*r)+r) + 1
	n := int32(fn)
	if n > 127 { // x within half an ulp-step of the overflow bound
		return e * 2 * math.Float32frombits(uint32(n-1+127)<<23)
	}
	return e * math.Float32frombits(uint32(n+127)<<23)
}

// tanhf is tanh(x) in float32 arithmetic (Cephes' tanhf: an odd polynomial
// below |x| = 0.625, 1 − 2/(e^{2|x|}+1) above), within a few ulp like
// CUDA's tanhf and much faster than math.Tanh. GELU only uses 1+tanh, so
// its absolute error (≤ 2⁻²⁴ near ±1) is what matters there.
func tanhf(x float32) float32 {
	a := x
	if a < 0 {
		a = -a
	}
	if a < 0.625 {
		z := float32(x * x)
		p := float32(-5.70498872745e-3)
		p = float32(p*z) + 2.06390887954e-2
		p = float32(p*z) - 5.37397155531e-2
		p = float32(p*z) + 1.33314422036e-1
		p = float32(p*z) - 3.33332819422e-1
		return float32(float32(p*z)*x) + x
	}
	if a > 9.01 { // tanh rounds to ±1 in float32
		if x < 0 {
			return -1
		}
		return 1
	}
	t := 1 - 2/float32(expf(float32(2*a))+1)
	if x < 0 {
		return -t
	}
	return t
}
