package wan

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestRoPEAnglesGolden compares the angles with the reference's
// generate_embeddings output for the set's token grid (latent x of
// dit_inputs over the manifest's patch size, head_dim from the manifest).
func TestRoPEAnglesGolden(t *testing.T) {
	in := golden.Open(t, "dit_inputs.safetensors")
	man := golden.LoadManifest(t)
	want, shape := golden.Tensor(t, in, "rope_freqs")
	xi, ok := in.Info("x")
	ps := man.Ints(t, "configs", "dit", "patch_size")
	if !ok || len(xi.Shape) != 5 || len(ps) != 3 {
		t.Fatalf("dit_inputs x %v (present %v), patch_size %v: want [1, C, T, H, W] and 3 patch sizes", xi.Shape, ok, ps)
	}
	headDim := man.Int(t, "configs", "dit", "head_dim")
	got := ropeAngles(xi.Shape[2]/ps[0], xi.Shape[3]/ps[1], xi.Shape[4]/ps[2], headDim)
	if len(got) != len(want) || shape[1] != headDim/2 {
		t.Fatalf("angles: %d values, reference %v", len(got), shape)
	}
	golden.Compare(t, "rope_freqs", got, want, 1e-6)
	diff := 0
	for i := range got {
		if got[i] != want[i] {
			diff++
		}
	}
	t.Logf("rope_freqs: %d of %d angles differ in the last bit", diff, len(got))
}

func TestRoPEAngleLayout(t *testing.T) {
	// Token (t=1, h=2, w=3) of a 2×4×4 grid: pairs 0..21 scale with t,
	// 22..42 with h, 43..63 with w; pair 0 of each axis has ω = 1.
	a := ropeAngles(2, 4, 4, 128)
	row := a[(1*16+2*4+3)*64 : (1*16+2*4+3+1)*64]
	if row[0] != 1 || row[22] != 2 || row[43] != 3 {
		t.Errorf("first angle of each axis: t %v h %v w %v, want 1 2 3", row[0], row[22], row[43])
	}
	// ω_j = 10000^(−2j/44) for time, 10000^(−2j/42) for space.
	if w := math.Pow(10000, -2.0/44); math.Abs(float64(row[1])-w) > 1e-6 {
		t.Errorf("time pair 1: %v, want %v", row[1], w)
	}
	if w := 3 * math.Pow(10000, -20.0/42); math.Abs(float64(row[53])-w) > 1e-6 {
		t.Errorf("width pair 10: %v, want %v", row[53], w)
	}
}

func TestTimestepSinusoid(t *testing.T) {
	s := timestepSinusoid(736, 256)
	if s[0] != float32(math.Cos(736)) || s[128] != float32(math.Sin(736)) {
		t.Errorf("k=0: cos %v sin %v, want cos(736), sin(736)", s[0], s[128])
	}
	w := math.Pow(10000, -5.0/128)
	if s[5] != float32(math.Cos(736*w)) || s[133] != float32(math.Sin(736*w)) {
		t.Errorf("k=5: got %v %v", s[5], s[133])
	}
	// The bf16 model sees bf16(987.65) = 988, the float32 model the value itself.
	if got := modelTimestep(987.65, tensor.BF16); got != 988 {
		t.Errorf("bf16 timestep %v, want 988", got)
	}
	if got := modelTimestep(987.65, tensor.F32); got != float64(float32(987.65)) {
		t.Errorf("fp32 timestep %v", got)
	}
}

func TestPatchifyLayout(t *testing.T) {
	C, T, H, W := 3, 2, 4, 6
	x := make([]float32, C*T*H*W)
	for i := range x {
		x[i] = float32(i)
	}
	p := patchify(x, C, T, H, W)
	Hp, Wp := H/2, W/2
	for c := 0; c < C; c++ {
		for tt := 0; tt < T; tt++ {
			for h := 0; h < H; h++ {
				for w := 0; w < W; w++ {
					l := tt*Hp*Wp + (h/2)*Wp + w/2
					f := c*4 + (h%2)*2 + w%2
					if got, want := p[l*C*4+f], x[((c*T+tt)*H+h)*W+w]; got != want {
						t.Fatalf("token %d feature %d = %v, want x[%d,%d,%d,%d] = %v", l, f, got, c, tt, h, w, want)
					}
				}
			}
		}
	}
	// Unpatchify reads features as (kh·2+kw)·C + c.
	y := make([]float32, len(p))
	for l := 0; l < T*Hp*Wp; l++ {
		for c := 0; c < C; c++ {
			for k := 0; k < 4; k++ {
				y[l*C*4+k*C+c] = p[l*C*4+c*4+k]
			}
		}
	}
	back := unpatchify(y, C, T, H, W)
	for i := range x {
		if back[i] != x[i] {
			t.Fatalf("unpatchify(reordered patchify) differs at %d: %v vs %v", i, back[i], x[i])
		}
	}
}

// TestForwardBadInput checks that bad inputs are errors, not panics.
func TestForwardBadInput(t *testing.T) {
	be := cpuDiT(t)
	m, err := Load(be, golden.Open(t, "dit_weights.safetensors"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	c := m.Config
	if _, err := m.EmbedText(make([]float32, 10), 1); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("want 1×%d", c.TextDim)) {
		t.Errorf("short text: %v", err)
	}
	long := c.TextLen + 1
	if _, err := m.EmbedText(make([]float32, long*c.TextDim), long); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d rows", long)) {
		t.Errorf("long text: %v", err)
	}
	txt, err := m.EmbedText(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A valid latent: 1 frame of 2×2 patches.
	pt, ph, pw := c.Patch[0], c.Patch[1], c.Patch[2]
	ok := []int{c.InDim, pt, 2 * ph, 2 * pw}
	n := tensor.NumElements(ok)
	for _, tc := range []struct {
		shape []int
		n     int
		frag  string
	}{
		{[]int{c.InDim - 1, pt, 2 * ph, 2 * pw}, (c.InDim - 1) * pt * 4 * ph * pw, fmt.Sprintf("want [%d, T, H, W]", c.InDim)},
		{[]int{c.InDim, pt, 2*ph - 1, 2 * pw}, c.InDim * pt * (2*ph - 1) * 2 * pw, "even"},
		{ok, 7, fmt.Sprintf("holds %d values, got 7", n)},
	} {
		if tc.frag == "even" && ph == 1 {
			continue // every height is a multiple of a patch height of 1
		}
		_, err := m.Forward(make([]float32, tc.n), tc.shape, 500, txt)
		if err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("shape %v: error %v, want one mentioning %q", tc.shape, err, tc.frag)
		}
	}
	if _, err := m.Forward(make([]float32, n), ok, float32(math.NaN()), txt); err == nil {
		t.Error("NaN timestep accepted")
	}
	txt.Free()
	if _, err := m.Forward(make([]float32, n), ok, 500, txt); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("freed text: %v", err)
	}
	// A small valid call works (L = 4 tokens).
	txt2, _ := m.EmbedText(nil, 0)
	v, err := m.Forward(make([]float32, n), ok, 500, txt2)
	if want := c.OutDim * pt * 4 * ph * pw; err != nil || len(v) != want {
		t.Errorf("valid call: %d values (want %d), %v", len(v), want, err)
	}
}

// TestPthAndSafetensorsAgree loads the same weights from the torch .pth
// (fp32 norm buffers) and the safetensors (all bf16) and checks that a small
// forward is bit-identical: the file's storage dtype must not matter when
// the values are the same.
func TestPthAndSafetensorsAgree(t *testing.T) {
	be := cpuDiT(t)
	in := loadInputs(t)
	// The first values of the set's latent as a [C, 2, 8, 8] latent.
	shape := []int{in.shape[0], 2, 8, 8}
	x := make([]float32, tensor.NumElements(shape))
	copy(x, in.x)
	var outs [][]float32
	for _, name := range []string{"dit_weights.pth", "dit_weights.safetensors"} {
		m, err := Load(be, golden.Open(t, name), Options{Attention: backend.SLA, TopK: 0.5, BlockQ: 16, BlockK: 8})
		if err != nil {
			t.Fatal(err)
		}
		txt, err := m.EmbedText(in.text, in.rows)
		if err != nil {
			t.Fatal(err)
		}
		v, err := m.Forward(x, shape, in.t, txt)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, v)
		m.Free()
	}
	for i := range outs[0] {
		if outs[0][i] != outs[1][i] {
			t.Fatalf("output %d: .pth %v, safetensors %v", i, outs[0][i], outs[1][i])
		}
	}
}

// TestForwardLayouts runs zero-weight models of other layouts end to end:
// an I2V model (36 → 16 channels) stored with the original Conv3d patch
// embedding, and an int8-quantised T2V model.
func TestForwardLayouts(t *testing.T) {
	be := cpuDiT(t)
	i2v := base("", I2V, 128, 256, 1, 1, 36)
	i2v.FreqDim, i2v.TextDim = 32, 64
	for _, tc := range []struct {
		c   Config
		l   layout
		opt Options
	}{
		{i2v, layout{convPatch: true}, Options{DType: tensor.F32}},
		{tinyConfig(), layout{quantized: true, projL: true}, Options{Attention: backend.SageSLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
	} {
		m, err := Load(be, specFile(t, tc.c, tc.l, nil), tc.opt)
		if err != nil {
			t.Fatalf("%v %+v: %v", tc.c, tc.l, err)
		}
		txt, err := m.EmbedText(make([]float32, 3*tc.c.TextDim), 3)
		if err != nil {
			t.Fatal(err)
		}
		v, err := m.Forward(make([]float32, tc.c.InDim*2*4*4), []int{tc.c.InDim, 2, 4, 4}, 900, txt)
		if err != nil {
			t.Fatalf("%v %+v: %v", tc.c, tc.l, err)
		}
		if len(v) != 16*2*4*4 {
			t.Errorf("%v: %d output values, want %d", tc.c, len(v), 16*2*4*4)
		}
		for i, x := range v {
			if x != 0 {
				t.Fatalf("%v: output %d = %v from all-zero weights", tc.c, i, x)
			}
		}
		m.Free()
	}
}
