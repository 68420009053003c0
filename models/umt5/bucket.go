package umt5

import "math"

// relativeBucket maps the offset r = j − i (key j, query i) to a
// bidirectional T5 bucket as the reference computes it on the GPU: half
// the buckets per direction (+half when r > 0), exact below half/2, then
// logarithmic up to maxDist, with the log math in float32 and the
// divisions by Python scalars done as multiplications by float32
// reciprocals (PyTorch's CUDA division by a CPU scalar).
func relativeBucket(r, buckets, maxDist int) int {
	half := buckets / 2
	b := 0
	if r > 0 {
		b = half
	}
	n := r
	if n < 0 {
		n = -n
	}
	exact := half / 2
	if n < exact {
		return b + n
	}
	x := float32(n) * (1 / float32(exact))
	lg := float32(math.Log(float64(x)))
	inv := 1 / float32(math.Log(float64(maxDist)/float64(exact)))
	large := exact + int(float32(float32(lg*inv)*float32(half-exact)))
	return b + min(large, half-1)
}

// relBias expands a [buckets, heads] table into the [heads, 2L−1] per-
// offset bias RelPosAttention takes (entry j−i+L−1).
func relBias(table []float32, buckets, heads, maxDist, l int) []float32 {
	out := make([]float32, heads*(2*l-1))
	for r := -(l - 1); r <= l-1; r++ {
		bk := relativeBucket(r, buckets, maxDist)
		for h := 0; h < heads; h++ {
			out[h*(2*l-1)+r+l-1] = table[bk*heads+h]
		}
	}
	return out
}
