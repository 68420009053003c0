//go:build !amd64

package cpu

// scaleMax multiplies s by scale in place and returns its maximum.
func scaleMax(s []float32, scale float32) float32 { return scaleMaxScalar(s, scale) }

// expSub sets s[j] = expf(s[j]−m) (bf16-rounded when round is set) and
// returns the sum of the unrounded values.
func expSub(s []float32, m float32, round bool) float32 { return expSubScalar(s, m, round) }

// geluTanhInto sets dst[i] = geluTanh(src[i]).
func geluTanhInto(dst, src []float32) {
	for i := range dst {
		dst[i] = geluTanh(src[i])
	}
}
