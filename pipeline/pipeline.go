// Package pipeline turns a prompt into a video: tokenizer → umT5 → DiT with
// the rCM (or UniPC) sampler → VAE decode → frames. It is the one place the
// stages meet; the CLI, the server and Go callers all use it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
	"github.com/turbodiffusion-go/turbodiffusion/tokenizer"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// NegativePrompt is Wan's default negative prompt (wan/configs/shared_config.py),
// used by the 50-step UniPC mode with classifier-free guidance.
const NegativePrompt = "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"

// Options are fixed when an Engine is made: which files, which numerics.
type Options struct {
	Files
	// DiTOptions are how every DiT the engine loads runs (wan.Options:
	// dtype, attention kind and SLA top-k, norms, rounding, LoRA
	// leniency, offload). New defaults DType to BF16 and TopK to 0.1. Its
	// LoRA field is not read: the engine opens Options.LoRA itself.
	DiTOptions
	// KeepTextEncoder keeps umT5 loaded between prompts (otherwise it is
	// freed before the DiT loads, as the reference does).
	KeepTextEncoder bool
	// CacheDir holds encoded prompts; "" disables the cache.
	CacheDir string
	// KeepExperts keeps both image-to-video experts loaded between steps
	// and requests (twice the DiT memory); otherwise only one is resident.
	KeepExperts bool
	// Limits bound what a request may ask for (zero fields: DefaultLimits);
	// Generate refuses requests beyond them before any model runs.
	Limits Limits
	// VAETile decodes in spatial tiles of at most VAETile×VAETile latent
	// pixels (wanvae.VAE.SetTiling; 0: untiled): device memory is set by
	// the tile, not the video, at the price of the decode's streaming (the
	// frames come once the last tile is done).
	VAETile int
	// Encoding is the x264 setting of MP4 outputs (preset, CRF, …) unless
	// a request sets its own; the zero value is video's default.
	Encoding video.Encoding
	// Preview decodes the live previews Request.OnPreview asks for; nil
	// means the linear latent-to-RGB map fitted to the loaded VAE
	// (wanvae.VAE.FitRGB). A tiny decoder (TAEHV) plugs in here.
	Preview PreviewDecoder
	// OpenCheckpoint opens a model file; nil means checkpoint.Open.
	// Benchmarks substitute random weights at the real shapes.
	OpenCheckpoint func(path string) (checkpoint.File, error)
	// LoRA adapters are merged into every DiT the engine loads (the
	// text-to-video model, or both image-to-video experts), at load.
	LoRA []lora.Spec
	// CheckMemory makes Generate estimate each request's peak GPU memory
	// first and refuse one that cannot fit (CheckMemory, memory.go).
	CheckMemory bool
	// ReleaseDiT frees the DiT (and its text contexts) once sampling is
	// done, so the VAE decode does not run beside it: for one-request runs
	// (generate), where nothing would reuse it. A later request loads it
	// again.
	ReleaseDiT bool
}

// DiTOptions are wan.Options under a name that says what they are for in
// Options, where they are embedded.
type DiTOptions = wan.Options

// Request is one generation.
type Request struct {
	Prompt string
	// Sampler is "rcm" (TurboDiffusion, 1-4 steps, no CFG) or "unipc"
	// (Wan's original 50-step mode with CFG and the negative prompt).
	Sampler  string
	Steps    int
	SigmaMax float64 // rCM σmax (80 for T2V)
	ODE      bool    // rCM deterministic update instead of SDE
	Shift    float64 // UniPC schedule shift (5)
	Guidance float32 // UniPC CFG scale (5)
	Negative string  // UniPC negative prompt ("" = Wan's default)
	Size     Size
	Frames   int
	Seed     uint64
	Samples  int
	FPS      int

	// Image is the input image (PNG or JPEG) of an image-to-video request
	// (Wan2.2 I2V A14B, see i2v.go); "" means text-to-video.
	Image string
	// Boundary is the RF time below which the low-noise expert takes over
	// (TD --boundary); 0 selects DefaultBoundary (0.9), a negative value
	// never switches.
	Boundary float64
	// AdaptiveResolution keeps the area of Size but the image's aspect
	// ratio (TD --adaptive_resolution).
	AdaptiveResolution bool

	// LoRA adapters are merged for this request only, on top of
	// Options.LoRA, and the weights restored when it ends (each touched
	// weight is read again from the DiT checkpoint both times).
	LoRA []lora.Spec
	// KeepLoRA, when set, is asked as a successful request with LoRAs
	// ends: true leaves them merged, and the next request with the same
	// list (same files, unchanged since, same scales) runs on the merged
	// weights without merging again; any other request, or ReleaseLoRA,
	// restores the weights first. A server answers whether the next
	// queued job has the same list.
	KeepLoRA func() bool
	// Attention ("dense", "sla" or "sagesla") and TopK (the SLA fraction)
	// override the engine's Options for this request; "" and 0 keep them.
	// A DiT loaded for dense attention has no SLA weights, so it cannot
	// switch to sla or sagesla.
	Attention string
	TopK      float64

	// Output, when set, is the video file Generate writes (.mp4, .gif or a
	// folder for PNG frames; see WriteOutput for the GIF fallback), and
	// Result.Output says how. A single-sample .mp4 is encoded by ffmpeg
	// while the VAE decodes; otherwise the file is written after the decode.
	Output string
	// Encoding overrides Options.Encoding field by field (zero fields keep
	// the engine's).
	Encoding video.Encoding

	// OnPreview, when set, gets a Preview after every sampling step of
	// every sample. It runs on the sampling goroutine between steps, so it
	// should hand slow work (writing files, sending to clients) elsewhere.
	OnPreview func(Preview)
}

// Event reports progress: Stage is "tokenize", "encode", "load-dit",
// "step", "load-vae", "decode", "write" (finishing Request.Output); Done of
// Total units.
type Event struct {
	Stage       string
	Done, Total int
	Note        string
}

// Timing is how long one stage took.
type Timing struct {
	Stage    string
	Duration time.Duration
}

// Result is a generated clip and where the time went.
type Result struct {
	Clip    *video.Clip
	Latents [][]float32 // one [16,T,H,W] latent per sample
	Timings []Timing
	Notes   []string // choices the caller should show (e.g. a stage run on the CPU)
	Output  *Output  // how Request.Output was written; nil without one
}

// Engine holds loaded models between requests. It runs one request at a
// time.
type Engine struct {
	opt      Options
	dit      backend.DiT
	text     backend.Text
	vae      backend.VAE
	tinyB    backend.TinyVAE // backend of the tiny VAE (Files.TinyVAE set)
	notes    []string
	Progress func(Event)

	// noise makes a sample's noise source from its seed; nil means
	// sampler.NewGaussian. Tests replay the reference's recorded draws.
	noise func(seed uint64) sampler.Noise

	tok     *tokenizer.Tokenizer
	enc     *umt5.Encoder
	cache   *umt5.Cache
	model   *wan.Model
	decoder *wanvae.VAE
	tiny    *taehv.Model    // the tiny VAE decoder, when Files.TinyVAE is set
	experts [2]*wan.Model   // image-to-video experts by Expert
	loras   []*lora.Adapter // Options.LoRA, opened by New
	kept    *keptLoRA       // a finished request's LoRAs left merged (Request.KeepLoRA)
	// CheckRequest's state, guarded by infoMu (it runs beside Generate).
	infoMu  sync.Mutex
	plans   map[string]memplan.Run // planRun's header-derived part, by DiT path
	targets map[string]lora.Target // CheckLoRA's parameters, by DiT path
	machine *Budget                // the machine's memory
	call    call                   // the Generate call in progress
}

// New makes an engine on backend b. Stages whose ops b lacks run on cpu
// (which must implement everything), and the engine says so in its notes.
func New(b backend.Core, cpu backend.Core, opt Options) (*Engine, error) {
	e := &Engine{opt: opt}
	if opt.DType == tensor.Invalid {
		e.opt.DType = tensor.BF16
	}
	if opt.TopK == 0 {
		e.opt.TopK = 0.1
	}
	if opt.OpenCheckpoint == nil {
		e.opt.OpenCheckpoint = checkpoint.Open
	}
	if err := opt.Encoding.Validate(); err != nil {
		return nil, fmt.Errorf("options: encoding: %w", err)
	}
	if opt.VAETile < 0 {
		return nil, fmt.Errorf("options: VAE tile %d latent pixels: must be 0 (untiled) or positive", opt.VAETile)
	}
	var ok bool
	if e.dit, ok = b.(backend.DiT); !ok {
		return nil, fmt.Errorf("backend %s cannot run the DiT (it lacks the DiT ops)", b.Name())
	}
	pick := func(stage string, use func(backend.Core) bool) error {
		if use(b) {
			return nil
		}
		if cpu == nil || !use(cpu) {
			return fmt.Errorf("backend %s cannot run the %s and no CPU backend is available", b.Name(), stage)
		}
		e.notes = append(e.notes, fmt.Sprintf("the %s backend has no %s ops yet: the %s runs on the CPU", b.Name(), stage, stage))
		return nil
	}
	if err := pick("text encoder", func(c backend.Core) bool { t, ok := c.(backend.Text); e.text = t; return ok }); err != nil {
		return nil, err
	}
	if err := pick("VAE", func(c backend.Core) bool { v, ok := c.(backend.VAE); e.vae = v; return ok }); err != nil {
		return nil, err
	}
	if opt.TinyVAE != "" {
		if err := pick("tiny VAE", func(c backend.Core) bool { v, ok := c.(backend.TinyVAE); e.tinyB = v; return ok }); err != nil {
			return nil, err
		}
	}
	// Every model file is checked from its header before anything loads.
	if err := e.checkFiles(); err != nil {
		return nil, err
	}
	if opt.CacheDir != "" {
		c, err := umt5.OpenCache(opt.CacheDir)
		if err != nil {
			return nil, err
		}
		e.cache = c
	}
	// LoRA files are parsed now, so a missing or malformed one fails
	// before any model loads.
	as, err := openLoRAs(opt.LoRA)
	if err != nil {
		return nil, err
	}
	e.loras = as
	return e, nil
}

// openLoRAs opens every spec, closing the ones opened on failure.
func openLoRAs(specs []lora.Spec) ([]*lora.Adapter, error) {
	var as []*lora.Adapter
	for _, s := range specs {
		a, err := lora.Open(s)
		if err != nil {
			closeLoRAs(as)
			return nil, err
		}
		as = append(as, a)
	}
	return as, nil
}

func closeLoRAs(as []*lora.Adapter) {
	for _, a := range as {
		a.Close()
	}
}

// ditOptions are the wan options of every DiT the engine loads.
func (e *Engine) ditOptions() wan.Options {
	o := e.planOptions()
	o.LoRA = e.loras
	return o
}

// planOptions are ditOptions without the LoRA adapters: the memory plan's
// (LoRAs merge into the weights, they add no device memory). It reads only
// e.opt, so it is safe beside Generate and Close.
func (e *Engine) planOptions() wan.Options {
	o := e.opt.DiTOptions
	o.LoRA = nil
	return o
}

// loraNotes adds a loaded model's LoRA warnings to the engine's notes.
func (e *Engine) loraNotes(m *wan.Model, what string) {
	for _, w := range m.LoRAWarnings {
		e.notes = append(e.notes, fmt.Sprintf("%s: %s", what, w))
	}
}

// Notes are messages about how the engine runs, for the caller to show.
func (e *Engine) Notes() []string { return e.notes }

func (e *Engine) report(ev Event) {
	if e.Progress != nil {
		e.Progress(ev)
	}
}

// Close frees every loaded model.
func (e *Engine) Close() {
	if e.enc != nil {
		e.enc.Close()
		e.enc = nil
	}
	if e.model != nil {
		e.model.Free()
		e.model = nil
	}
	if e.decoder != nil {
		e.decoder.Free()
		e.decoder = nil
	}
	if e.tiny != nil {
		e.tiny.Free()
		e.tiny = nil
	}
	e.freeExperts()
	closeLoRAs(e.loras)
	e.loras = nil
	if k := e.kept; k != nil { // the models are freed: nothing to restore
		for _, a := range k.applied {
			a.src.Close()
		}
		closeLoRAs(k.loras)
		e.kept = nil
	}
}

// Generate runs one request through every stage.
func (e *Engine) Generate(ctx context.Context, r Request) (res *Result, err error) {
	if err := r.ValidateLimits(e.opt.Limits); err != nil {
		return nil, err
	}
	if err := e.checkAttention(r); err != nil {
		return nil, err
	}
	if e.opt.CheckMemory {
		if _, err := e.CheckMemory(r); err != nil {
			return nil, err
		}
	}
	e.call = call{ctx: ctx, output: r.Output, encoding: mergeEncoding(e.opt.Encoding, r.Encoding), attention: r.Attention, topK: r.TopK}
	defer func() {
		// Notes added during the call (a loaded model's LoRA warnings, the
		// request's) join the engine's.
		if res != nil {
			res.Notes = append(append([]string(nil), e.notes...), e.call.notes...)
		}
		e.call = call{}
	}()
	if len(r.LoRA) > 0 || e.kept != nil {
		if err := e.startLoRA(r); err != nil {
			return nil, err
		}
		defer func() {
			// A model that cannot be restored is unloaded (the next request
			// loads it again), so a finished video is still returned.
			if rerr := e.endLoRA(r, err == nil && res != nil); rerr != nil {
				if err == nil && res != nil {
					e.call.notes = append(e.call.notes, rerr.Error())
				} else {
					err = errors.Join(err, rerr)
				}
			}
		}()
	}
	if r.Image != "" {
		return e.generateI2V(ctx, r)
	}
	if e.opt.DiT == "" && e.opt.DiTHigh != "" {
		return nil, fmt.Errorf("this engine has the image-to-video experts and no text-to-video DiT: give an input image")
	}
	if r.FPS == 0 {
		r.FPS = 16
	}
	res = &Result{Notes: e.notes}
	stage := func(name string, f func() error) error { return timedStage(ctx, res, name, f) }

	// 1-2. Prompt(s) → umT5 context (cached by ids and encoder file).
	prompts := []string{r.Prompt}
	if r.Sampler == "unipc" {
		neg := r.Negative
		if neg == "" {
			neg = NegativePrompt
		}
		prompts = append(prompts, neg)
	}
	var contexts []*textContext
	type tokens struct {
		ids    []int32
		length int
	}
	var toks []tokens
	if err := stage("tokenize", func() error {
		for _, p := range prompts {
			ids, length, err := e.tokenize(p)
			if err != nil {
				return err
			}
			toks = append(toks, tokens{ids, length})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := stage("encode", func() error {
		for _, tk := range toks {
			c, err := e.encodeIDs(tk.ids, tk.length)
			if err != nil {
				return err
			}
			contexts = append(contexts, c)
		}
		if !e.opt.KeepTextEncoder && e.enc != nil {
			e.enc.Close() // free ~11 GB before the DiT loads, as the reference does
			e.enc = nil
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// 3. DiT.
	if err := stage("load DiT", e.loadDiT); err != nil {
		return nil, err
	}
	if len(e.call.loras) > 0 && !e.call.merged(e.model) {
		if err := stage("merge LoRA", func() error { return e.applyLoRA(e.model, e.opt.DiT) }); err != nil {
			return nil, err
		}
	}
	var texts []*wan.Text
	defer func() {
		for _, t := range texts {
			t.Free()
		}
	}()
	if err := stage("embed text", func() error {
		for _, c := range contexts {
			t, err := e.model.EmbedText(c.rows, c.length)
			if err != nil {
				return err
			}
			texts = append(texts, t)
		}
		return nil
	}); err != nil {
		return nil, err
	}

	lat, _ := LatentShape(r.Frames, r.Size)
	shape := []int{e.model.Config.InDim, lat[1], lat[2], lat[3]}
	if e.model.Config.InDim != 16 {
		return nil, fmt.Errorf("%s is an image-to-video model (%d input channels); text-to-video needs a T2V checkpoint", e.opt.DiT, e.model.Config.InDim)
	}
	n := tensor.NumElements(shape)
	var prev *previewer
	if r.OnPreview != nil {
		if err := stage("preview setup", func() (err error) {
			prev, err = e.newPreviewer(r, shape)
			return err
		}); err != nil {
			return nil, err
		}
	}
	for s := 0; s < r.Samples; s++ {
		var latent []float32
		err := stage(fmt.Sprintf("sample %d", s+1), func() error {
			var err error
			latent, err = e.sample(ctx, r, s, shape, n, texts, prev)
			return err
		})
		if err != nil {
			return nil, err
		}
		res.Latents = append(res.Latents, latent)
	}

	// 4. VAE decode → frames.
	if e.opt.ReleaseDiT {
		for _, t := range texts {
			t.Free()
		}
		texts = nil
		e.model.Free()
		e.model = nil
	}
	if err := e.decodeLatents(res, lat, r.FPS, stage); err != nil {
		return nil, err
	}
	return res, nil
}

// decodeLatents loads the VAE, decodes every latent of res [16, lat...],
// sets res.Clip (samples tiled side by side) and writes the call's output
// file, during the decode when it can (see decodeStreaming).
func (e *Engine) decodeLatents(res *Result, lat [4]int, fps int, stage func(string, func() error) error) error {
	if err := stage("load VAE", e.loadDecoder); err != nil {
		return err
	}
	if e.call.streams(len(res.Latents)) {
		return e.decodeStreaming(res, lat, fps, stage)
	}
	var clips [][][]uint8
	var vshape []int
	if err := stage("decode", func() error {
		for i, latent := range res.Latents {
			T := lat[1]
			var frames [][]uint8
			err := e.decodeFrames(latent, []int{16, T, lat[2], lat[3]}, func(first int, f [][]uint8, w, h int) error {
				if e.call.ctx != nil && e.call.ctx.Err() != nil {
					return e.call.ctx.Err()
				}
				e.report(Event{Stage: "decode", Done: i*T + (first+3)/4 + 1, Total: T * len(res.Latents)})
				frames, vshape = append(frames, f...), []int{3, len(f), h, w}
				return nil
			})
			if err != nil {
				return err
			}
			clips = append(clips, frames)
		}
		return nil
	}); err != nil {
		return err
	}
	res.Clip = tile(clips, vshape[3], vshape[2], fps)
	return e.writeAfterDecode(res, stage)
}

// sample runs the sampler for one sample.
func (e *Engine) sample(ctx context.Context, r Request, idx int, shape []int, n int, texts []*wan.Text, prev *previewer) ([]float32, error) {
	noise := sampler.NewGaussian(r.Seed + uint64(idx))
	steps := r.Steps
	velocity := func(txt *wan.Text) sampler.Velocity {
		return func(st sampler.Step, x []float32) ([]float32, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := e.applyAttention(e.model); err != nil {
				return nil, err
			}
			return e.model.Forward(x, shape, st.Timestep, txt)
		}
	}
	progress := func(v sampler.Velocity) sampler.Velocity {
		return func(st sampler.Step, x []float32) ([]float32, error) {
			e.report(Event{Stage: "step", Done: st.Index, Total: steps})
			out, err := v(st, x)
			if err == nil {
				e.report(Event{Stage: "step", Done: st.Index + 1, Total: steps})
				err = prev.after(idx, st, x, out)
			}
			return out, err
		}
	}
	if r.Sampler == "unipc" {
		cond, uncond := velocity(texts[0]), velocity(texts[1])
		cfg := func(st sampler.Step, x []float32) ([]float32, error) {
			vc, err := cond(st, x)
			if err != nil {
				return nil, err
			}
			vu, err := uncond(st, x)
			if err != nil {
				return nil, err
			}
			return sampler.CFG(vc, vu, r.Guidance)
		}
		x := make([]float32, n)
		if err := noise.Normal(x); err != nil {
			return nil, err
		}
		return sampler.UniPC{Steps: steps, Shift: r.Shift}.Sample(x, progress(cfg))
	}
	rcm := sampler.RCM{Steps: steps, SigmaMax: r.SigmaMax, ODE: r.ODE, NetDType: e.opt.DType}
	if dev, ok := e.dit.(sampler.Device); ok && os.Getenv("TURBODIFFUSION_RCM_LOOP") != "host" {
		return e.sampleOn(ctx, dev, rcm, idx, shape, noise, texts[0], prev)
	}
	return rcm.Sample(n, noise, progress(velocity(texts[0])))
}

// sampleOn is the rCM loop with the latent kept on a backend that has the
// sampler's ops (the GPU): no latent crosses the bus between steps but the
// noise, unless previews need the step's input and velocity on the host.
// TURBODIFFUSION_RCM_LOOP=host keeps the host loop (Sample), to compare.
// Progress and cancellation stay per step: SampleOn runs each network
// evaluation once the previous step is done on the device.
func (e *Engine) sampleOn(ctx context.Context, dev sampler.Device, rcm sampler.RCM, idx int, shape []int, noise sampler.Noise, txt *wan.Text, prev *previewer) ([]float32, error) {
	v := func(st sampler.Step, x backend.Tensor) (backend.Tensor, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := e.applyAttention(e.model); err != nil {
			return nil, err
		}
		e.report(Event{Stage: "step", Done: st.Index, Total: rcm.Steps})
		out, err := e.model.ForwardDevice(x, st.Timestep, txt)
		if err != nil || prev == nil {
			return out, err
		}
		if err := prev.after(idx, st, dev.Download(x), dev.Download(out)); err != nil {
			dev.Free(out)
			return nil, err
		}
		return out, nil
	}
	out, err := rcm.SampleOn(dev, shape, noise, v)
	if err == nil {
		e.report(Event{Stage: "step", Done: rcm.Steps, Total: rcm.Steps})
	}
	return out, err
}

// checkAttention refuses an attention override the loaded weights cannot
// serve: a DiT loaded for dense attention has no SLA weights.
func (e *Engine) checkAttention(r Request) error {
	if r.Attention == "" {
		return nil
	}
	k, err := ParseAttention(r.Attention)
	if err != nil {
		return err
	}
	if k != backend.Dense && e.opt.Attention == backend.Dense {
		return fieldErr(FieldAttention, CodeConflict, r.Attention, "this engine loads the DiT for dense attention (no SLA weights); start it with sla or sagesla attention to choose per request")
	}
	return nil
}

// applyAttention sets m's self-attention for the call in progress: the
// request's override, else the engine's.
func (e *Engine) applyAttention(m *wan.Model) error {
	kind, topK := e.opt.Attention, e.opt.TopK
	if e.call.attention != "" {
		k, err := ParseAttention(e.call.attention)
		if err != nil {
			return err
		}
		kind = k
	}
	if e.call.topK != 0 {
		topK = e.call.topK
	}
	return m.SetAttention(kind, topK)
}

type textContext struct {
	rows   []float32 // [length, TextDim]
	length int
}

// tokenize turns a prompt into umT5 ids padded to 512 and the count of
// valid ids (</s> included).
func (e *Engine) tokenize(prompt string) ([]int32, int, error) {
	if e.tok == nil {
		e.report(Event{Stage: "tokenize", Note: e.opt.Tokenizer})
		tok, err := tokenizer.Load(e.opt.Tokenizer)
		if err != nil {
			return nil, 0, err
		}
		e.tok = tok
	}
	const textLen = 512
	ids, mask := e.tok.EncodePrompt(prompt, textLen)
	length := 0
	for _, m := range mask {
		length += int(m)
	}
	return ids, length, nil
}

// encodePrompt is tokenize then encodeIDs.
func (e *Engine) encodePrompt(prompt string) (*textContext, error) {
	ids, length, err := e.tokenize(prompt)
	if err != nil {
		return nil, err
	}
	return e.encodeIDs(ids, length)
}

// encodeIDs returns the umT5 context of ids, from the prompt cache when it
// holds them (then the encoder is never loaded).
func (e *Engine) encodeIDs(ids []int32, length int) (*textContext, error) {
	var key umt5.CacheKey
	if e.cache != nil {
		k, err := umt5.NewCacheKey(ids, length, e.opt.TextEncoder, tensor.BF16)
		if err != nil {
			return nil, err
		}
		key = k
		if ent, ok, err := e.cache.Get(key); ok && err == nil {
			e.report(Event{Stage: "encode", Done: 1, Total: 1, Note: "cached"})
			return &textContext{rows: ent.Context[:ent.Length*ent.Dim], length: ent.Length}, nil
		}
	}
	if e.enc == nil {
		e.report(Event{Stage: "encode", Done: 0, Total: 1, Note: "loading " + filepath.Base(e.opt.TextEncoder)})
		f, err := e.opt.OpenCheckpoint(e.opt.TextEncoder)
		if err != nil {
			return nil, err
		}
		enc, err := umt5.Load(e.text, f, umt5.Options{DType: tensor.BF16})
		f.Close() // the encoder keeps what it needs
		if err != nil {
			return nil, err
		}
		e.enc = enc
	}
	out, err := e.enc.Encode(ids, length)
	if err != nil {
		return nil, err
	}
	dim := len(out) / len(ids)
	if e.cache != nil {
		if err := e.cache.Put(key, out, len(ids), length, dim, tensor.BF16); err != nil {
			e.notes = append(e.notes, "prompt cache: "+err.Error())
		}
	}
	e.report(Event{Stage: "encode", Done: 1, Total: 1})
	return &textContext{rows: out[:length*dim], length: length}, nil
}

func (e *Engine) loadDiT() error {
	if e.model != nil {
		return nil
	}
	e.report(Event{Stage: "load-dit", Note: filepath.Base(e.opt.DiT)})
	f, err := e.opt.OpenCheckpoint(e.opt.DiT)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := wan.Load(e.dit, f, e.ditOptions())
	if err != nil {
		return err
	}
	e.loraNotes(m, filepath.Base(e.opt.DiT))
	e.model = m
	return nil
}

// loadDecoder loads what decodes the latents: the tiny VAE when
// Files.TinyVAE is set, else the Wan VAE.
func (e *Engine) loadDecoder() error {
	if e.opt.TinyVAE == "" {
		return e.loadVAE()
	}
	if e.tiny != nil {
		return nil
	}
	e.report(Event{Stage: "load-vae", Note: filepath.Base(e.opt.TinyVAE)})
	f, err := e.opt.OpenCheckpoint(e.opt.TinyVAE)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := taehv.Load(e.tinyB, f, taehv.Options{DType: tensor.BF16})
	if err != nil {
		return err
	}
	e.tiny = m
	return nil
}

// decodeFrames decodes one latent [16,T,H,W] with the engine's decoder and
// hands its frames (rgb24, w×h) to emit in order, first being the index of
// the chunk's first frame: chunks of 1, 4, 4, ... frames, as the Wan VAE
// decodes them, or as the tiny VAE (every frame decoded at once, its
// parallel mode, at a fraction of the Wan VAE's time) copies them to the
// host. An error from emit stops decoding and is returned.
func (e *Engine) decodeFrames(latent []float32, shape []int, emit func(first int, frames [][]uint8, w, h int) error) error {
	if e.opt.TinyVAE != "" {
		return e.tiny.DecodeChunks(latent, shape, func(first int, chunk []float32, cs []int) error {
			f, err := taehv.Frames(chunk, cs)
			if err != nil {
				return err
			}
			return emit(first, f, cs[3], cs[2])
		})
	}
	return e.decoder.DecodeChunks(latent, shape, func(first int, chunk []float32, cs []int) error {
		f, err := wanvae.Frames(chunk, cs)
		if err != nil {
			return err
		}
		return emit(first, f, cs[3], cs[2])
	})
}

func (e *Engine) loadVAE() error {
	if e.decoder != nil {
		return nil
	}
	e.report(Event{Stage: "load-vae", Note: filepath.Base(e.opt.VAE)})
	f, err := e.opt.OpenCheckpoint(e.opt.VAE)
	if err != nil {
		return err
	}
	defer f.Close()
	v, err := wanvae.Load(e.vae, f, wanvae.Options{DType: tensor.BF16})
	if err != nil {
		return err
	}
	if err := v.SetTiling(e.opt.VAETile); err != nil {
		v.Free()
		return err
	}
	e.decoder = v
	return nil
}

// mergeEncoding is base with the fields req sets.
func mergeEncoding(base, req video.Encoding) video.Encoding {
	if req.Preset != "" {
		base.Preset = req.Preset
	}
	if req.CRF != 0 {
		base.CRF = req.CRF
	}
	if req.Tune != "" {
		base.Tune = req.Tune
	}
	if req.Threads != 0 {
		base.Threads = req.Threads
	}
	if req.Params != "" {
		base.Params = req.Params
	}
	return base
}

// tile places samples side by side in each frame, as the reference does for
// num_samples > 1.
func tile(clips [][][]uint8, w, h, fps int) *video.Clip {
	out := &video.Clip{Width: w * len(clips), Height: h, FPS: fps}
	if len(clips) == 1 {
		out.Frames = clips[0] // nothing to tile: no copy
		return out
	}
	for f := range clips[0] {
		frame := make([]byte, out.Width*h*3)
		for s, c := range clips {
			for y := 0; y < h; y++ {
				copy(frame[(y*out.Width+s*w)*3:(y*out.Width+(s+1)*w)*3], c[f][y*w*3:(y+1)*w*3])
			}
		}
		out.Frames = append(out.Frames, frame)
	}
	return out
}
