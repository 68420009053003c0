package cpu

//go:noescape
func scaleMaxAVX2(s *float32, n int, scale float32) float32

//go:noescape
func expSubAVX2(s *float32, n int, m float32, round bool) float32

//go:noescape
func geluTanhAVX2(dst, src *float32, n int)

// geluTanhInto sets dst[i] = geluTanh(src[i]), eight at a time with AVX2.
func geluTanhInto(dst, src []float32) {
	src = src[:len(dst)]
	n8 := len(dst) &^ 7
	if useKernel && n8 > 0 {
		geluTanhAVX2(&dst[0], &src[0], n8)
	} else {
		n8 = 0
	}
	for i := n8; i < len(dst); i++ {
		dst[i] = geluTanh(src[i])
	}
}

// scaleMax multiplies s by scale in place and returns its maximum (−Inf
// for an empty s).
func scaleMax(s []float32, scale float32) float32 {
	n8 := len(s) &^ 7
	if !useKernel || n8 == 0 {
		return scaleMaxScalar(s, scale)
	}
	return max(scaleMaxAVX2(&s[0], n8, scale), scaleMaxScalar(s[n8:], scale))
}

// expSub sets s[j] = expf(s[j]−m) (bf16-rounded when round is set) and
// returns the sum of the unrounded values.
func expSub(s []float32, m float32, round bool) float32 {
	n8 := len(s) &^ 7
	if !useKernel || n8 == 0 {
		return expSubScalar(s, m, round)
	}
	return expSubAVX2(&s[0], n8, m, round) + expSubScalar(s[n8:], m, round)
}
