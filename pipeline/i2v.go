package pipeline

// Image-to-video with Wan2.2-I2V-A14B as TurboDiffusion runs it
// (docs/NUMERICS.md §2, §3.9, §10; TD inference/wan2.2_i2v_infer.py):
// the image is resized and VAE-encoded with F−1 zero frames behind it, the
// condition y = [mask (4 ch), image latent (16 ch)] is concatenated to the
// noisy latent on channels for every DiT call (16+20 = 36), and two experts
// share the rCM loop: the high-noise one until the first step whose RF time
// falls below the boundary, the low-noise one from then on.
//
// Memory: one 14B expert is ≈28 GB in bf16 (≈15 GB int8), so by default
// only one expert is resident: the high-noise expert is freed before the
// low-noise one loads (TD instead parks the idle expert in host memory).
// All samples of a request run their steps in lockstep, so each expert is
// loaded at most once per request whatever the sample count.
// Options.KeepExperts keeps both loaded (no reloads between requests).

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
)

// DefaultBoundary is TD's --boundary: the RF time below which the
// low-noise expert takes over.
const DefaultBoundary = 0.9

// I2V defaults of the reference script that differ from text-to-video.
const (
	DefaultI2VSigmaMax   = 200
	DefaultI2VResolution = "720p"
)

// maskChannels is the width of the first-frame mask in the condition.
const maskChannels = 4

// Expert names one of the two Wan2.2 I2V experts.
type Expert int

const (
	HighNoise Expert = iota
	LowNoise
)

// short is "high" or "low".
func (x Expert) short() string {
	if x == LowNoise {
		return "low"
	}
	return "high"
}

func (x Expert) String() string {
	if x == LowNoise {
		return "low-noise"
	}
	return "high-noise"
}

// ExpertOrder is the expert each rCM step uses (docs/NUMERICS.md §3.9): start
// with the high-noise expert and switch once, before the first step whose
// RF time s_i is below boundary. With σmax 200: 4 steps → H,H,L,L;
// 3 → H,H,L; 2 → H,H.
func ExpertOrder(steps int, sigmaMax, boundary float64) ([]Expert, error) {
	s, err := sampler.RCMTimes(steps, sigmaMax)
	if err != nil {
		return nil, err
	}
	sw := switcher{boundary: boundary}
	out := make([]Expert, steps)
	for i := range out {
		out[i] = sw.pick(s[i])
	}
	return out, nil
}

// switcher applies the reference's one-way switch rule.
type switcher struct {
	boundary float64
	switched bool
}

func (w *switcher) pick(t float64) Expert {
	if !w.switched && t < w.boundary {
		w.switched = true
	}
	if w.switched {
		return LowNoise
	}
	return HighNoise
}

// boundary returns the request's switch boundary (0 selects the default).
func (r *Request) boundary() float64 {
	if r.Boundary == 0 {
		return DefaultBoundary
	}
	return r.Boundary
}

// validateI2V checks the image-to-video parts of a request.
func (r *Request) validateI2V() error {
	if r.Image == "" {
		if r.AdaptiveResolution {
			return fieldErr(FieldAdaptive, CodeConflict, nil, "needs an input image")
		}
		return nil
	}
	if r.Sampler != "" && r.Sampler != "rcm" {
		return fieldErr(FieldSampler, CodeConflict, r.Sampler, "image-to-video runs the rCM sampler only (as TurboDiffusion does)")
	}
	if b := r.Boundary; b > 1 || b != b {
		return fieldErr(FieldBoundary, CodeRange, b, "must be at most 1 (RF time; 0.9 is the reference's)")
	}
	return nil
}

// i2vInDim is the DiT input width the condition needs for a VAE latent of
// zDim channels: noisy latent + mask + image latent.
func i2vInDim(zDim int) int { return zDim + maskChannels + zDim }

// checkExperts reads the headers of both experts and the VAE (no weights)
// so a wrong or mismatched file fails before any heavy work
// (CheckI2VFiles), and returns the experts' input width.
func (e *Engine) checkExperts() (inDim int, err error) {
	if e.opt.DiTHigh == "" || e.opt.DiTLow == "" {
		return 0, fmt.Errorf("image-to-video needs the high- and low-noise experts (--dit-high and --dit-low, or the %s files in the models folder)", DefaultI2VVariant)
	}
	if e.opt.VAE == "" {
		return 0, fmt.Errorf("image-to-video needs the VAE (--vae, or %s in the models folder)", VAEFile)
	}
	c, err := CheckI2VFiles(e.opt.OpenCheckpoint, e.opt.DiTHigh, e.opt.DiTLow, e.opt.VAE)
	if err != nil {
		return 0, err
	}
	return c.InDim, nil
}

func (e *Engine) expertPath(x Expert) string {
	if x == LowNoise {
		return e.opt.DiTLow
	}
	return e.opt.DiTHigh
}

// useExpert returns expert x, loading it if needed (loaded says so);
// unless KeepExperts, the other expert (and its embedded text, via drop) is
// freed first.
func (e *Engine) useExpert(x Expert, drop func(*wan.Model)) (m *wan.Model, loaded bool, err error) {
	if m := e.experts[x]; m != nil {
		return m, false, nil
	}
	if !e.opt.KeepExperts {
		for i, m := range e.experts {
			if m != nil {
				drop(m)
				m.Free()
				e.experts[i] = nil
			}
		}
	}
	path := e.expertPath(x)
	e.report(Event{Stage: "load-dit", Note: fmt.Sprintf("%s expert %s", x, filepath.Base(path))})
	f, err := e.opt.OpenCheckpoint(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	m, err = wan.Load(e.dit, f, e.ditOptions())
	if err != nil {
		return nil, false, fmt.Errorf("%s expert: %w", x, err)
	}
	e.loraNotes(m, x.String()+" expert")
	if c := m.Config; c.Type != wan.I2V {
		m.Free()
		return nil, false, fmt.Errorf("%s (the %s expert) is not an image-to-video DiT", path, x)
	}
	e.experts[x] = m
	return m, true, nil
}

// freeExperts frees every loaded expert.
func (e *Engine) freeExperts() {
	for i, m := range e.experts {
		if m != nil {
			m.Free()
			e.experts[i] = nil
		}
	}
}

// BuildCondition is the reference's y = cat(mask, z): mask [4, T, H, W]
// is 1 in latent frame 0 and 0 elsewhere, z [Z, T, H, W] is the VAE latent
// of [image, zero frames]. The result is [4+Z, T, H, W].
func BuildCondition(z []float32, zshape []int) ([]float32, []int, error) {
	if len(zshape) != 4 || len(z) != zshape[0]*zshape[1]*zshape[2]*zshape[3] {
		return nil, nil, fmt.Errorf("condition: latent of %d values does not have shape %v", len(z), zshape)
	}
	plane := zshape[2] * zshape[3]
	frame := zshape[1] * plane
	y := make([]float32, maskChannels*frame+len(z))
	for c := 0; c < maskChannels; c++ {
		for i := 0; i < plane; i++ {
			y[c*frame+i] = 1
		}
	}
	copy(y[maskChannels*frame:], z)
	return y, []int{maskChannels + zshape[0], zshape[1], zshape[2], zshape[3]}, nil
}

// prepareImage loads the request's image and turns it into the encoder's
// first frame [3, H, W] in [−1, 1] at the target size: r.Size, or with
// AdaptiveResolution the size of AdaptiveSize(r.Size, image).
func prepareImage(r Request, lim Limits) (Size, []float32, error) {
	img, err := loadImage(r.Image, lim)
	if err != nil {
		return Size{}, nil, err
	}
	size := r.Size
	if r.AdaptiveResolution {
		if size, err = AdaptiveSize(r.Size, img.W, img.H); err != nil {
			return Size{}, nil, err
		}
	}
	if _, err := LatentShape(r.Frames, size); err != nil {
		return Size{}, nil, err
	}
	rs, err := Resize(img, size.W, size.H)
	if err != nil {
		return Size{}, nil, err
	}
	return size, ImageTensor(rs), nil
}

// netInput is the expert's input for a noisy latent x: the reference's
// torch.cat([x, y], dim=1), i.e. x's channels then the condition's, in dst
// (reused when it has the right length).
func netInput(dst, x, y []float32) []float32 {
	if len(dst) != len(x)+len(y) {
		dst = make([]float32, len(x)+len(y))
		copy(dst[len(x):], y)
	}
	copy(dst, x)
	return dst
}

// encodeCondition VAE-encodes [image, frames−1 zero frames] (image
// [3, H, W] in [−1, 1]) and builds the condition y.
func (e *Engine) encodeCondition(img []float32, size Size, frames int) ([]float32, []int, error) {
	plane := size.W * size.H
	if len(img) != 3*plane {
		return nil, nil, fmt.Errorf("condition: image has %d values, want 3×%d×%d", len(img), size.H, size.W)
	}
	// The whole clip is materialised (≈0.9 GB float32 at 720p × 81 frames)
	// because the VAE encoder takes the video in one piece.
	video := make([]float32, 3*frames*plane)
	for c := 0; c < 3; c++ {
		copy(video[c*frames*plane:], img[c*plane:(c+1)*plane])
	}
	z, zs, err := e.decoder.Encode(video, []int{3, frames, size.H, size.W})
	if err != nil {
		return nil, nil, err
	}
	return BuildCondition(z, zs)
}

// generateI2V is Generate for a request with an input image.
func (e *Engine) generateI2V(ctx context.Context, r Request) (*Result, error) {
	if r.FPS == 0 {
		r.FPS = 16
	}
	res := &Result{Notes: e.notes}
	stage := func(name string, f func() error) error { return timedStage(ctx, res, name, f) }

	var inDim int
	if err := stage("check experts", func() (err error) {
		inDim, err = e.checkExperts()
		return err
	}); err != nil {
		return nil, err
	}

	// 1. Image → [3, H, W] at the target size.
	var size Size
	var pix []float32
	if err := stage("image", func() (err error) {
		size, pix, err = prepareImage(r, e.opt.Limits)
		return err
	}); err != nil {
		return nil, err
	}
	lat, _ := LatentShape(r.Frames, size)

	// 2. Prompt → umT5 context.
	var ctxRows *textContext
	if err := stage("text", func() error {
		c, err := e.encodePrompt(r.Prompt)
		if err != nil {
			return err
		}
		ctxRows = c
		if !e.opt.KeepTextEncoder && e.enc != nil {
			e.enc.Close()
			e.enc = nil
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// 3. Condition y = [mask, VAE(image, zeros)].
	var y []float32
	if err := stage("load VAE", e.loadVAE); err != nil {
		return nil, err
	}
	if err := stage("encode image", func() error {
		e.report(Event{Stage: "encode image", Note: fmt.Sprintf("%dx%d, %d frames", size.W, size.H, r.Frames)})
		var ys []int
		var err error
		y, ys, err = e.encodeCondition(pix, size, r.Frames)
		if err != nil {
			return err
		}
		if lat[0]+ys[0] != inDim || ys[1] != lat[1] || ys[2] != lat[2] || ys[3] != lat[3] {
			return fmt.Errorf("condition: the VAE gives y %v for a latent %v; the experts take %d input channels (latent + y)", ys, lat, inDim)
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// 4. rCM with the expert switch, all samples in lockstep.
	var prev *previewer
	if r.OnPreview != nil {
		if err := stage("preview setup", func() (err error) {
			prev, err = e.newPreviewer(r, lat[:])
			return err
		}); err != nil {
			return nil, err
		}
	}
	latents, err := e.sampleI2V(ctx, r, lat, y, ctxRows, res, prev)
	if err != nil {
		return nil, err
	}
	res.Latents = latents

	// 5. VAE decode → frames.
	if e.opt.ReleaseDiT {
		e.freeExperts()
	}
	if err := e.decodeLatents(res, lat, r.FPS, stage); err != nil {
		return nil, err
	}
	return res, nil
}

// sampleI2V runs one rCM loop per sample, serving every network call with
// the expert its step uses.
func (e *Engine) sampleI2V(ctx context.Context, r Request, lat [4]int, y []float32, txtRows *textContext, res *Result, prev *previewer) ([][]float32, error) {
	n := lat[0] * lat[1] * lat[2] * lat[3]
	texts := map[*wan.Model]*wan.Text{}
	drop := func(m *wan.Model) {
		if t := texts[m]; t != nil {
			t.Free()
			delete(texts, m)
		}
	}
	defer func() {
		for _, t := range texts {
			t.Free()
		}
	}()
	sw := switcher{boundary: r.boundary()}
	var loadTime time.Duration
	inputs := make([][]float32, r.Samples) // [noisy latent, y] per sample
	serve := func(s int, st sampler.Step, x []float32) ([]float32, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x16 := sw.pick(st.Time)
		t0 := time.Now()
		m, loaded, err := e.useExpert(x16, drop)
		if err != nil {
			return nil, err
		}
		if len(e.call.loras) > 0 {
			if err := e.applyLoRA(m, e.expertPath(x16)); err != nil {
				return nil, err
			}
		}
		if loaded {
			d := time.Since(t0)
			loadTime += d
			res.Timings = append(res.Timings, Timing{"load DiT " + x16.short(), d})
		}
		txt := texts[m]
		if txt == nil {
			if txt, err = m.EmbedText(txtRows.rows, txtRows.length); err != nil {
				return nil, err
			}
			texts[m] = txt
		}
		in := netInput(inputs[s], x, y)
		inputs[s] = in
		done := st.Index*r.Samples + s
		e.report(Event{Stage: "step", Done: done, Total: r.Steps * r.Samples, Note: x16.String()})
		if err := e.applyAttention(m); err != nil {
			return nil, err
		}
		v, err := m.Forward(in, []int{m.Config.InDim, lat[1], lat[2], lat[3]}, st.Timestep, txt)
		if err == nil {
			e.report(Event{Stage: "step", Done: done + 1, Total: r.Steps * r.Samples, Note: x16.String()})
			err = prev.after(s, st, x, v)
		}
		return v, err
	}
	run := func(s int, v sampler.Velocity) ([]float32, error) {
		rcm := sampler.RCM{Steps: r.Steps, SigmaMax: r.SigmaMax, ODE: r.ODE, NetDType: e.opt.DType}
		return rcm.Sample(n, e.noiseSource(r.Seed+uint64(s)), v)
	}
	t0 := time.Now()
	out, err := lockstep(r.Samples, run, serve)
	res.Timings = append(res.Timings, Timing{"sample", time.Since(t0) - loadTime})
	return out, err
}

// noiseSource is the noise of the sample with this seed.
func (e *Engine) noiseSource(seed uint64) sampler.Noise {
	if e.noise != nil {
		return e.noise(seed)
	}
	return sampler.NewGaussian(seed)
}

// timedStage runs one pipeline stage and records how long it took.
func timedStage(ctx context.Context, res *Result, name string, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t0 := time.Now()
	err := f()
	res.Timings = append(res.Timings, Timing{name, time.Since(t0)})
	return err
}
