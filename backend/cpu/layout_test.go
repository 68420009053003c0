package cpu

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestReshapeIsView(t *testing.T) {
	be := New()
	x := be.Upload(tensor.F32, []int{2, 3, 4}, randVals(newRand(3), 24, 1))
	y := be.Reshape(x, 6, -1)
	if got := y.Shape(); got[0] != 6 || got[1] != 4 {
		t.Fatalf("Reshape shape %v, want [6 4]", got)
	}
	T(x).F[5] = 42
	if be.Download(y)[5] != 42 {
		t.Errorf("Reshape copied the data; want a view")
	}
	expectFail(t, "Reshape count", func() { be.Reshape(x, 5, 5) }, "[2 3 4]", "[5 5]")
	expectFail(t, "Reshape two -1", func() { be.Reshape(x, -1, -1) }, "invalid")
}

func TestCast(t *testing.T) {
	be := New()
	v := []float32{1.00390625, 1.01171875, -3.3333333, 1e-40, 65504.7}
	x := be.Upload(tensor.F32, []int{5}, v)
	got := be.Download(be.Cast(x, tensor.BF16))
	for i := range v {
		if got[i] != tensor.RoundBF16(v[i]) {
			t.Errorf("Cast bf16 [%d] %v -> %v, want %v", i, v[i], got[i], tensor.RoundBF16(v[i]))
		}
	}
	// ties to even: 1+2^-8 is halfway between 1 and 1+2^-7 -> 1.
	if got[0] != 1 {
		t.Errorf("Cast: 1.00390625 -> %v, want 1 (ties to even)", got[0])
	}
	back := be.Cast(be.Cast(x, tensor.BF16), tensor.F32)
	if back.DType() != tensor.F32 || be.Download(back)[2] != got[2] {
		t.Errorf("Cast back to f32 changed values")
	}
	expectFail(t, "Cast int8", func() { be.Cast(x, tensor.I8) }, "int8")
}

func TestPermute(t *testing.T) {
	be := New()
	shape := []int{3, 5, 2, 7}
	v := randVals(newRand(4), tensor.NumElements(shape), 1)
	x := be.Upload(tensor.BF16, shape, v)
	perm := []int{2, 0, 3, 1}
	y := be.Permute(x, perm...)
	ys := y.Shape()
	for i, p := range perm {
		if ys[i] != shape[p] {
			t.Fatalf("Permute shape %v", ys)
		}
	}
	got := be.Download(y)
	st := strides(shape)
	n := 0
	for a := 0; a < ys[0]; a++ {
		for b := 0; b < ys[1]; b++ {
			for c := 0; c < ys[2]; c++ {
				for d := 0; d < ys[3]; d++ {
					idx := [4]int{}
					idx[perm[0]], idx[perm[1]], idx[perm[2]], idx[perm[3]] = a, b, c, d
					want := v[idx[0]*st[0]+idx[1]*st[1]+idx[2]*st[2]+idx[3]*st[3]]
					if got[n] != want {
						t.Fatalf("Permute [%d %d %d %d] = %v, want %v", a, b, c, d, got[n], want)
					}
					n++
				}
			}
		}
	}
	// large enough to run in parallel chunks
	big := be.Upload(tensor.F32, []int{64, 33, 17}, randVals(newRand(5), 64*33*17, 1))
	bt := be.Permute(be.Permute(big, 2, 0, 1), 1, 2, 0)
	if relErr(be.Download(bt), f64(be.Download(big))) != 0 {
		t.Errorf("Permute round trip differs")
	}
	sc := be.Permute(be.Upload(tensor.F32, nil, []float32{3}))
	if v := be.Download(sc); len(v) != 1 || v[0] != 3 {
		t.Errorf("Permute of a scalar gives %v", v)
	}
	expectFail(t, "Permute dup", func() { be.Permute(x, 0, 0, 1, 2) }, "permutation")
	expectFail(t, "Permute len", func() { be.Permute(x, 0, 1) }, "4")
}

func TestSliceConcat(t *testing.T) {
	be := New()
	shape := []int{4, 6, 3}
	v := randVals(newRand(6), 72, 1)
	x := be.Upload(tensor.F32, shape, v)
	for dim := 0; dim < 3; dim++ {
		n := shape[dim]
		a := be.Slice(x, dim, 0, 1)
		bb := be.Slice(x, dim, 1, n-1)
		c := be.Slice(x, dim, n-1, n)
		if got := be.Slice(x, dim, 1, n-1).Shape()[dim]; got != n-2 {
			t.Fatalf("Slice dim %d size %d", dim, got)
		}
		y := be.Concat(dim, a, bb, c)
		if !equalF(be.Download(y), v) {
			t.Errorf("Concat(Slice) along %d does not give the input back", dim)
		}
	}
	// element check: x[:, 2:4, :]
	s := be.Download(be.Slice(x, 1, 2, 4))
	for i := 0; i < 4; i++ {
		for j := 0; j < 2; j++ {
			for k := 0; k < 3; k++ {
				if s[(i*2+j)*3+k] != v[(i*6+j+2)*3+k] {
					t.Fatalf("Slice value at %d %d %d", i, j, k)
				}
			}
		}
	}
	expectFail(t, "Slice range", func() { be.Slice(x, 1, 3, 7) }, "[3:7]", "6")
	expectFail(t, "Concat dtype", func() { be.Concat(0, x, be.Upload(tensor.BF16, shape, v)) }, "bfloat16")
	expectFail(t, "Concat shape", func() { be.Concat(0, x, be.Upload(tensor.F32, []int{4, 5, 3}, v[:60])) }, "[4 5 3]")
}

func equalF(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
