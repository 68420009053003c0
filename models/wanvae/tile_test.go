package wanvae

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// tolTiledF32 bounds tiled − untiled in float32: summation order only.
const tolTiledF32 = 1e-5

// randomLatent is a normal latent [z,T,H,W].
func randomLatent(z, T, H, W int, seed uint64) ([]float32, []int) {
	r := rand.New(rand.NewPCG(seed, 11))
	x := make([]float32, z*T*H*W)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x, []int{z, T, H, W}
}

// maxDiff is the largest |a−b| and where.
func maxDiff(a, b []float32) (float64, int) {
	var m float64
	at := -1
	for i := range a {
		if d := math.Abs(float64(a[i] - b[i])); d > m || (d != d) {
			m, at = d, i
		}
	}
	return m, at
}

// The halo is the decoder's receptive field after the middle block, from
// its layer list: 13 latent pixels for the Wan2.1 layout (any Dim).
func TestHaloLatent(t *testing.T) {
	v, _ := loadGolden(t, tensor.F32)
	if got := v.HaloLatent(); got != 13 {
		t.Fatalf("halo %d latent pixels, want 13 (head 1; stage 3 +6 = 7; up ⌈8/2⌉ = 4; +6 = 10; up ⌈11/2⌉ = 6; +6 = 12; up ⌈13/2⌉ = 7; +6 = 13)", got)
	}
}

// Tiles smaller than the latent, with every tile's decoded area inside the
// frame on some side (the latent is wider than a tile and two halos), give
// the untiled decode within the known error of the construction: each tile
// is exact on its own area and blend bands in exact arithmetic (its halo
// covers the receptive field), and the blend adds nothing (blended −
// untiled = Σ wᵢ·(tileᵢ − untiled) exactly, see blendWeight). What remains
// is the convolutions' summation order, which the CPU GEMM changes with the
// tensor's width (its panel edges move): each conv output, a sum of
// 27·Cin products, moves by a few float32 ulps of its partial sums, which
// ~40 layers carry to 2.8e-6 here; the bound is tolTiledF32. A halo one
// latent pixel short (the receptive field's outermost taps missing) gives
// 7.4e-5 (tried), so the bound is what proves the halo. On the bf16 path
// such a difference can flip a bf16 rounding and carry on, as the
// conformance tests know: there the bound is the set's bf16 tolerance
// (1-2 bf16 ulps are seen: 0.0195), a check that tiling works there at all.
func TestTiledDecodeMatchesUntiled(t *testing.T) {
	for _, c := range []struct {
		dt   tensor.DType
		H, W int
		tol  float64
	}{{tensor.F32, 6, 34, tolTiledF32}, {tensor.BF16, 34, 6, tolBF16}} {
		v, _ := loadGolden(t, c.dt)
		z := v.Config().ZDim
		lat, shape := randomLatent(z, 2, c.H, c.W, 5)
		want, ws, err := v.Decode(lat, shape)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.SetTiling(8); err != nil {
			t.Fatal(err)
		}
		got, gs, err := v.Decode(lat, shape)
		v.SetTiling(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != 4 || gs[1] != ws[1] || gs[2] != ws[2] || gs[3] != ws[3] {
			t.Fatalf("%v: tiled shape %v, untiled %v", c.dt, gs, ws)
		}
		d, at := maxDiff(got, want)
		t.Logf("%v %dx%d latent, tiles of 8: tiled vs untiled max |diff| %g", c.dt, c.H, c.W, d)
		if d > c.tol {
			t.Errorf("%v: tiled decode differs from the untiled one by %g at %d (bound %g)", c.dt, d, at, c.tol)
		}
	}
}

// A tile at least as large as the latent decodes untiled, bit for bit.
func TestTileCoveringLatentIsUntiled(t *testing.T) {
	v, _ := loadGolden(t, tensor.BF16)
	z := v.Config().ZDim
	lat, shape := randomLatent(z, 2, 6, 10, 6)
	want, _, err := v.Decode(lat, shape)
	if err != nil {
		t.Fatal(err)
	}
	v.SetTiling(10)
	got, _, err := v.Decode(lat, shape)
	if err != nil {
		t.Fatal(err)
	}
	if d, at := maxDiff(got, want); d != 0 {
		t.Fatalf("tile ≥ latent differs from untiled by %g at %d", d, at)
	}
	if err := v.SetTiling(-1); err == nil {
		t.Error("negative tile size accepted")
	}
}

// The blend weights of the tiles along an axis sum to 1 at every pixel and
// are multiples of 1/32.
func TestBlendWeightsPartitionUnity(t *testing.T) {
	for _, c := range [][3]int{{34, 8, 14}, {17, 5, 3}, {9, 9, 2}, {40, 3, 0}} {
		n, tile, m := c[0], c[1], c[2]
		sp := spans(n, tile, m)
		for p := 0; p < SpatialFactor*n; p++ {
			var sum float64
			for _, s := range sp {
				w := s.blendWeight(p)
				if w < 0 || w > 1 || w*1024 != math.Trunc(w*1024) {
					t.Fatalf("n=%d tile=%d: weight %g at %d", n, tile, w, p)
				}
				sum += w
			}
			if sum != 1 {
				t.Fatalf("n=%d tile=%d: weights sum to %g at pixel %d", n, tile, sum, p)
			}
		}
	}
}

// The set's own decode, tiled (tiles of half the latent's larger side,
// rounded up, so its sizes give tile edges at least along that side),
// matches the reference's float32 output within the set's tolerance. (At
// the set's small sizes every tile's halo reaches the frame's edges; the
// tests above use a latent wide enough for halos that end inside it.)
func TestGoldenDecodeTiled(t *testing.T) {
	v, get := loadGolden(t, tensor.F32)
	latent, lshape := get("decode.latent")
	want, _ := get("decode.video_fp32")
	tile := max((lshape[2]+1)/2, (lshape[3]+1)/2, 1)
	if lshape[2] <= 1 && lshape[3] <= 1 {
		t.Skip("a 1×1 latent cannot be tiled")
	}
	v.SetTiling(tile)
	got, _, err := v.Decode(latent, lshape)
	if err != nil {
		t.Fatal(err)
	}
	golden.Compare(t, "tiled decode.video_fp32", got, want, tolF32)
}
