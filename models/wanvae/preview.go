package wanvae

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// RGBMap is a linear approximation of the decoder, per latent pixel:
// rgb = W·z + B for a normalised latent z (the DiT's space, ZDim channels),
// rgb in the decoder's [-1,1] range. It is what a live preview can afford
// after every sampling step: one small matrix product per latent pixel.
type RGBMap struct {
	W [3][]float32 // [3][ZDim]
	B [3]float32
	// R2 is the fraction of the decoder's per-pixel colour variance the map
	// explained on the latent it was fitted to.
	R2 float64
}

// Apply maps latent frame t of z [C,T,H,W] to packed RGB bytes (H·W·3),
// one pixel per latent pixel, with Frames' byte rule.
func (m *RGBMap) Apply(z []float32, shape []int, t int) ([]byte, error) {
	if len(shape) != 4 || shape[0] != len(m.W[0]) || t < 0 || t >= shape[1] || tensor.NumElements(shape) != len(z) {
		return nil, fmt.Errorf("wanvae: rgb map: want a latent [%d,T,H,W] and a frame in [0,T), got shape %v (%d values), frame %d",
			len(m.W[0]), shape, len(z), t)
	}
	C, T, plane := shape[0], shape[1], shape[2]*shape[3]
	out := make([]byte, 3*plane)
	// Channel-outer over contiguous planes, a row block per core.
	parallel.For((plane+255)/256, func(lo, hi int) {
		var acc [3][256]float32
		for blk := lo; blk < hi; blk++ {
			p0, p1 := blk*256, min(plane, (blk+1)*256)
			for k := 0; k < 3; k++ {
				a := acc[k][:p1-p0]
				for i := range a {
					a[i] = m.B[k]
				}
				for c := 0; c < C; c++ {
					w, src := m.W[k][c], z[(c*T+t)*plane+p0:(c*T+t)*plane+p1]
					for i, v := range src {
						a[i] += w * v
					}
				}
				for i, v := range a {
					out[3*(p0+i)+k] = ToUint8(v)
				}
			}
		}
	})
	return out, nil
}

// fitSize is the latent side of the fitting decode: 16×16 latent pixels
// (a 128×128 frame), of which the inner 14×14 are used.
const fitSize = 16

// FitRGB fits an RGBMap to this VAE by least squares: it decodes one
// random, spatially smooth latent frame (so each latent pixel's 8×8 output
// block is mostly its own colour, as in real latents), and regresses each
// block's mean colour on the latent pixel's channels and a bias. The
// released VAE's coefficients are not written down anywhere we can check, so
// fitting makes the map right for whatever VAE file is loaded. The result is
// cached: later calls return it at once.
func (v *VAE) FitRGB() (*RGBMap, error) {
	if v.rgb != nil {
		return v.rgb, nil
	}
	m, err := fitRGB(v.cfg.ZDim, v.Decode)
	if err != nil {
		return nil, err
	}
	v.rgb = m
	return m, nil
}

// fitRGB is FitRGB for any decoder of a [z,1,H,W] latent to [3,1,8H,8W].
func fitRGB(z int, decode func(lat []float32, shape []int) ([]float32, []int, error)) (*RGBMap, error) {
	n := fitSize
	lat := smoothLatent(z, n, rand.New(rand.NewPCG(0x5eed, uint64(z))))
	vid, vs, err := decode(lat, []int{z, 1, n, n})
	if err != nil {
		return nil, fmt.Errorf("wanvae: fitting the preview colours: %w", err)
	}
	if len(vs) != 4 || vs[0] != 3 || vs[1] != 1 || vs[2] != n*SpatialFactor || vs[3] != n*SpatialFactor {
		return nil, fmt.Errorf("wanvae: fitting the preview colours: decoded shape %v, want [3,1,%d,%d]", vs, n*SpatialFactor, n*SpatialFactor)
	}
	OH, OW := vs[2], vs[3]
	// Rows: inner latent pixels (the border's blocks see the zero padding).
	var X [][]float64
	var Y [][3]float64
	for y := 1; y < n-1; y++ {
		for x := 1; x < n-1; x++ {
			row := make([]float64, z+1)
			for c := 0; c < z; c++ {
				row[c] = float64(lat[(c*n+y)*n+x])
			}
			row[z] = 1
			var col [3]float64
			for k := 0; k < 3; k++ {
				var s float64
				for dy := 0; dy < SpatialFactor; dy++ {
					for dx := 0; dx < SpatialFactor; dx++ {
						s += float64(vid[(k*OH+y*SpatialFactor+dy)*OW+x*SpatialFactor+dx])
					}
				}
				col[k] = s / (SpatialFactor * SpatialFactor)
			}
			X, Y = append(X, row), append(Y, col)
		}
	}
	beta, r2, err := leastSquares(X, Y)
	if err != nil {
		return nil, fmt.Errorf("wanvae: fitting the preview colours: %w", err)
	}
	m := &RGBMap{R2: r2}
	for k := 0; k < 3; k++ {
		m.W[k] = make([]float32, z)
		for c := 0; c < z; c++ {
			m.W[k][c] = float32(beta[c][k])
		}
		m.B[k] = float32(beta[z][k])
	}
	return m, nil
}

// smoothLatent is a [z,1,n,n] latent whose channels are independent smooth
// random fields of unit variance: a 5×5 grid of normal values, bilinearly
// interpolated, plus a little per-pixel noise so the fit sees every
// direction.
func smoothLatent(z, n int, r *rand.Rand) []float32 {
	const g = 5
	out := make([]float32, z*n*n)
	for c := 0; c < z; c++ {
		var grid [g][g]float64
		for i := range grid {
			for j := range grid[i] {
				grid[i][j] = r.NormFloat64()
			}
		}
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				fy, fx := float64(y)*(g-1)/float64(n-1), float64(x)*(g-1)/float64(n-1)
				iy, ix := min(int(fy), g-2), min(int(fx), g-2)
				ty, tx := fy-float64(iy), fx-float64(ix)
				v := (grid[iy][ix]*(1-tx)+grid[iy][ix+1]*tx)*(1-ty) + (grid[iy+1][ix]*(1-tx)+grid[iy+1][ix+1]*tx)*ty
				out[(c*n+y)*n+x] = float32(v + 0.2*r.NormFloat64())
			}
		}
	}
	return out
}

// leastSquares solves min ‖Xβ − Y‖² for β [p][3] through the normal
// equations (XᵀX β = XᵀY, p is small) by Cholesky, with a tiny ridge so
// a singular design (a channel the decoder ignores) still solves. r2 is
// 1 − residual/total variance, summed over the three outputs.
func leastSquares(X [][]float64, Y [][3]float64) (beta [][3]float64, r2 float64, err error) {
	if len(X) == 0 || len(X) != len(Y) {
		return nil, 0, fmt.Errorf("least squares: %d rows against %d targets", len(X), len(Y))
	}
	p := len(X[0])
	A := make([][]float64, p)
	for i := range A {
		A[i] = make([]float64, p)
	}
	b := make([][3]float64, p)
	for r, row := range X {
		for i := 0; i < p; i++ {
			for j := 0; j < p; j++ {
				A[i][j] += row[i] * row[j]
			}
			for k := 0; k < 3; k++ {
				b[i][k] += row[i] * Y[r][k]
			}
		}
	}
	var tr float64
	for i := 0; i < p; i++ {
		tr += A[i][i]
	}
	for i := 0; i < p; i++ {
		A[i][i] += 1e-9 * tr / float64(p)
	}
	// Cholesky A = L Lᵀ in place (lower triangle).
	for j := 0; j < p; j++ {
		d := A[j][j]
		for k := 0; k < j; k++ {
			d -= A[j][k] * A[j][k]
		}
		if !(d > 0) {
			return nil, 0, fmt.Errorf("least squares: normal matrix not positive definite at column %d", j)
		}
		A[j][j] = math.Sqrt(d)
		for i := j + 1; i < p; i++ {
			s := A[i][j]
			for k := 0; k < j; k++ {
				s -= A[i][k] * A[j][k]
			}
			A[i][j] = s / A[j][j]
		}
	}
	beta = make([][3]float64, p)
	for k := 0; k < 3; k++ {
		y := make([]float64, p) // L y = b
		for i := 0; i < p; i++ {
			s := b[i][k]
			for j := 0; j < i; j++ {
				s -= A[i][j] * y[j]
			}
			y[i] = s / A[i][i]
		}
		for i := p - 1; i >= 0; i-- { // Lᵀ β = y
			s := y[i]
			for j := i + 1; j < p; j++ {
				s -= A[j][i] * beta[j][k]
			}
			beta[i][k] = s / A[i][i]
		}
	}
	var res, tot float64
	for k := 0; k < 3; k++ {
		var mean float64
		for r := range Y {
			mean += Y[r][k]
		}
		mean /= float64(len(Y))
		for r, row := range X {
			var pred float64
			for i := 0; i < p; i++ {
				pred += row[i] * beta[i][k]
			}
			res += (pred - Y[r][k]) * (pred - Y[r][k])
			tot += (Y[r][k] - mean) * (Y[r][k] - mean)
		}
	}
	if tot > 0 {
		r2 = 1 - res/tot
	}
	return beta, r2, nil
}
