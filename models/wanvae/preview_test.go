package wanvae

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The solver recovers a known linear map (with bias) from exact data.
func TestLeastSquaresRecovers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const p = 17
	var want [p][3]float64
	for i := range want {
		for k := range want[i] {
			want[i][k] = r.NormFloat64()
		}
	}
	var X [][]float64
	var Y [][3]float64
	for n := 0; n < 200; n++ {
		row := make([]float64, p)
		for i := 0; i < p-1; i++ {
			row[i] = r.NormFloat64()
		}
		row[p-1] = 1
		var y [3]float64
		for k := 0; k < 3; k++ {
			for i := range row {
				y[k] += row[i] * want[i][k]
			}
		}
		X, Y = append(X, row), append(Y, y)
	}
	beta, r2, err := leastSquares(X, Y)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for k := range want[i] {
			if d := math.Abs(beta[i][k] - want[i][k]); !(d <= 1e-6) { // NaN fails too
				t.Fatalf("beta[%d][%d] = %g, want %g", i, k, beta[i][k], want[i][k])
			}
		}
	}
	if !(r2 >= 1-1e-9) {
		t.Errorf("R² %g on exact data, want 1", r2)
	}
}

// A decoder that is exactly linear per latent pixel (then upsampled 8x
// nearest) is recovered exactly by the fit, whatever its coefficients.
func TestFitRGBRecoversLinearDecoder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const z = 16
	var W [3][z]float32
	var B [3]float32
	for k := 0; k < 3; k++ {
		for c := range W[k] {
			W[k][c] = float32(r.NormFloat64() * 0.3)
		}
		B[k] = float32(r.NormFloat64() * 0.1)
	}
	decode := func(lat []float32, shape []int) ([]float32, []int, error) {
		H, Wd := shape[2], shape[3]
		OH, OW := H*SpatialFactor, Wd*SpatialFactor
		out := make([]float32, 3*OH*OW)
		for k := 0; k < 3; k++ {
			for y := 0; y < OH; y++ {
				for x := 0; x < OW; x++ {
					s := B[k]
					for c := 0; c < z; c++ {
						s += W[k][c] * lat[(c*H+y/SpatialFactor)*Wd+x/SpatialFactor]
					}
					out[(k*OH+y)*OW+x] = s
				}
			}
		}
		return out, []int{3, 1, OH, OW}, nil
	}
	m, err := fitRGB(z, decode)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		for c := 0; c < z; c++ {
			if d := math.Abs(float64(m.W[k][c] - W[k][c])); !(d <= 1e-4) { // NaN fails too
				t.Fatalf("W[%d][%d] = %g, want %g", k, c, m.W[k][c], W[k][c])
			}
		}
		if d := math.Abs(float64(m.B[k] - B[k])); !(d <= 1e-4) {
			t.Fatalf("B[%d] = %g, want %g", k, m.B[k], B[k])
		}
	}
	if !(m.R2 >= 0.9999) {
		t.Errorf("R² %g for an exactly linear decoder", m.R2)
	}
}

// On the golden VAE (random weights, far from linear, so no quality bound
// applies) the fit runs through the real decode, is cached, and Apply agrees
// with the map's arithmetic and Frames' byte rule.
func TestFitRGBGolden(t *testing.T) {
	v, _ := loadGolden(t, tensor.F32)
	m, err := v.FitRGB()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("golden VAE: R² of the fit %.3f", m.R2)
	if m2, _ := v.FitRGB(); m2 != m {
		t.Error("a second FitRGB fitted again instead of returning the cached map")
	}
	z, n := v.Config().ZDim, fitSize
	lat := smoothLatent(z, n, rand.New(rand.NewPCG(99, 7)))
	rgb, err := m.Apply(lat, []int{z, 1, n, n}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := 5*n + 7
	for k := 0; k < 3; k++ {
		s := m.B[k]
		for c := 0; c < z; c++ {
			s += m.W[k][c] * lat[c*n*n+p]
		}
		if rgb[3*p+k] != ToUint8(s) {
			t.Fatalf("Apply pixel %d channel %d = %d, want %d", p, k, rgb[3*p+k], ToUint8(s))
		}
	}
	if _, err := m.Apply(lat, []int{z, 2, n, n}, 0); err == nil {
		t.Error("Apply accepted a shape that does not match the data")
	}
}
