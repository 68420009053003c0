package pipeline

import (
	"context"
	"image"
	"image/color"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestExpertOrder(t *testing.T) {
	for _, c := range []struct {
		steps    int
		sigma, b float64
		want     string
	}{
		{4, 200, 0.9, "HHLL"}, // s = 0.9950, 0.9338 | 0.8529, 0.6090 (docs/NUMERICS.md §3.9)
		{3, 200, 0.9, "HHL"},
		{2, 200, 0.9, "HH"}, // the low-noise expert is never used
		{1, 200, 0.9, "H"},
		{4, 80, 0.9, "HHLL"},
		{4, 200, 0.94, "HLLL"}, // 0.9338 < 0.94
		{4, 200, 1, "LLLL"},    // s_0 = 0.995 < 1
		{4, 200, -1, "HHHH"},   // never switches
	} {
		order, err := ExpertOrder(c.steps, c.sigma, c.b)
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		for _, x := range order {
			got.WriteString(map[Expert]string{HighNoise: "H", LowNoise: "L"}[x])
		}
		if got.String() != c.want {
			t.Errorf("%d steps, σmax %g, boundary %g: %s, want %s", c.steps, c.sigma, c.b, got.String(), c.want)
		}
	}
	if _, err := ExpertOrder(5, 200, 0.9); err == nil {
		t.Error("5 steps: want an error")
	}
}

func TestBuildCondition(t *testing.T) {
	zs := []int{2, 3, 1, 2} // Z=2, T=3, H=1, W=2
	z := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	y, ys, err := BuildCondition(z, zs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ys) != 4 || ys[0] != 6 || ys[1] != 3 || ys[2] != 1 || ys[3] != 2 || len(y) != 6*6 {
		t.Fatalf("shape %v (%d values), want [6 3 1 2]", ys, len(y))
	}
	for c := 0; c < 6; c++ {
		for f := 0; f < 3; f++ {
			for p := 0; p < 2; p++ {
				got := y[(c*3+f)*2+p]
				var want float32
				switch {
				case c < 4 && f == 0:
					want = 1
				case c < 4:
					want = 0
				default:
					want = z[((c-4)*3+f)*2+p]
				}
				if got != want {
					t.Errorf("y[%d,%d,0,%d] = %v, want %v", c, f, p, got, want)
				}
			}
		}
	}
	if _, _, err := BuildCondition(z, []int{2, 3, 2, 2}); err == nil {
		t.Error("mismatched shape: want an error")
	}
}

// i2vFixture writes the tiny models of an image-to-video run: two random
// I2V experts, a random umT5 of the experts' text width, the golden VAE and
// tokenizer, and a random 50×30 PNG.
type i2vFixture struct {
	dir   string
	files Files
	image string
}

// fixtureTextDim is the text width of the fixture's umT5 and DiTs.
const fixtureTextDim = 64

func newI2VFixture(t *testing.T) i2vFixture {
	t.Helper()
	dir := t.TempDir()
	const textDim = fixtureTextDim
	f := i2vFixture{dir: dir, image: filepath.Join(dir, "in.png")}
	f.files = Files{
		DiTHigh:     filepath.Join(dir, "high.safetensors"),
		DiTLow:      filepath.Join(dir, "low.safetensors"),
		TextEncoder: filepath.Join(dir, TextEncoderFile),
		VAE:         golden.Path(t, "vae.safetensors"),
		Tokenizer:   golden.Path(t, "tokenizer"),
	}
	if err := testmodels.WriteUMT5(f.files.TextEncoder, goldenVocab(t), textDim, 7); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteWanI2V(f.files.DiTHigh, textDim, 1); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteWanI2V(f.files.DiTLow, textDim, 2); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(3))
	img := image.NewNRGBA(image.Rect(0, 0, 50, 30))
	for y := 0; y < 30; y++ {
		for x := 0; x < 50; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(5 * x), uint8(8 * y), uint8(r.Intn(256)), 255})
		}
	}
	writePNG(t, f.image, img)
	return f
}

// t2vFiles is the fixture's files with a random text-to-video DiT (seed 5,
// t2v.safetensors in its folder) that fits its text encoder.
func (f i2vFixture) t2vFiles(t *testing.T) Files {
	t.Helper()
	files := f.files
	files.DiT = filepath.Join(f.dir, "t2v.safetensors")
	if err := testmodels.WriteWanT2V(files.DiT, fixtureTextDim, 5); err != nil {
		t.Fatal(err)
	}
	return files
}

func (f i2vFixture) engine(t *testing.T, keep bool) *Engine {
	t.Helper()
	be := cpu.New()
	eng, err := New(be, be, Options{Files: f.files, DiTOptions: DiTOptions{Attention: backend.Dense}, KeepExperts: keep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// TestI2VEndToEndCPU runs image + prompt → video on tiny models with two
// samples and 4 steps, checks the expert loads and order, and recomputes
// sample 1 independently: the condition built by hand from a VAE encode of
// [resized image, zero frames], both experts loaded directly, the rCM loop
// with the reference's H,H,L,L order and the sample's seed.
func TestI2VEndToEndCPU(t *testing.T) {
	fx := newI2VFixture(t)
	eng := fx.engine(t, false)
	var loads []string
	byCall := map[int]string{} // the event before call k (k = step·samples + sample) comes last for Done = k
	eng.Progress = func(ev Event) {
		switch ev.Stage {
		case "load-dit":
			loads = append(loads, ev.Note)
		case "step":
			byCall[ev.Done] = ev.Note
		}
	}
	req := Request{Prompt: "a red fox in the snow", Image: fx.image, Steps: 4, SigmaMax: 200, Size: Size{64, 32}, Frames: 5, Seed: 11, Samples: 2}
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range res.Timings {
		t.Logf("%-24s %v", tm.Stage, tm.Duration)
	}
	if c := res.Clip; len(c.Frames) != 5 || c.Width != 128 || c.Height != 32 {
		t.Fatalf("clip has %d frames of %dx%d, want 5 of 128x32 (two samples side by side)", len(c.Frames), c.Width, c.Height)
	}
	if len(loads) != 2 || !strings.HasPrefix(loads[0], "high-noise") || !strings.HasPrefix(loads[1], "low-noise") {
		t.Errorf("expert loads %q, want the high-noise then the low-noise expert, once each for both samples", loads)
	}
	var stepNotes []string
	for k := 0; k < 8; k++ {
		stepNotes = append(stepNotes, byCall[k])
	}
	if got := strings.Join(stepNotes, ","); got != "high-noise,high-noise,high-noise,high-noise,low-noise,low-noise,low-noise,low-noise" {
		t.Errorf("experts per (step, sample): %s, want steps 0-1 high and 2-3 low for both samples", got)
	}

	// Independent recomputation of sample 1.
	be := cpu.New()
	img, err := LoadImage(fx.image)
	if err != nil {
		t.Fatal(err)
	}
	small, err := Resize(img, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	pix := ImageTensor(small)
	vf, err := checkpoint.Open(fx.files.VAE)
	if err != nil {
		t.Fatal(err)
	}
	vae, err := wanvae.Load(be, vf, wanvae.Options{DType: tensor.BF16})
	vf.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer vae.Free()
	video := make([]float32, 3*5*32*64)
	for c := 0; c < 3; c++ {
		copy(video[c*5*32*64:], pix[c*32*64:(c+1)*32*64])
	}
	z, zs, err := vae.Encode(video, []int{3, 5, 32, 64})
	if err != nil {
		t.Fatal(err)
	}
	if zs[0] != 16 || zs[1] != 2 || zs[2] != 4 || zs[3] != 8 {
		t.Fatalf("image latent %v, want [16 2 4 8]", zs)
	}
	plane, T := 4*8, 2
	y := make([]float32, 20*T*plane)
	for c := 0; c < 4; c++ {
		for p := 0; p < plane; p++ {
			y[c*T*plane+p] = 1 // mask: latent frame 0 only
		}
	}
	copy(y[4*T*plane:], z)

	ctxRows, err := eng.encodePrompt(req.Prompt)
	if err != nil {
		t.Fatal(err)
	}
	experts := map[string]*wan.Model{}
	texts := map[string]*wan.Text{}
	for name, path := range map[string]string{"H": fx.files.DiTHigh, "L": fx.files.DiTLow} {
		f, err := checkpoint.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := wan.Load(be, f, wan.Options{DType: tensor.BF16, Attention: backend.Dense})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		txt, err := m.EmbedText(ctxRows.rows, ctxRows.length)
		if err != nil {
			t.Fatal(err)
		}
		defer txt.Free()
		experts[name], texts[name] = m, txt
	}
	order := "HHLL"
	n := 16 * T * plane
	want, err := sampler.RCM{Steps: 4, SigmaMax: 200, NetDType: tensor.BF16}.Sample(n, sampler.NewGaussian(req.Seed+1), func(st sampler.Step, x []float32) ([]float32, error) {
		e := order[st.Index : st.Index+1]
		in := append(append([]float32(nil), x...), y...)
		return experts[e].Forward(in, []int{36, T, 4, 8}, st.Timestep, texts[e])
	})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Latents[1]
	if len(got) != n {
		t.Fatalf("latent of sample 1 has %d values, want %d", len(got), n)
	}
	var ref, diff float64
	for i := range want {
		d := float64(got[i] - want[i])
		diff += d * d
		ref += float64(want[i]) * float64(want[i])
	}
	t.Logf("sample 1 vs independent recomputation: squared diff %g (reference energy %g)", diff, ref)
	if diff != 0 || ref == 0 {
		t.Errorf("pipeline latent differs from the independent I2V loop (squared diff %g, reference energy %g)", diff, ref)
	}
	for i := range res.Latents[0] {
		if res.Latents[0][i] != res.Latents[1][i] {
			return // samples differ, as their seeds do
		}
	}
	t.Error("both samples have the same latent; sample s must use seed+s")
}

// With KeepExperts both experts stay loaded across requests; without it a
// second request reloads them (one resident at a time).
func TestI2VExpertResidency(t *testing.T) {
	fx := newI2VFixture(t)
	for _, keep := range []bool{false, true} {
		eng := fx.engine(t, keep)
		loads := 0
		eng.Progress = func(ev Event) {
			if ev.Stage == "load-dit" {
				loads++
			}
		}
		req := Request{Prompt: "x", Image: fx.image, Steps: 3, SigmaMax: 200, Size: Size{32, 32}, Frames: 1, Seed: 1, Samples: 1}
		for i := 0; i < 2; i++ {
			if _, err := eng.Generate(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		}
		resident := 0
		for _, m := range eng.experts {
			if m != nil {
				resident++
			}
		}
		want, wantRes := 4, 1
		if keep {
			want, wantRes = 2, 2
		}
		if loads != want || resident != wantRes {
			t.Errorf("KeepExperts %v: %d loads over two 3-step requests and %d resident, want %d and %d", keep, loads, resident, want, wantRes)
		}
	}
}

func TestI2VBadInput(t *testing.T) {
	fx := newI2VFixture(t)
	base := Request{Prompt: "x", Image: fx.image, Steps: 2, SigmaMax: 200, Size: Size{32, 32}, Frames: 1, Seed: 1, Samples: 1}
	gen := func(files Files, r Request) error {
		be := cpu.New()
		eng, err := New(be, be, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		_, err = eng.Generate(context.Background(), r)
		return err
	}
	expect := func(name string, err error, frags ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: want an error", name)
			return
		}
		for _, f := range frags {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("%s: error %q does not mention %q", name, err, f)
			}
		}
		t.Logf("%s: %v", name, err)
	}

	r := base
	r.Image = filepath.Join(fx.dir, "missing.png")
	expect("missing image", gen(fx.files, r), r.Image)

	bad := filepath.Join(fx.dir, "bad.jpg")
	os.WriteFile(bad, []byte("\xff\xd8\xff garbage"), 0o644)
	r.Image = bad
	expect("unreadable image", gen(fx.files, r), bad)

	t2v := filepath.Join(fx.dir, "t2v.safetensors")
	if err := testmodels.WriteWanT2V(t2v, 64, 5); err != nil {
		t.Fatal(err)
	}
	files := fx.files
	files.DiTLow = t2v
	expect("T2V checkpoint as the low-noise expert", gen(files, base), t2v, "low-noise", "t2v", "16 input channels", "36")
	files = fx.files
	files.DiTHigh = golden.Path(t, "dit_weights.pth")
	expect("golden T2V DiT as the high-noise expert", gen(files, base), "dit_weights.pth", "high-noise", "t2v")
	files.DiTHigh = fx.files.VAE
	expect("VAE as an expert", gen(files, base), "VAE")

	files = fx.files
	files.DiTHigh, files.DiTLow = "", ""
	expect("no experts", gen(files, base), "--dit-high")

	r = base
	r.Sampler = "unipc"
	r.Steps = 10
	expect("unipc with an image", gen(fx.files, r), "rCM")
	r = base
	r.Boundary = 1.5
	expect("boundary above 1", gen(fx.files, r), "boundary 1.5", "at most 1")
	r = base
	r.Image = ""
	r.AdaptiveResolution = true
	expect("adaptive resolution without image", gen(fx.files, r), "adaptive_resolution", "image")
	r = base
	r.Image = ""
	expect("text-to-video on an I2V engine", gen(fx.files, r), "image")
}

func TestAdaptiveResolutionRequest(t *testing.T) {
	fx := newI2VFixture(t) // image 50×30
	eng := fx.engine(t, false)
	req := Request{Prompt: "x", Image: fx.image, Steps: 1, SigmaMax: 200, Size: Size{48, 48}, Frames: 1, Seed: 1, Samples: 1, AdaptiveResolution: true}
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// Area 2304, r = 0.6: w = round(√3840/16)·16 = round(3.87)·16 = 64, h = round(√1382.4/16)·16 = round(2.32)·16 = 32.
	if c := res.Clip; c.Width != 64 || c.Height != 32 {
		t.Errorf("adaptive clip %dx%d, want 64x32", c.Width, c.Height)
	}
}

func TestFindI2VModels(t *testing.T) {
	dir := t.TempDir()
	_, err := FindI2VModels(dir, "", Files{})
	if err == nil {
		t.Fatal("empty folder: want an error")
	}
	for _, want := range []string{"TurboWan2.2-I2V-A14B-high-720P.pth", "TurboWan2.2-I2V-A14B-low-720P-quant.pth", "huggingface.co/TurboDiffusion/TurboWan2.2-I2V-A14B-720P", VAEFile, TextEncoderFile} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	for _, name := range []string{"TurboWan2.2-I2V-A14B-high-720P.pth", "TurboWan2.2-I2V-A14B-high-720P-quant.pth", "TurboWan2.2-I2V-A14B-low-720P-quant.pth", VAEFile, TextEncoderFile, "google/umt5-xxl/spiece.model"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	files, err := FindI2VModels(dir, "", Files{})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(files.DiTHigh) != "TurboWan2.2-I2V-A14B-high-720P.pth" || filepath.Base(files.DiTLow) != "TurboWan2.2-I2V-A14B-low-720P-quant.pth" {
		t.Errorf("experts %s, %s: want the plain high file (preferred) and the quant low file", files.DiTHigh, files.DiTLow)
	}
	if _, err := FindI2VModels(dir, "TurboWan9-I2V", Files{}); err == nil || !strings.Contains(err.Error(), "TurboWan2.2-I2V-A14B-720P") {
		t.Errorf("unknown variant: %v, want an error listing the known one", err)
	}
	if _, err := FindI2VModels(dir, "", Files{DiTLow: filepath.Join(dir, "gone.pth")}); err == nil || !strings.Contains(err.Error(), "gone.pth") {
		t.Errorf("missing explicit expert: %v", err)
	}
	if got := ExpertFile("TurboWan2.2-I2V-A14B-720P", "low"); got != "TurboWan2.2-I2V-A14B-low-720P" {
		t.Errorf("ExpertFile = %s", got)
	}
}
