package cpu

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

var negInf = math.Inf(-1)

// softmaxTile turns the raw scores sr of one query row into unnormalised
// probabilities expf(s·scale − m) in place, updating the running max *m. It
// returns the rescale factor α for earlier tiles and the row sum of the
// (unrounded) probabilities; with roundP the stored values are rounded to
// bf16 as flash kernels do before P·V.
func softmaxTile(sr []float32, m *float32, scale float32, roundP bool) (alpha, sum float32) {
	rowMax := max(*m, scaleMax(sr, scale))
	alpha = 0
	if !math.IsInf(float64(*m), -1) {
		alpha = expf(*m - rowMax)
	}
	*m = rowMax
	return alpha, expSub(sr, rowMax, roundP)
}

// scaleMaxScalar is the portable scaleMax.
func scaleMaxScalar(s []float32, scale float32) float32 {
	mx := float32(negInf)
	for j, x := range s {
		x *= scale
		s[j] = x
		if x > mx {
			mx = x
		}
	}
	return mx
}

// expSubScalar is the portable expSub.
func expSubScalar(s []float32, m float32, round bool) float32 {
	var sum float32
	for j, x := range s {
		p := expf(x - m)
		sum += p
		if round {
			p = tensor.RoundBF16(p)
		}
		s[j] = p
	}
	return sum
}
