package wan

import (
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// timestepSinusoid is the [freqDim] time embedding input of docs/NUMERICS.md
// §3.3: cos(t·ω_k) then sin(t·ω_k), ω_k = 10000^(−k/half), in float64 and
// rounded once to float32, like the reference.
func timestepSinusoid(t float64, freqDim int) []float32 {
	half := freqDim / 2
	out := make([]float32, freqDim)
	for k := 0; k < half; k++ {
		w := math.Pow(10000, -float64(k)/float64(half))
		a := t * w
		out[k] = float32(math.Cos(a))
		out[half+k] = float32(math.Sin(a))
	}
	return out
}

// modelTimestep is the timestep as the model sees it: rounded to the model
// dtype (the bf16 model gets bf16(1000·s), docs/NUMERICS.md §7.1).
func modelTimestep(t float32, dt tensor.DType) float64 {
	if dt == tensor.BF16 {
		t = tensor.RoundBF16(t)
	}
	return float64(t)
}

// ropeAngles returns the [L, headDim/2] RoPE angles of a T×Hp×Wp token grid
// (docs/NUMERICS.md §3.6): pairs [0, dt/2) temporal, then height, then width,
// dim_h = dim_w = 2·(headDim/6), dim_t the rest. Computed in float32 in the
// order TurboDiffusion's VideoRopePosition3DEmb does, so the angles match it.
func ropeAngles(T, Hp, Wp, headDim int) []float32 {
	dimH := headDim / 6 * 2
	dimT := headDim - 2*dimH
	freqs := func(dim int) []float32 {
		f := make([]float32, dim/2)
		for j := range f {
			r := float32(2*j) / float32(dim)
			f[j] = 1 / float32(math.Pow(10000, float64(r)))
		}
		return f
	}
	ft, fs := freqs(dimT), freqs(dimH)
	pairs := headDim / 2
	out := make([]float32, T*Hp*Wp*pairs)
	i := 0
	for t := 0; t < T; t++ {
		for h := 0; h < Hp; h++ {
			for w := 0; w < Wp; w++ {
				row := out[i*pairs : (i+1)*pairs]
				n := scaleInto(row, ft, float32(t))
				n += scaleInto(row[n:], fs, float32(h))
				scaleInto(row[n:], fs, float32(w))
				i++
			}
		}
	}
	return out
}

// scaleInto writes s·f into dst and returns len(f).
func scaleInto(dst, f []float32, s float32) int {
	for i, v := range f {
		dst[i] = s * v
	}
	return len(f)
}

// patchify flattens x [C, T, H, W] into tokens [T·Hp·Wp, C·4]: token
// l = t·Hp·Wp + hp·Wp + wp, feature f = c·4 + kh·2 + kw (docs/NUMERICS.md §3.2).
func patchify(x []float32, C, T, H, W int) []float32 {
	Hp, Wp := H/2, W/2
	F := C * 4
	out := make([]float32, T*Hp*Wp*F)
	// Parallel over token rows (t, hp): each writes its own Wp tokens. This
	// runs on the host every step while the GPU waits, so it must be quick.
	parallel.For(T*Hp, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t, hp := r/Hp, r%Hp
			dst := out[r*Wp*F : (r+1)*Wp*F]
			for c := 0; c < C; c++ {
				for kh := 0; kh < 2; kh++ {
					h := 2*hp + kh
					src := x[((c*T+t)*H+h)*W : ((c*T+t)*H+h+1)*W]
					d := dst[c*4+kh*2:]
					for wp := 0; wp < Wp; wp++ {
						d[wp*F], d[wp*F+1] = src[2*wp], src[2*wp+1]
					}
				}
			}
		}
	})
	return out
}

// unpatchify maps head rows [T·Hp·Wp, 4·C] back to [C, T, H, W]: feature
// f = (kh·2+kw)·C + c goes to pixel (c, t, 2hp+kh, 2wp+kw) (docs/NUMERICS.md §3.8).
func unpatchify(y []float32, C, T, H, W int) []float32 {
	Hp, Wp := H/2, W/2
	F := 4 * C
	out := make([]float32, C*T*H*W)
	// Parallel over token rows (t, hp): each writes pixel rows 2hp, 2hp+1.
	parallel.For(T*Hp, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t, hp := r/Hp, r%Hp
			for wp := 0; wp < Wp; wp++ {
				row := y[(r*Wp+wp)*F:]
				for k := 0; k < 4; k++ {
					h, w := 2*hp+k/2, 2*wp+k%2
					for c := 0; c < C; c++ {
						out[((c*T+t)*H+h)*W+w] = row[k*C+c]
					}
				}
			}
		}
	})
	return out
}
