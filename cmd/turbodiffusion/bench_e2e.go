package main

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

type benchE2EFlags struct {
	model, device, attention, tokenizer, resolution, aspect, out string
	frames, steps, runs                                          int
	topk                                                         float64
	preview, offload, quant, serve                               bool
	preset, vae                                                  string
	crf, vaeTile                                                 int
}

// The end-to-end benchmark is `bench e2e`, a child of the bench command.
func init() {
	f := &benchE2EFlags{}
	cmd := &cobra.Command{
		Use:   "e2e --tokenizer DIR",
		Short: "Time every stage of text-to-video (image-to-video for an I2V model) at real model shapes with random weights",
		Long: `Runs the real pipeline (tokenize, umT5-XXL encode, DiT steps, VAE decode,
video encode) with random weights of the real configurations, so no download
is needed. With ffmpeg on PATH the MP4 is encoded while the VAE decodes (one
"decode+encode" stage, with the encoder's busy time), and the same frames are
then encoded again on their own ("encode alone") to show what the overlap
saves. The first run includes loading and kernel compilation; later runs
keep the models resident (umT5 included) and bypass the prompt cache, so
they time the encoder with its weights resident. Needs a tokenizer folder
(spiece.model or tokenizer.json; any SentencePiece unigram model works).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchE2E(cmd.ErrOrStderr(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "Wan2.1-T2V-1.3B", "DiT configuration (preset name)")
	fl.StringVar(&f.device, "device", "auto", "backend: auto (the GPU if usable, else the CPU, saying why), cuda or cpu")
	fl.StringVar(&f.attention, "attention", "sla", "dense, sla or sagesla")
	fl.Float64Var(&f.topk, "sla-topk", pipeline.DefaultTopK, "SLA fraction of key blocks kept")
	fl.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer folder (required)")
	fl.StringVar(&f.resolution, "resolution", "480p", "resolution")
	fl.StringVar(&f.aspect, "aspect", "16:9", "aspect ratio")
	fl.IntVar(&f.frames, "frames", pipeline.DefaultFrames, "frames (4k+1)")
	fl.IntVar(&f.steps, "steps", pipeline.DefaultSteps, "rCM steps")
	fl.IntVar(&f.runs, "runs", 3, "generations (the first includes loading)")
	fl.BoolVar(&f.preview, "preview", false, "ask for a live preview after every step (the linear one unless a preview decoder is set) and report its cost")
	fl.StringVar(&f.preset, "preset", video.DefaultPreset, "x264 preset of the MP4")
	fl.IntVar(&f.crf, "crf", video.CRF, "x264 CRF of the MP4")
	fl.StringVar(&f.vae, "vae", "wan", "decoder: wan (the Wan2.1 VAE) or tiny (TAEHV's TAEW2.1 decoder, random weights; also the preview decoder)")
	fl.IntVar(&f.vaeTile, "vae-tile", 0, "decode the VAE in spatial tiles of this many latent pixels (0: untiled)")
	fl.BoolVar(&f.offload, "offload", false, "stream the DiT blocks' Linear weights from pinned host memory (generate --offload)")
	fl.BoolVar(&f.quant, "quant", false, "W8A8: quantise the random DiT weights first, as `quantize` does (into a temporary file), and run the -quant layout")
	fl.BoolVar(&f.serve, "serve", false, "run each generation through the HTTP API with previews on, as the web page does, and report when the client saw sampling start, the first preview and the video")
	fl.StringVar(&f.out, "out", "", "video file each run writes, the last one kept (.mp4 needs ffmpeg; default: a temporary .mp4, or .gif without ffmpeg)")
	for _, c := range root.Commands() {
		if c.Name() == "bench" {
			c.AddCommand(cmd)
			return
		}
	}
	root.AddCommand(cmd) // no GPU bench command in this build: offer it at the top
}

func runBenchE2E(log, out io.Writer, f *benchE2EFlags) error {
	if f.tokenizer == "" {
		return fmt.Errorf("--tokenizer DIR is required (a google/umt5-xxl tokenizer folder)")
	}
	// The request first: every setting is checked before the backend opens.
	req, err := pipeline.Params{Prompt: "A red fox runs through fresh snow at sunrise, cinematic lighting, 4k",
		Steps: &f.steps, Resolution: f.resolution, Aspect: f.aspect, Frames: &f.frames, Seed: pipeline.Ptr[uint64](1),
		Attention: f.attention, TopK: &f.topk}.Request(pipeline.Limits{})
	if err != nil {
		return flagError(err)
	}
	attn, _ := pipeline.ParseAttention(req.Attention)
	size := req.Size
	cfg, err := wan.Preset(f.model)
	if err != nil {
		return err
	}
	names := pipeline.Files{DiT: "dit", VAE: "vae", TextEncoder: "umt5", Tokenizer: f.tokenizer}
	i2v := cfg.Type == wan.I2V
	if i2v {
		// Both Wan2.2 experts (random, different seeds) and a synthetic
		// input image of the request's size.
		names.DiT, names.DiTHigh, names.DiTLow = "", "dit-high", "dit-low"
	}
	switch strings.ToLower(f.vae) {
	case "wan", "":
	case "tiny":
		names.VAE, names.TinyVAE = "", "taew"
		if f.vaeTile > 0 {
			return fmt.Errorf("--vae-tile %d: tiles are for the Wan VAE, not --vae tiny", f.vaeTile)
		}
	default:
		return fmt.Errorf("--vae %q: choose wan or tiny", f.vae)
	}
	be, note, err := backend.Open(f.device)
	if err != nil {
		return fmt.Errorf("--device %s: %w", f.device, err)
	}
	if note != "" {
		fmt.Fprintln(log, "note:", note)
	}
	// Random weights at the real shapes: the umT5-XXL encoder, the DiT and
	// the Wan2.1 VAE (base width 96, z 16).
	files := map[string]checkpoint.File{
		"umt5": testmodels.NewRandom("random:umt5-xxl", umt5.Tensors(umt5.XXL), 1),
		"vae":  testmodels.NewRandom("random:wan2.1-vae", wanvae.Tensors(wanvae.Config{Dim: 96, ZDim: 16}), 3),
		"taew": testmodels.NewRandom("random:taew2_1", taehv.Tensors(16), 4),
	}
	ditNames := []string{"dit"}
	if i2v {
		ditNames = []string{"dit-high", "dit-low"}
	}
	tmp, err := os.MkdirTemp("", "td-bench-e2e")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	quantPaths := map[string]string{}
	for i, n := range ditNames {
		files[n] = testmodels.NewRandom("random:"+cfg.Name+":"+n, wan.Tensors(cfg), uint64(2+10*i))
		if !f.quant {
			continue
		}
		// The -quant layout users download: int8 codes and scales, written
		// and memory-mapped like a real file.
		t0 := time.Now()
		path := filepath.Join(tmp, n+"-quant.safetensors")
		if err := quant.QuantizeCheckpoint(files[n], path); err != nil {
			return fmt.Errorf("quantising random %s: %w", cfg.Name, err)
		}
		delete(files, n)
		quantPaths[n] = path // opened afresh each time the pipeline asks (it closes what it opens)
		fmt.Fprintf(log, "note: random %s (%s) quantised in %.1f s\n", cfg.Name, n, time.Since(t0).Seconds())
	}
	if i2v {
		req.Image = filepath.Join(tmp, "input.png")
		if err := writeBenchImage(req.Image, size.W, size.H); err != nil {
			return err
		}
	}
	encoding := video.Encoding{Preset: f.preset, CRF: f.crf}
	if err := encoding.Validate(); err != nil {
		return err
	}
	cpuBE, _, _ := backend.Open("cpu")
	eng, err := pipeline.New(be, cpuBE, pipeline.Options{
		Encoding:        encoding,
		VAETile:         f.vaeTile,
		Files:           names,
		DiTOptions:      pipeline.DiTOptions{Attention: attn, TopK: req.TopK, Offload: f.offload},
		KeepTextEncoder: true,
		OpenCheckpoint: func(p string) (checkpoint.File, error) {
			if f, ok := files[p]; ok {
				return f, nil
			}
			if q, ok := quantPaths[p]; ok {
				return checkpoint.Open(q)
			}
			return nil, fmt.Errorf("bench e2e: no random model named %q", p)
		},
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	for _, n := range eng.Notes() {
		fmt.Fprintln(log, "note:", n)
	}
	if f.serve {
		return benchServe(out, eng, req, f.runs)
	}
	outPath := f.out
	if outPath == "" {
		dir, err := os.MkdirTemp("", "td-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		outPath = filepath.Join(dir, "bench.mp4")
	}
	req.Output = outPath
	var previews []pipeline.Preview
	var sampleStart time.Time
	var firstPreview time.Duration
	if f.preview {
		req.OnPreview = func(p pipeline.Preview) {
			if len(previews) == 0 {
				firstPreview = time.Since(sampleStart)
			}
			previews = append(previews, p)
		}
	}
	// When each step count was first reported: the intervals are the
	// sampling loop's time per step (network and host work between).
	var stepAt []time.Time
	eng.Progress = func(ev pipeline.Event) {
		if ev.Stage == "step" && ev.Done == 0 {
			sampleStart = time.Now()
		}
		if ev.Stage == "step" && ev.Done == len(stepAt) {
			stepAt = append(stepAt, time.Now())
		}
	}
	what := ""
	if f.preview {
		what += ", previews"
	}
	if names.TinyVAE != "" {
		what += ", tiny VAE"
	}
	if f.vaeTile > 0 {
		what += fmt.Sprintf(", VAE tiles of %d latent px", f.vaeTile)
	}
	if f.quant {
		what += ", W8A8 int8 Linears"
	}
	if f.offload {
		what += ", offload"
	}
	if i2v {
		what += ", image-to-video from a synthetic image"
	}
	fmt.Fprintf(out, "bench e2e: %s %dx%d x %d frames, %d rCM steps, %s attention, backend %s (random weights), x264 %s%s\n",
		cfg.Name, size.W, size.H, f.frames, f.steps, attn, be.Name(), encoding, what)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	// Pool peak of each run beside the memory planner's estimate for it.
	type poolStats interface {
		ResetPeak()
		MemStats() (inUse, peak, held int64)
	}
	for run := 1; run <= f.runs; run++ {
		est, _, estErr := eng.MemoryPlan(req)
		ps, hasPool := be.(poolStats)
		if hasPool {
			ps.ResetPeak()
		}
		previews = previews[:0]
		stepAt = stepAt[:0]
		t0 := time.Now()
		res, err := eng.Generate(context.Background(), req)
		if err != nil {
			return err
		}
		total := time.Since(t0)
		if hasPool && estErr == nil {
			_, peak, _ := ps.MemStats()
			fmt.Fprintf(out, "run %d memory: pool peak %.2f GiB, estimate %.2f GiB at the %s (%+.1f%%)\n", run,
				float64(peak)/memplan.GiB, float64(est.GPU())/memplan.GiB, est.Peak.Name, 100*(float64(est.GPU())/float64(peak)-1))
		}
		o := res.Output
		fmt.Fprintf(out, "run %d:", run)
		for _, t := range res.Timings {
			fmt.Fprintf(out, "  %s %.1f ms", t.Stage, ms(t.Duration))
			if o.Streamed && t.Stage == "decode+encode" {
				fmt.Fprintf(out, " (overlapped; encoder busy %.1f ms)", ms(o.EncodeBusy))
			}
		}
		fmt.Fprintf(out, "  total %.1f ms", ms(total))
		if len(stepAt) > 1 {
			fmt.Fprint(out, "  steps")
			for i := 1; i < len(stepAt); i++ {
				fmt.Fprintf(out, " %.1f", ms(stepAt[i].Sub(stepAt[i-1])))
			}
			fmt.Fprint(out, " ms")
		}
		if o.Streamed {
			fmt.Fprintf(out, "  encoder tail %.1f ms", ms(o.EncodeTail))
		}
		if f.preview {
			var took time.Duration
			for _, p := range previews {
				took += p.Took
			}
			fmt.Fprintf(out, "  previews %d (%.1f ms in the sampling loop, first %.1f ms after sampling started)", len(previews), ms(took), ms(firstPreview))
		}
		if o.Streamed {
			// The same frames encoded on their own, as a non-streaming
			// writer would after the decode: what the overlap saves.
			// In a fresh temporary folder, so no file of the user's is
			// overwritten.
			tmp, err := os.MkdirTemp("", "td-bench-alone")
			if err != nil {
				return err
			}
			t1 := time.Now()
			err = video.WriteMP4With(filepath.Join(tmp, "alone.mp4"), res.Clip, encoding)
			enc := time.Since(t1)
			os.RemoveAll(tmp)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  (encode alone %.1f ms)", ms(enc))
		} else {
			fmt.Fprintf(out, "  (%s written after the decode)", filepath.Ext(o.Path))
		}
		fmt.Fprintln(out)
		if o.Note != "" && run == 1 {
			fmt.Fprintln(log, "note:", o.Note)
		}
		if f.out == "" || run < f.runs {
			os.RemoveAll(o.Path) // GIF fallbacks and PNG folders refuse to overwrite; the last run's output is kept
		}
	}
	return nil
}

// writeBenchImage writes a w×h PNG with smooth gradients (an input image
// for image-to-video benchmarks).
func writeBenchImage(path string, w, h int) error {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(255 * x / max(w-1, 1)), uint8(255 * y / max(h-1, 1)), uint8((x + y) % 256), 255})
		}
	}
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(fh, img); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
