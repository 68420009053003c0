// Package vec holds small float32 vector routines the pure-Go kernels share.
package vec

// Dot is a float32 dot product of x and y[:len(x)] with four partial sums,
// added as (s0+s1)+(s2+s3): a fixed order, so every caller gets the same
// bits for the same inputs.
func Dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}
