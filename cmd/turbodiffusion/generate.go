package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// engineFlags choose the models and how they run; generate and serve share them.
type engineFlags struct {
	models, variant                string
	files                          pipeline.Files
	attention                      string
	topk                           float64
	device, dtype                  string
	defaultNorm, keepText, noCache bool
	exactRounding                  bool
	cacheDir                       string
	preset                         string
	crf, vaeTile                   int
	// i2v selects the image-to-video experts (--dit-high/--dit-low or the
	// TurboWan2.2-I2V files) instead of a text-to-video DiT.
	i2v bool
	// loras are --lora FILE[:SCALE] values, merged into every DiT loaded.
	loras       []string
	loraLenient bool
	// noMemCheck skips the memory estimate before a run.
	noMemCheck bool
	// releaseDiT frees the DiT before the VAE decode (generate: one request).
	releaseDiT bool
	offload    bool
}

type generateFlags struct {
	engineFlags
	prompt, negative, out  string
	sampler                string
	steps, frames, samples int
	sigmaMax, shift        float64
	guidance               float32
	ode                    bool
	resolution, aspect     string
	seed                   uint64
	image                  string
	boundary               float64
	adaptive               bool
	preview                string
}

func (f *engineFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.models, "model", "", "models folder with the released files")
	fl.StringVar(&f.variant, "variant", pipeline.DefaultVariant, "which TurboWan DiT of the folder to use")
	fl.StringVar(&f.files.DiT, "dit", "", "DiT checkpoint (overrides the folder)")
	fl.StringVar(&f.files.VAE, "vae", "", "Wan2.1 VAE checkpoint (overrides the folder); \"tiny\" decodes with the tiny VAE (taew2_1.safetensors or .pth from the folder, huggingface.co/madebyollin/taehv: much faster, preview quality), as does a taew2_1 file given here")
	fl.StringVar(&f.files.TextEncoder, "text-encoder", "", "umT5-XXL encoder checkpoint (overrides the folder)")
	fl.StringVar(&f.files.Tokenizer, "tokenizer", "", "google/umt5-xxl tokenizer folder (overrides the folder)")
	fl.StringVar(&f.attention, "attention", "sla", "self-attention: dense, sla or sagesla")
	fl.Float64Var(&f.topk, "sla-topk", pipeline.DefaultTopK, "SLA fraction of key blocks kept per query block")
	fl.StringVar(&f.device, "device", "auto", "auto, cuda or cpu")
	fl.StringVar(&f.dtype, "dtype", "bf16", "DiT arithmetic: bf16 (as the reference) or f32")
	fl.BoolVar(&f.defaultNorm, "default-norm", false, "use Wan's default norms instead of TurboDiffusion's fast norms")
	fl.BoolVar(&f.exactRounding, "exact-rounding", false, "keep every bf16 rounding of the reference (no GELU fused into the FFN GEMM; ~3% slower on the GPU)")
	fl.BoolVar(&f.keepText, "keep-text-encoder", false, "keep umT5 loaded after encoding (more memory)")
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "prompt-embedding cache folder")
	fl.BoolVar(&f.noCache, "no-cache", false, "do not use the prompt-embedding cache")
	fl.StringArrayVar(&f.loras, "lora", nil, "LoRA to merge into the DiT, FILE[:SCALE] (.safetensors or .pth; PEFT/diffusers, kohya or diff naming; repeatable)")
	fl.BoolVar(&f.loraLenient, "lora-lenient", false, "skip LoRA keys that match nothing in the model (with a warning) instead of failing")
	fl.BoolVar(&f.offload, "offload", false, "keep the DiT blocks' weights in host memory and stream them to the GPU one block ahead (for GPUs too small for the model)")
	fl.BoolVar(&f.noMemCheck, "no-memory-check", false, "run even when the estimated peak GPU memory exceeds what the GPU has")
	fl.StringVar(&f.preset, "preset", video.DefaultPreset, "x264 preset of MP4 output: "+strings.Join(video.Presets, ", "))
	fl.IntVar(&f.crf, "crf", video.CRF, "x264 quality of MP4 output, 1 (best) to 51 (0: the default)")
	fl.IntVar(&f.vaeTile, "vae-tile", 0, "decode the VAE in spatial tiles of this many latent pixels (8 video pixels each) to cap its memory, e.g. 32 for 720p; 0: untiled")
}

// loraSpecs parses the --lora values.
func (f *engineFlags) loraSpecs() ([]lora.Spec, error) {
	var specs []lora.Spec
	for _, v := range f.loras {
		s, err := lora.ParseSpec(v)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// encoding is the MP4 setting the flags ask for.
func (f *engineFlags) encoding() (video.Encoding, error) {
	e := video.Encoding{Preset: f.preset, CRF: f.crf}
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("--preset/--crf: %w", err)
	}
	return e, nil
}

// open checks the flags and files, starts the backend and makes the engine.
// Notes about the choices made (CPU fallback) go to errOut.
func (f *engineFlags) open(errOut io.Writer) (*pipeline.Engine, backend.Core, error) {
	attn, err := pipeline.ParseAttention(f.attention)
	if err != nil {
		return nil, nil, flagError(err)
	}
	if err := pipeline.CheckTopK(f.topk); err != nil {
		return nil, nil, flagError(err)
	}
	enc, err := f.encoding()
	if err != nil {
		return nil, nil, err
	}
	if f.vaeTile < 0 {
		return nil, nil, fmt.Errorf("--vae-tile %d: must be 0 (untiled) or a positive number of latent pixels", f.vaeTile)
	}
	dt := tensor.BF16
	switch f.dtype {
	case "bf16":
	case "f32", "fp32", "float32":
		dt = tensor.F32
	default:
		return nil, nil, fmt.Errorf("--dtype %q: choose bf16 or f32", f.dtype)
	}
	// Every flag is checked before any file is looked at, so a bad value is
	// reported as such, whatever the models folder holds.
	if f.device != "auto" && !slices.Contains(backend.Names(), f.device) {
		return nil, nil, fmt.Errorf("--device %q: choose auto, %s", f.device, strings.Join(backend.Names(), ", "))
	}
	specs, err := f.loraSpecs()
	if err != nil {
		return nil, nil, err
	}
	var files pipeline.Files
	given := f.files // --vae "tiny" or a taew2_1 file selects the tiny VAE
	given.VAE, given.TinyVAE = splitVAEFlag(f.files.VAE)
	if f.i2v {
		if f.models == "" && (given.DiTHigh == "" || given.DiTLow == "" || given.VAE == "" || given.TextEncoder == "" || given.Tokenizer == "" ||
			given.TinyVAE == pipeline.TinyVAEFromFolder) {
			return nil, nil, fmt.Errorf("--model DIR is required (or all of --dit-high, --dit-low, --vae, --text-encoder and --tokenizer)")
		}
		files, err = pipeline.FindI2VModels(f.models, f.variant, given)
	} else {
		// Decoding with the tiny VAE, text-to-video needs no Wan VAE.
		noVAE := given.VAE == "" && (given.TinyVAE == "" || given.TinyVAE == pipeline.TinyVAEFromFolder)
		if f.models == "" && (given.DiT == "" || noVAE || given.TextEncoder == "" || given.Tokenizer == "") {
			return nil, nil, fmt.Errorf("--model DIR is required (or all of --dit, --vae, --text-encoder and --tokenizer)")
		}
		files, err = pipeline.FindModels(f.models, f.variant, given)
	}
	if err != nil {
		return nil, nil, err
	}
	be, note, err := backend.Open(f.device)
	if err != nil {
		return nil, nil, fmt.Errorf("--device %s: %w", f.device, err)
	}
	if note != "" {
		fmt.Fprintln(errOut, "note:", note)
	}
	cpuBE, _, _ := backend.Open("cpu")
	norm := backend.NormFast
	if f.defaultNorm {
		norm = backend.NormDefault
	}
	cache := f.cacheDir
	if f.noCache {
		cache = ""
	}
	eng, err := pipeline.New(be, cpuBE, pipeline.Options{
		Files:           files,
		DiTOptions:      pipeline.DiTOptions{DType: dt, Attention: attn, TopK: f.topk, Norm: norm, ExactRounding: f.exactRounding, LoRALenient: f.loraLenient, Offload: f.offload},
		KeepTextEncoder: f.keepText,
		CacheDir:        cache,
		Encoding:        enc,
		VAETile:         f.vaeTile,
		LoRA:            specs,
		CheckMemory:     !f.noMemCheck,
		ReleaseDiT:      f.releaseDiT,
	})
	if err != nil {
		return nil, nil, err
	}
	for _, n := range eng.Notes() {
		fmt.Fprintln(errOut, "note:", n)
	}
	return eng, be, nil
}

func init() {
	var f generateFlags
	cmd := &cobra.Command{
		Use:   "generate --model DIR --prompt TEXT [--image IMG] [-o out.mp4]",
		Short: "Generate a video from a text prompt (and optionally an image)",
		Long: `Generate a video from a text prompt with a TurboWan text-to-video model,
or from an image and a prompt (--image) with the Wan2.2 I2V A14B experts.

--model names a folder holding the released files under their released names
(TurboWan2.1-T2V-1.3B-480P.pth or -quant.pth, Wan2.1_VAE.pth,
models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/); --dit, --vae,
--text-encoder and --tokenizer override single files. Missing files are named
with where to download them.

Image-to-video (--image PNG/JPEG) uses TurboWan2.2-I2V-A14B-high-720P.pth and
-low-720P.pth (or their -quant files) from the folder, or --dit-high and
--dit-low; the high-noise expert runs until the RF time falls below
--boundary, then the low-noise one (only one is kept in memory). Its defaults
follow the reference script: --sigma-max 200, --resolution 720p.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runGenerate(cmd, &f) },
	}
	fl := cmd.Flags()
	f.engineFlags.register(fl)
	fl.StringVarP(&f.prompt, "prompt", "p", "", "text prompt (required)")
	fl.StringVarP(&f.out, "output", "o", "output.mp4", "output file: .mp4 (needs ffmpeg), .gif, or a folder for PNG frames")
	fl.StringVar(&f.sampler, "sampler", "rcm", "rcm (TurboDiffusion, 1-4 steps) or unipc (Wan's original 50-step mode with CFG)")
	fl.IntVar(&f.steps, "steps", pipeline.DefaultSteps, "sampling steps (rcm: 1-4; unipc: default 50)")
	fl.Float64Var(&f.sigmaMax, "sigma-max", pipeline.DefaultSigmaMax, "rCM initial sigma (larger = less diverse)")
	fl.BoolVar(&f.ode, "ode", false, "rCM deterministic (ODE) update instead of SDE")
	fl.Float64Var(&f.shift, "shift", pipeline.DefaultShift, "UniPC schedule shift")
	fl.Float32Var(&f.guidance, "guidance", pipeline.DefaultGuidance, "UniPC classifier-free guidance scale")
	fl.StringVar(&f.negative, "negative-prompt", "", "UniPC negative prompt (default: Wan's)")
	fl.StringVar(&f.resolution, "resolution", pipeline.DefaultResolution, "480p, 720p, 480, 512 or 720")
	fl.StringVar(&f.aspect, "aspect", pipeline.DefaultAspect, "aspect ratio: 16:9, 9:16, 4:3, 3:4 or 1:1")
	fl.IntVar(&f.frames, "frames", pipeline.DefaultFrames, "number of frames (4k+1)")
	fl.Uint64Var(&f.seed, "seed", 0, "random seed")
	fl.IntVar(&f.samples, "samples", 1, "videos to generate (tiled side by side)")
	fl.StringVar(&f.image, "image", "", "input image (PNG or JPEG): image-to-video with the Wan2.2 I2V A14B experts")
	fl.StringVar(&f.files.DiTHigh, "dit-high", "", "I2V high-noise expert checkpoint (overrides the folder)")
	fl.StringVar(&f.files.DiTLow, "dit-low", "", "I2V low-noise expert checkpoint (overrides the folder)")
	fl.Float64Var(&f.boundary, "boundary", pipeline.DefaultBoundary, "I2V: RF time below which the low-noise expert takes over")
	fl.BoolVar(&f.adaptive, "adaptive-resolution", false, "I2V: keep the resolution's area but the image's aspect ratio")
	fl.StringVar(&f.preview, "preview", "", "folder to write a live preview to after every sampling step (step_1.png …: a few frames side by side)")
	root.AddCommand(cmd)
}

// defaultCacheDir is the user cache folder's turbodiffusion/prompts
// (~/.cache on Linux, %LocalAppData% on Windows, ~/Library/Caches on macOS).
func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "turbodiffusion", "prompts")
	}
	return ""
}

// splitVAEFlag reads --vae: "tiny" selects the tiny VAE from the models
// folder; a file named like the tiny VAE's weights (taew…, taehv…) selects
// the tiny VAE with that file; "wan" or "" the Wan VAE from the folder;
// anything else is the Wan VAE's path.
func splitVAEFlag(v string) (wanVAE, tinyVAE string) {
	base := strings.ToLower(filepath.Base(v))
	switch {
	case strings.EqualFold(v, "tiny") || strings.EqualFold(v, "taehv"):
		return "", pipeline.TinyVAEFromFolder
	case strings.EqualFold(v, "wan"):
		return "", ""
	case v != "" && (strings.HasPrefix(base, "taew") || strings.HasPrefix(base, "taehv")):
		return "", v
	}
	return v, ""
}

// flagError shows a pipeline.FieldError under the command's flag name
// (frames → --frames, size → --resolution, image → --image).
func flagError(err error) error {
	return pipeline.Rename(err, func(field string) string {
		switch field {
		case pipeline.FieldSize:
			return "--resolution"
		}
		return "--" + strings.ReplaceAll(field, "_", "-")
	})
}

func runGenerate(cmd *cobra.Command, f *generateFlags) error {
	if f.out == "" {
		// An empty request output means "write nothing" to the pipeline.
		return fmt.Errorf("--output is empty: give an .mp4 or .gif file, or a folder for PNG frames")
	}
	fl := cmd.Flags()
	f.i2v = f.image != ""
	f.releaseDiT = true // one request: nothing reuses the DiT after sampling
	if f.i2v {
		if !fl.Changed("variant") {
			f.variant = pipeline.DefaultI2VVariant
		}
	} else {
		for _, name := range []string{"dit-high", "dit-low"} {
			if fl.Changed(name) {
				return fmt.Errorf("--%s is for image-to-video: give an input image with --image", name)
			}
		}
	}
	req, err := f.params(fl).Request(pipeline.Limits{})
	if err != nil {
		return flagError(err)
	}
	// The engine runs the request's attention: load it that way.
	f.attention = req.Attention
	if req.TopK != 0 {
		f.topk = req.TopK
	}
	errOut := cmd.ErrOrStderr()
	var previews *previewWriter
	if f.preview != "" {
		if previews, err = newPreviewWriter(f.preview); err != nil {
			return err
		}
		req.OnPreview = previews.send
	}
	eng, be, err := f.open(errOut)
	if err != nil {
		return err
	}
	defer eng.Close()
	if !f.noMemCheck {
		note, err := eng.CheckMemory(req)
		if err != nil {
			return err
		}
		if note != "" {
			fmt.Fprintln(errOut, note)
		}
	}
	bar := newProgress(errOut)
	eng.Progress = bar.event

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	what := ""
	if f.i2v {
		what = " from " + f.image
		if f.adaptive {
			what += " (size adapted to the image)"
		}
	}
	fmt.Fprintf(errOut, "generating %d frame(s) at %dx%d%s on %s, %s sampler, %d step(s), %s attention\n",
		req.Frames, req.Size.W, req.Size.H, what, be.Name(), req.Sampler, req.Steps, f.attention)
	t0 := time.Now()
	shown := len(eng.Notes()) // printed by open
	res, err := eng.Generate(ctx, req)
	bar.done()
	if previews != nil {
		if perr := previews.close(); err == nil && perr != nil {
			err = perr
		}
	}
	if err != nil {
		return err
	}
	for _, n := range res.Notes[min(shown, len(res.Notes)):] {
		fmt.Fprintln(errOut, "note:", n)
	}
	if res.Output.Note != "" {
		fmt.Fprintln(errOut, "note:", res.Output.Note)
	}
	printTimings(errOut, res, time.Since(t0))
	fmt.Fprintln(cmd.OutOrStdout(), res.Output.Path)
	return nil
}

// params turns the flags into pipeline.Params: a setting left at its
// default is passed as "not given", so the pipeline's defaults apply (the
// I2V ones with an image: σmax 200, 720p; 50 steps for UniPC).
func (f *generateFlags) params(fl *pflag.FlagSet) pipeline.Params {
	p := pipeline.Params{Prompt: f.prompt, Negative: f.negative, Sampler: f.sampler, ODE: f.ode,
		Image: f.image, AdaptiveResolution: f.adaptive, Output: f.out, Seed: &f.seed,
		Attention: f.attention}
	if fl.Changed("resolution") || fl.Changed("aspect") {
		p.Resolution, p.Aspect = f.resolution, f.aspect
	}
	if fl.Changed("sla-topk") {
		p.TopK = &f.topk
	}
	if fl.Changed("steps") {
		p.Steps = &f.steps
	}
	if fl.Changed("sigma-max") {
		p.SigmaMax = &f.sigmaMax
	}
	if fl.Changed("shift") {
		p.Shift = &f.shift
	}
	if fl.Changed("guidance") {
		g := float64(f.guidance)
		p.Guidance = &g
	}
	if fl.Changed("frames") {
		p.Frames = &f.frames
	}
	if fl.Changed("samples") {
		p.Samples = &f.samples
	}
	if fl.Changed("boundary") {
		p.Boundary = &f.boundary
	}
	return p
}

// printTimings lists the stages; a streamed MP4's encoder ran during the
// decode, so its own time is shown beside that stage, not added to the sum.
func printTimings(w io.Writer, res *pipeline.Result, total time.Duration) {
	fmt.Fprintln(w, "timings:")
	for _, t := range res.Timings {
		fmt.Fprintf(w, "  %-14s %8.2fs", t.Stage, t.Duration.Seconds())
		if o := res.Output; o != nil && o.Streamed && t.Stage == "decode+encode" {
			fmt.Fprintf(w, "  (overlapped; encoder busy %.2fs, %.2fs of it after the decode)", o.EncodeBusy.Seconds(), o.EncodeTail.Seconds())
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  %-14s %8.2fs\n", "total", total.Seconds())
}
