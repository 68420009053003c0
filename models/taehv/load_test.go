package taehv

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// overlay is a checkpoint with some tensors replaced, renamed away or
// added.
type overlay struct {
	checkpoint.File
	infos map[string]checkpoint.Info
	data  map[string][]float32
	drop  map[string]bool
}

func newOverlay(f checkpoint.File) *overlay {
	return &overlay{File: f, infos: map[string]checkpoint.Info{}, data: map[string][]float32{}, drop: map[string]bool{}}
}

func (o *overlay) set(name string, shape []int, data []float32) {
	o.infos[name] = checkpoint.Info{Name: name, DType: tensor.F32, Shape: shape}
	o.data[name] = data
}

func (o *overlay) Names() []string {
	var out []string
	for _, n := range o.File.Names() {
		if _, ok := o.infos[n]; !ok && !o.drop[n] {
			out = append(out, n)
		}
	}
	for n := range o.infos {
		out = append(out, n)
	}
	return out
}

func (o *overlay) Info(name string) (checkpoint.Info, bool) {
	if o.drop[name] {
		return checkpoint.Info{}, false
	}
	if i, ok := o.infos[name]; ok {
		return i, true
	}
	return o.File.Info(name)
}

func (o *overlay) Float32(name string) ([]float32, error) {
	if d, ok := o.data[name]; ok {
		return d, nil
	}
	return o.File.Float32(name)
}

func randomTAEHV(seed uint64) *testmodels.Random {
	return testmodels.NewRandom("random-taew2_1.safetensors", Tensors(16), seed)
}

func TestDetect(t *testing.T) {
	if !Detect(randomTAEHV(1)) {
		t.Error("random TAEW2.1 checkpoint not detected")
	}
	other := testmodels.NewRandom("other.safetensors", []checkpoint.Info{{Name: "decoder.conv1.weight", DType: tensor.F32, Shape: []int{4, 4, 3, 3, 3}}}, 1)
	if Detect(other) {
		t.Error("a Wan VAE key layout detected as TAEHV")
	}
}

func TestLoadErrors(t *testing.T) {
	b := cpu.New()
	t.Run("not taehv", func(t *testing.T) {
		f := testmodels.NewRandom("wan.pth", []checkpoint.Info{{Name: "decoder.conv1.weight", DType: tensor.F32, Shape: []int{4, 4, 3, 3, 3}}}, 1)
		_, err := Load(b, f, Options{DType: tensor.F32})
		if err == nil || !strings.Contains(err.Error(), "not a TAEHV checkpoint") || !strings.Contains(err.Error(), Source) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong shape", func(t *testing.T) {
		o := newOverlay(randomTAEHV(1))
		o.set("decoder.9.conv.2.weight", []int{128, 64, 3, 3}, make([]float32, 128*64*9))
		_, err := Load(b, o, Options{DType: tensor.F32})
		if err == nil || !strings.Contains(err.Error(), `"decoder.9.conv.2.weight"`) ||
			!strings.Contains(err.Error(), "want shape [128 128 3 3], got [128 64 3 3]") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong latent channels shape", func(t *testing.T) {
		o := newOverlay(randomTAEHV(1))
		o.set("decoder.1.weight", []int{128, 16, 3, 3}, make([]float32, 128*16*9))
		_, err := Load(b, o, Options{DType: tensor.F32})
		if err == nil || !strings.Contains(err.Error(), `"decoder.1.weight"`) || !strings.Contains(err.Error(), "got [128 16 3 3]") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		o := newOverlay(randomTAEHV(1))
		o.drop["decoder.22.bias"] = true
		o.drop["decoder.15.conv.4.weight"] = true
		_, err := Load(b, o, Options{DType: tensor.F32})
		if err == nil || !strings.Contains(err.Error(), `missing 2 tensors: "decoder.15.conv.4.weight", "decoder.22.bias"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("dtype", func(t *testing.T) {
		if _, err := Load(b, randomTAEHV(1), Options{DType: tensor.F16}); err == nil {
			t.Fatal("float16 compute accepted")
		}
	})
	t.Run("no encoder", func(t *testing.T) {
		o := newOverlay(randomTAEHV(1))
		for _, n := range o.File.Names() {
			if strings.HasPrefix(n, "encoder.") {
				o.drop[n] = true
			}
		}
		m, err := Load(b, o, Options{DType: tensor.F32})
		if err != nil {
			t.Fatal(err)
		}
		if m.HasEncoder() {
			t.Fatal("encoder reported without encoder weights")
		}
		if _, _, err := m.Encode(make([]float32, 3*4*8*8), []int{3, 4, 8, 8}); err == nil {
			t.Fatal("Encode without an encoder did not fail")
		}
	})
}

// TestLoadGrowPatched: a TGrow weight with more output channels than the
// layer's stride needs (a file made for more time upscaling) is used by its
// last rows, as the reference's patch_tgrow_layers does.
func TestLoadGrowPatched(t *testing.T) {
	base := randomTAEHV(3)
	w, _ := base.Float32("decoder.7.conv.weight") // [256,256,1,1], stride 1
	big := make([]float32, 2*len(w))
	for i := range big[:len(w)] {
		big[i] = 5 // must be ignored
	}
	copy(big[len(w):], w)
	o := newOverlay(base)
	o.set("decoder.7.conv.weight", []int{512, 256, 1, 1}, big)
	b := cpu.New()
	m1, err := Load(b, base, Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Load(b, o, Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	x, xs := randLatent(2, 2, 3, 4)
	y1, _, err := m1.Decode(x, xs)
	if err != nil {
		t.Fatal(err)
	}
	y2, _, err := m2.Decode(x, xs)
	if err != nil {
		t.Fatal(err)
	}
	if d := golden.MaxAbs(y1, y2); d != 0 {
		t.Errorf("patched TGrow decodes differently (max abs %g)", d)
	}
}

func randLatent(seed uint64, T, H, W int) ([]float32, []int) {
	r := rand.New(rand.NewPCG(seed, 7))
	shape := []int{16, T, H, W}
	x := make([]float32, tensor.NumElements(shape))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x, shape
}

// TestDecodeShapesAndModes: odd frame sizes and lengths, parallel against
// sequential, on random weights (float32: equal to rounding).
func TestDecodeShapesAndModes(t *testing.T) {
	m, err := Load(cpu.New(), randomTAEHV(5), Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][3]int{{1, 3, 5}, {2, 5, 3}, {4, 2, 7}} {
		x, xs := randLatent(uint64(s[0]*100+s[1]), s[0], s[1], s[2])
		par, ps, err := m.Decode(x, xs)
		if err != nil {
			t.Fatal(err)
		}
		want := []int{3, 4*s[0] - 3, 8 * s[1], 8 * s[2]}
		if !sameInts(ps, want) {
			t.Fatalf("latent %v: video %v, want %v", xs, ps, want)
		}
		var emitted int
		seq, _, err := m.DecodeSequential(x, xs, func(first int, chunk []float32, cs []int) error {
			if first != emitted {
				t.Errorf("chunk at %d, want %d", first, emitted)
			}
			emitted += cs[1]
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if emitted != want[1] {
			t.Errorf("emitted %d frames, want %d", emitted, want[1])
		}
		if d := golden.MaxAbs(par, seq); d > 1e-5 || math.IsNaN(d) {
			t.Errorf("latent %v: parallel vs sequential max abs %g", xs, d)
		}
		for _, v := range par {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("value %v outside [0,1]", v)
			}
		}
	}
	if _, _, err := m.Decode(make([]float32, 10), []int{16, 1, 1, 1}); err == nil {
		t.Error("bad latent length accepted")
	}
	if _, _, err := m.Decode(make([]float32, 8), []int{8, 1, 1, 1}); err == nil {
		t.Error("8-channel latent accepted")
	}
}

func sameInts(a, b []int) bool {
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

func TestFrames(t *testing.T) {
	video := []float32{0, 0.5, 1, -1, 2, float32(math.NaN()), 0.25, 0.75, 1} // [3,1,1,3]
	f, err := Frames(video, []int{3, 1, 1, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 0, 64, 128, 255, 191, 255, 0, 255}
	for i := range want {
		if f[0][i] != want[i] {
			t.Fatalf("frame %v, want %v", f[0], want)
		}
	}
}

func TestCheck(t *testing.T) {
	cfg, enc, err := Check(randomTAEHV(1))
	if err != nil || cfg.LatentChannels != 16 || !enc {
		t.Fatalf("Check: %+v %v %v", cfg, enc, err)
	}
	o := newOverlay(randomTAEHV(1))
	o.set("decoder.14.weight", []int{64, 64, 3, 3}, nil)
	if _, _, err := Check(o); err == nil || !strings.Contains(err.Error(), `"decoder.14.weight": want shape [64 128 3 3], got [64 64 3 3]`) {
		t.Fatalf("got %v", err)
	}
}

// TestDecodeChunks: the chunked delivery gives Decode's frames in chunks
// of 1, 4, 4, ...
func TestDecodeChunks(t *testing.T) {
	m, err := Load(cpu.New(), randomTAEHV(9), Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	x, xs := randLatent(4, 3, 2, 3)
	want, ws, err := m.Decode(x, xs)
	if err != nil {
		t.Fatal(err)
	}
	F, plane := ws[1], ws[2]*ws[3]
	got := make([]float32, len(want))
	var sizes []int
	next := 0
	err = m.DecodeChunks(x, xs, func(first int, chunk []float32, cs []int) error {
		if first != next {
			t.Errorf("chunk at %d, want %d", first, next)
		}
		n := cs[1]
		for c := 0; c < 3; c++ {
			copy(got[(c*F+first)*plane:(c*F+first+n)*plane], chunk[c*n*plane:(c+1)*n*plane])
		}
		sizes = append(sizes, n)
		next += n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sameInts(sizes, []int{1, 4, 4}) {
		t.Errorf("chunk sizes %v, want [1 4 4]", sizes)
	}
	if d := golden.MaxAbs(got, want); d != 0 {
		t.Errorf("chunks differ from Decode by %g", d)
	}
}

// TestEncodeShapes: frame counts that are not multiples of 4 are padded;
// sizes that are not multiples of 8 round up at each stride-2 stage.
func TestEncodeShapes(t *testing.T) {
	m, err := Load(cpu.New(), randomTAEHV(2), Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want []int }{
		{[]int{3, 5, 16, 24}, []int{16, 2, 2, 3}},
		{[]int{3, 4, 20, 9}, []int{16, 1, 3, 2}},
	} {
		v := make([]float32, tensor.NumElements(c.in))
		for i := range v {
			v[i] = float32(i%7) / 7
		}
		_, ls, err := m.Encode(v, c.in)
		if err != nil {
			t.Fatal(err)
		}
		if !sameInts(ls, c.want) {
			t.Errorf("video %v: latent %v, want %v", c.in, ls, c.want)
		}
	}
}
