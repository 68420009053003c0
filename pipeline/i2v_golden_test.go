package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The image-to-video section of the conformance set (README "Image to
// video"): the official wan2.2_i2v_infer.py run on two tiny experts, the
// tiny VAE, i2v_input.png and a recorded text context. Every run, size,
// frame count, step count, σmax, boundary, dtype, attention and top-k is
// read from manifest.json (configs.i2v, observed.i2v) and the tensor
// shapes, so the tests run unchanged on another set of the same layout.
// The file names are the layout's.
const (
	i2vRefFile   = "i2v.safetensors"
	i2vImageFile = "i2v_input.png"
	i2vHighFile  = "i2v_high.pth"
	i2vLowFile   = "i2v_low.pth"
	i2vVAEFile   = "vae.safetensors"
)

// Tolerances of the set (README "Suggested tolerances", manifest
// recommended_tolerances): float32 1e-4; bf16 DiT tensors and anything
// downstream of SLA 2e-2; the bf16 VAE path 5e-2 — the reference encodes
// and decodes through its bf16 VAE interface even in the float32 run, so
// the encoded latents and decoded frames get that bound in every run.
const (
	i2vTolF32  = 1e-4
	i2vTolBF16 = 2e-2
	i2vTolVAE  = 5e-2
)

// i2vRun is one run of configs.i2v.
type i2vRun struct {
	name     string
	dtype    tensor.DType
	attn     backend.AttentionKind
	topk     float64
	norm     backend.NormMode
	adaptive bool
	ode      bool // --ode: deterministic update, no noise after the initial draw
	steps    int
	frames   int
	sigmaMax float64
	boundary float64
	base     Size     // the table entry the run's --resolution/--aspect_ratio name
	sizeWH   Size     // observed.i2v.<run>.size_wh: the size the reference used
	experts  []Expert // observed.i2v.<run>.experts_per_step
	tol      float64  // DiT outputs and the sampling loop
}

// request is the run as a pipeline request (the prompt is never encoded:
// the tests hand the recorded context to the experts).
func (r i2vRun) request(t testing.TB) Request {
	return Request{Prompt: "oracle", Image: golden.Path(t, i2vImageFile), Steps: r.steps, SigmaMax: r.sigmaMax, ODE: r.ode,
		Boundary: r.boundary, Size: r.base, Frames: r.frames, Samples: 1, AdaptiveResolution: r.adaptive}
}

// i2vArgv reads a flag's value from configs.i2v.<run>.argv.
func i2vArgv(t testing.TB, m golden.Manifest, run, flag string) string {
	t.Helper()
	v, _ := m.Lookup("configs", "i2v", run, "argv")
	argv, _ := v.([]any)
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			return fmt.Sprint(argv[i+1])
		}
	}
	t.Fatalf("manifest configs.i2v.%s.argv has no %s", run, flag)
	return ""
}

// i2vArgvHas reports whether configs.i2v.<run>.argv holds flag.
func i2vArgvHas(m golden.Manifest, run, flag string) bool {
	v, _ := m.Lookup("configs", "i2v", run, "argv")
	argv, _ := v.([]any)
	return slices.Contains(argv, any(flag))
}

func i2vArgvNumber(t testing.TB, m golden.Manifest, run, flag string) float64 {
	t.Helper()
	var f float64
	s := i2vArgv(t, m, run, flag)
	if _, err := fmt.Sscan(s, &f); err != nil {
		t.Fatalf("manifest configs.i2v.%s.argv: %s %q is not a number", run, flag, s)
	}
	return f
}

// i2vRuns reads every run of configs.i2v.
func i2vRuns(t testing.TB) []i2vRun {
	t.Helper()
	m := golden.LoadManifest(t)
	var runs []i2vRun
	for _, name := range m.Keys(t, "configs", "i2v") {
		c := func(k ...string) []string { return append([]string{"configs", "i2v", name}, k...) }
		r := i2vRun{name: name, steps: m.Int(t, c("steps")...), sigmaMax: m.Number(t, c("sigma_max")...),
			boundary: m.Number(t, c("boundary")...), frames: int(i2vArgvNumber(t, m, name, "--num_frames"))}
		rn := m.RunNumerics(t, "i2v", name)
		r.dtype, r.attn, r.norm = rn.DType, rn.Attention, rn.Norm
		r.topk = i2vArgvNumber(t, m, name, "--sla_topk")
		v, _ := m.Lookup(c("adaptive_resolution")...)
		adaptive, ok := v.(bool)
		if !ok {
			t.Fatalf("manifest configs.i2v.%s.adaptive_resolution: want a boolean", name)
		}
		r.adaptive = adaptive
		r.ode = i2vArgvHas(m, name, "--ode")
		// The base size of the run's --resolution/--aspect_ratio entry
		// (base_size_wh_for_resolution_<res>_<aspect>).
		for _, k := range m.Keys(t, c()...) {
			if strings.HasPrefix(k, "base_size_wh") {
				wh := m.Ints(t, c(k)...)
				if len(wh) != 2 {
					t.Fatalf("manifest configs.i2v.%s.%s = %v: want [w, h]", name, k, wh)
				}
				r.base = Size{wh[0], wh[1]}
			}
		}
		if r.base == (Size{}) {
			t.Fatalf("manifest configs.i2v.%s: no base_size_wh_* entry", name)
		}
		wh := m.Ints(t, "observed", "i2v", name, "size_wh")
		r.sizeWH = Size{wh[0], wh[1]}
		ev, _ := m.Lookup("observed", "i2v", name, "experts_per_step")
		list, _ := ev.([]any)
		for _, x := range list {
			switch x {
			case "high":
				r.experts = append(r.experts, HighNoise)
			case "low":
				r.experts = append(r.experts, LowNoise)
			default:
				t.Fatalf("manifest observed.i2v.%s.experts_per_step: %v, want high or low", name, x)
			}
		}
		if len(r.experts) != r.steps {
			t.Fatalf("manifest observed.i2v.%s.experts_per_step has %d entries for %d steps", name, len(r.experts), r.steps)
		}
		r.tol = i2vTolF32
		if r.dtype != tensor.F32 || r.attn != backend.Dense {
			r.tol = i2vTolBF16
		}
		runs = append(runs, r)
	}
	if len(runs) == 0 {
		t.Fatal("manifest configs.i2v lists no runs")
	}
	return runs
}

// i2vEngine is the engine of one run on backend be: the set's experts
// (both kept loaded) and VAE; no text encoder (the context is recorded).
func i2vEngine(t testing.TB, be backend.Core, r i2vRun) *Engine {
	t.Helper()
	files := Files{DiTHigh: golden.Path(t, i2vHighFile), DiTLow: golden.Path(t, i2vLowFile), VAE: golden.Path(t, i2vVAEFile)}
	eng, err := New(be, cpu.New(), Options{Files: files, DiTOptions: DiTOptions{DType: r.dtype, Attention: r.attn, TopK: r.topk, Norm: r.norm}, KeepExperts: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// i2vRef reads the run's tensors.
type i2vRef struct {
	f    checkpoint.File
	run  string
	t    testing.TB
	text *textContext
}

func openI2VRef(t testing.TB, run string) *i2vRef {
	f := golden.Open(t, i2vRefFile)
	txt, ts := golden.Tensor(t, f, "text_valid")
	if len(ts) != 3 || ts[0] != 1 {
		t.Fatalf("text_valid: shape %v, want [1, rows, text_dim]", ts)
	}
	return &i2vRef{f: f, run: run, t: t, text: &textContext{rows: txt, length: ts[1]}}
}

// get reads <run>.<name>, dropping the batch of one.
func (r *i2vRef) get(name string) ([]float32, []int) {
	r.t.Helper()
	v, s := golden.Tensor(r.t, r.f, r.run+"."+name)
	if len(s) < 2 || s[0] != 1 {
		r.t.Fatalf("%s.%s: shape %v, want a batch of one", r.run, name, s)
	}
	return v, s[1:]
}

// latentShape is the run's latent [16, T, H/8, W/8] from the recorded
// initial noise.
func (r *i2vRef) latentShape() [4]int {
	_, s := r.get("init_noise")
	if len(s) != 4 {
		r.t.Fatalf("%s.init_noise: shape %v, want [1, C, T, H, W]", r.run, s)
	}
	return [4]int{s[0], s[1], s[2], s[3]}
}

// noise is the run's recorded generator draws in the order the loop makes
// them: the initial latent, then one per step (none with --ode).
func (r *i2vRef) noise(steps int, ode bool) *sampler.Recorded {
	init, _ := r.get("init_noise")
	rec := &sampler.Recorded{Draws: [][]float32{init}}
	for i := 0; i < steps && !ode; i++ {
		d, _ := r.get(fmt.Sprintf("step.%d.noise", i))
		rec.Draws = append(rec.Draws, d)
	}
	return rec
}

// roundTo rounds to the network dtype, as the reference's .to(dtype).
func roundTo(v []float32, dt tensor.DType) []float32 {
	out := slices.Clone(v)
	if dt == tensor.BF16 {
		for i := range out {
			out[i] = tensor.RoundBF16(out[i])
		}
	}
	return out
}

// TestGoldenI2VImage: the PNG decodes to the reference's uint8 pixels; the
// target size (fixed or adaptive) is the reference's; the resized,
// normalised first frame equals image_tensor.
func TestGoldenI2VImage(t *testing.T) {
	ref := golden.Open(t, i2vRefFile)
	u8, us := golden.Tensor(t, ref, "input_image_u8") // [h0, w0, 3]
	for _, r := range i2vRuns(t) {
		t.Run(r.name, func(t *testing.T) {
			req := r.request(t)
			img, err := LoadImage(req.Image)
			if err != nil {
				t.Fatal(err)
			}
			if len(us) != 3 || img.H != us[0] || img.W != us[1] || us[2] != 3 {
				t.Fatalf("decoded %dx%d (WxH), reference input_image_u8 %v", img.W, img.H, us)
			}
			bad := 0
			for i, v := range img.Pix {
				if float32(v) != u8[i] {
					bad++
				}
			}
			t.Logf("PNG decode: %d of %d values differ from input_image_u8", bad, len(u8))
			if bad != 0 {
				t.Errorf("PNG decode differs from the reference's in %d values", bad)
			}

			size, pix, err := prepareImage(req, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			want, ws := golden.Tensor(t, ref, r.name+".image_tensor") // [1, 3, h, w]
			t.Logf("target size %dx%d (base %dx%d, adaptive %v); reference size_wh %dx%d, image_tensor %v",
				size.W, size.H, r.base.W, r.base.H, r.adaptive, r.sizeWH.W, r.sizeWH.H, ws)
			if size != r.sizeWH || len(ws) != 4 || ws[2] != size.H || ws[3] != size.W {
				t.Fatalf("target size %dx%d, reference %dx%d (image_tensor %v)", size.W, size.H, r.sizeWH.W, r.sizeWH.H, ws)
			}
			// Values are k/255 mapped to [−1, 1]: a resize that is off by
			// one level shows as 2/255.
			differ := 0
			for i := range want {
				if pix[i] != want[i] {
					differ++
				}
			}
			golden.Compare(t, "image_tensor", pix, want, i2vTolF32)
			t.Logf("image_tensor: %d of %d values differ (max abs %.3g = %.2f levels)", differ, len(want), golden.MaxAbs(pix, want), golden.MaxAbs(pix, want)*255/2)
			if differ != 0 {
				t.Errorf("image_tensor differs from the reference's in %d values", differ)
			}
		})
	}
}

// TestGoldenI2VCondition: y built from the reference's own latents equals
// the recorded y exactly (mask channels first, 1 in latent frame 0 only,
// then the latents, in the model dtype), and the network input is [x, y]
// in that order. The VAE encode itself is checked end to end
// (TestGoldenI2VEndToEnd).
func TestGoldenI2VCondition(t *testing.T) {
	for _, r := range i2vRuns(t) {
		t.Run(r.name, func(t *testing.T) {
			ref := openI2VRef(t, r.name)
			lat := ref.latentShape()
			_, is := ref.get("image_tensor")
			zRef, zs := ref.get("encoded_latents")
			yRef, ys := ref.get("y")
			size := Size{is[2], is[1]}
			if got, err := LatentShape(r.frames, size); err != nil || got != lat {
				t.Fatalf("latent shape %v (%v) for %d frames at %dx%d; the reference's noise is %v", got, err, r.frames, size.W, size.H, lat)
			}
			y, gys, err := BuildCondition(zRef, zs)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(gys, ys) {
				t.Fatalf("y shape %v, reference %v", gys, ys)
			}
			y = roundTo(y, r.dtype)
			golden.Compare(t, "y from the reference's latents", y, yRef, 0)
			if d := golden.MaxAbs(y, yRef); d != 0 {
				t.Errorf("y differs from the reference (max abs %g)", d)
			}
			x, _ := ref.get("step.0.net_input")
			in := netInput(nil, x, yRef)
			if len(in) != len(x)+len(yRef) || !slices.Equal(in[:len(x)], x) || !slices.Equal(in[len(x):], yRef) {
				t.Errorf("network input is not [x (%d ch), y (%d ch)]", lat[0], ys[0])
			}
		})
	}
}

// TestGoldenI2VExperts: the expert of each step and its timestep are the
// reference's.
func TestGoldenI2VExperts(t *testing.T) {
	for _, r := range i2vRuns(t) {
		t.Run(r.name, func(t *testing.T) {
			order, err := ExpertOrder(r.steps, r.sigmaMax, r.boundary)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("experts %v, reference %v", order, r.experts)
			if !slices.Equal(order, r.experts) {
				t.Errorf("experts per step %v, reference %v", order, r.experts)
			}
			ref := openI2VRef(t, r.name)
			s, err := sampler.RCMTimes(r.steps, r.sigmaMax)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < r.steps; i++ {
				ts, _ := ref.get(fmt.Sprintf("step.%d.net_timestep", i))
				if got := sampler.RCMTimestep(s[i], r.dtype); len(ts) != 1 || got != ts[0] {
					t.Errorf("step %d: timestep %v, reference %v", i, got, ts)
				}
			}
		})
	}
}

// TestGoldenI2VVelocity: each step's velocity from the recorded network
// input and y, through the pipeline's expert loading and input layout.
func TestGoldenI2VVelocity(t *testing.T) {
	for _, r := range i2vRuns(t) {
		t.Run(r.name, func(t *testing.T) { testI2VVelocity(t, cpu.New(), r) })
	}
}

func testI2VVelocity(t *testing.T, be backend.Core, r i2vRun) {
	ref := openI2VRef(t, r.name)
	lat := ref.latentShape()
	y, _ := ref.get("y")
	eng := i2vEngine(t, be, r)
	if _, err := eng.checkExperts(); err != nil {
		t.Fatal(err)
	}
	for i, x16 := range r.experts {
		m, _, err := eng.useExpert(x16, nil)
		if err != nil {
			t.Fatal(err)
		}
		txt, err := m.EmbedText(ref.text.rows, ref.text.length)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := ref.get(fmt.Sprintf("step.%d.net_input", i))
		ts, _ := ref.get(fmt.Sprintf("step.%d.net_timestep", i))
		v, err := m.Forward(netInput(nil, x, y), []int{m.Config.InDim, lat[1], lat[2], lat[3]}, ts[0], txt)
		txt.Free()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ref.get(fmt.Sprintf("step.%d.v_pred", i))
		golden.Compare(t, fmt.Sprintf("step %d (%s) v_pred (%s)", i, x16, be.Name()), v, want, r.tol)
	}
}

// TestGoldenI2VLoop runs the pipeline's sampling loop (expert switch,
// lockstep, input layout, rCM update) with the recorded noise, context and
// y against final_latent at the run's bound.
func TestGoldenI2VLoop(t *testing.T) {
	for _, r := range i2vRuns(t) {
		t.Run(r.name, func(t *testing.T) { testI2VLoop(t, cpu.New(), r) })
	}
}

// TestGoldenI2VEndToEnd runs the whole path from the image file with the
// recorded noise and context: target size and image tensor, the
// pipeline's VAE encode of [image, F−1 zero frames] against
// encoded_latents, the loop on that condition against final_latent, and
// the decoded first and last frames against video_first_last, all at the
// bf16 VAE bound (the VAE runs in bf16, as the reference's interface).
//
// The runs go in parallel: the CPU VAE keeps only about one core busy.
func TestGoldenI2VEndToEnd(t *testing.T) {
	for _, r := range i2vRuns(t) {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			testI2VEndToEnd(t, cpu.New(), r)
		})
	}
}

// i2vSample runs the engine's sampling loop for one sample on condition y
// with the run's recorded noise and context, and returns the final latent
// and the expert each step used (from the progress events).
func i2vSample(t *testing.T, eng *Engine, ref *i2vRef, r i2vRun, lat [4]int, y []float32) ([]float32, []Expert) {
	t.Helper()
	eng.noise = func(uint64) sampler.Noise { return ref.noise(r.steps, r.ode) }
	byCall := map[int]string{} // the last "step" event with Done = k announces call k
	eng.Progress = func(ev Event) {
		if ev.Stage == "step" {
			byCall[ev.Done] = ev.Note
		}
	}
	defer func() { eng.Progress, eng.noise = nil, nil }()
	out, err := eng.sampleI2V(context.Background(), r.request(t), lat, y, ref.text, &Result{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var experts []Expert
	for k := 0; k < r.steps; k++ {
		x, ok := map[string]Expert{HighNoise.String(): HighNoise, LowNoise.String(): LowNoise}[byCall[k]]
		if !ok {
			t.Fatalf("step %d: progress names expert %q", k, byCall[k])
		}
		experts = append(experts, x)
	}
	return out[0], experts
}

// checkI2VExperts reads the experts' headers as generate does and checks
// the width they take against the recorded latent.
func checkI2VExperts(t *testing.T, eng *Engine, lat [4]int) {
	t.Helper()
	inDim, err := eng.checkExperts()
	if err != nil {
		t.Fatal(err)
	}
	if inDim != 2*lat[0]+maskChannels {
		t.Fatalf("experts take %d channels, want %d", inDim, 2*lat[0]+maskChannels)
	}
}

func testI2VLoop(t *testing.T, be backend.Core, r i2vRun) {
	ref := openI2VRef(t, r.name)
	lat := ref.latentShape()
	yRef, _ := ref.get("y")
	final, _ := ref.get("final_latent")
	eng := i2vEngine(t, be, r)
	checkI2VExperts(t, eng, lat)
	got, experts := i2vSample(t, eng, ref, r, lat, yRef)
	if !slices.Equal(experts, r.experts) {
		t.Errorf("experts per step %v, reference %v", experts, r.experts)
	}
	golden.Compare(t, "final_latent from the recorded y ("+be.Name()+")", got, final, r.tol)
}

func testI2VEndToEnd(t *testing.T, be backend.Core, r i2vRun) {
	ref := openI2VRef(t, r.name)
	lat := ref.latentShape()
	eng := i2vEngine(t, be, r)
	checkI2VExperts(t, eng, lat)

	size, pix, err := prepareImage(r.request(t), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	img, is := ref.get("image_tensor")
	if size != r.sizeWH || is[1] != size.H || is[2] != size.W {
		t.Fatalf("target size %dx%d, reference %dx%d", size.W, size.H, r.sizeWH.W, r.sizeWH.H)
	}
	golden.Compare(t, "image_tensor", pix, img, i2vTolF32)

	if err := eng.loadVAE(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	y, ys, err := eng.encodeCondition(pix, size, r.frames)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VAE encode of %d frames at %dx%d: %v", r.frames, size.W, size.H, time.Since(t0).Round(time.Millisecond))
	yRef, yrs := ref.get("y")
	zRef, _ := ref.get("encoded_latents")
	if !slices.Equal(ys, yrs) {
		t.Fatalf("condition shape %v, reference %v", ys, yrs)
	}
	mask := maskChannels * ys[1] * ys[2] * ys[3]
	if !slices.Equal(y[:mask], yRef[:mask]) {
		t.Error("mask channels differ from the reference's")
	}
	golden.Compare(t, "encoded_latents ("+be.Name()+")", y[mask:], zRef, i2vTolVAE)
	golden.Compare(t, "y ("+be.Name()+")", roundTo(y, r.dtype), yRef, i2vTolVAE)

	t0 = time.Now()
	got, experts := i2vSample(t, eng, ref, r, lat, y)
	if !slices.Equal(experts, r.experts) {
		t.Errorf("experts per step %v, reference %v", experts, r.experts)
	}
	t.Logf("%d steps: %v", r.steps, time.Since(t0).Round(time.Millisecond))
	final, _ := ref.get("final_latent")
	golden.Compare(t, "final_latent end to end ("+be.Name()+")", got, final, i2vTolVAE)

	want, ws := ref.get("video_first_last") // [3, 2, h, w]
	t0 = time.Now()
	video, vs, err := eng.decoder.Decode(got, []int{lat[0], lat[1], lat[2], lat[3]})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VAE decode: %v", time.Since(t0).Round(time.Millisecond))
	if len(ws) != 4 || ws[1] != 2 || vs[0] != ws[0] || vs[2] != ws[2] || vs[3] != ws[3] || vs[1] != r.frames {
		t.Fatalf("decoded video %v, reference first/last %v for %d frames", vs, ws, r.frames)
	}
	plane := vs[2] * vs[3]
	firstLast := make([]float32, 0, len(want))
	for c := 0; c < 3; c++ {
		for _, f := range []int{0, vs[1] - 1} {
			firstLast = append(firstLast, video[(c*vs[1]+f)*plane:(c*vs[1]+f+1)*plane]...)
		}
	}
	golden.Compare(t, "video_first_last end to end ("+be.Name()+")", firstLast, want, i2vTolVAE)
}
