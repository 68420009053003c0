package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/server"
)

type serveFlags struct {
	engineFlags
	addr, outDir, apiKey     string
	loraDir                  string
	insecure, previews       bool
	allowHosts, allowOrigins []string
	maxQueue, maxFrames      int
	keepJobs                 int
	keepFor                  time.Duration
}

func init() {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --model DIR [--addr 127.0.0.1:8188]",
		Short: "Serve the web page and HTTP API for interactive generation",
		Long: `Serve a web page and an OpenAI-style video API (docs/API.md). Models load
once and stay resident; jobs run one at a time, in order.

  POST   /v1/videos               {"prompt": "...", "size": "832x480", "num_frames": 81,
                                   "num_inference_steps": 4, "seed": 1, "format": "mp4"}
                                  (multipart with an input_reference file for --i2v)
  GET    /v1/videos               all jobs, newest first
  GET    /v1/videos/{id}          one job: status, progress, error
  GET    /v1/videos/{id}/events   its progress as server-sent events
  GET    /v1/videos/{id}/content  the video once completed
  DELETE /v1/videos/{id}          cancel a queued or running job; delete a finished one
  POST   /v1/videos/{id}/cancel   cancel only
  GET    /v1/config               defaults and limits
  GET    /v1/loras                the LoRA files requests may name ("loras": [{"name": "style.safetensors", "scale": 0.8}])

The server listens on 127.0.0.1 by default. Another --addr (reachable from
other machines) needs --api-key (clients send "Authorization: Bearer KEY";
also from $TURBODIFFUSION_API_KEY), or --insecure to serve without one.
Requests from other web origins and unknown Host names are refused
(--allow-origin, --allow-host). Videos and the job index live in --out-dir;
finished jobs are evicted beyond --keep-jobs or after --keep-for.

Requests may name LoRA files of --lora-dir (default: the loras folder of
--model, when it exists), checked against the DiT before the job is
queued, merged while it runs and removed after (kept merged while
consecutive jobs ask for the same ones).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd, &f) },
	}
	fl := cmd.Flags()
	f.register(fl)
	fl.BoolVar(&f.i2v, "i2v", false, "serve image-to-video with the Wan2.2 I2V A14B experts (requests carry an image)")
	fl.StringVar(&f.files.DiTHigh, "dit-high", "", "I2V high-noise expert checkpoint (overrides the folder)")
	fl.StringVar(&f.files.DiTLow, "dit-low", "", "I2V low-noise expert checkpoint (overrides the folder)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8188", "listen address (a non-loopback one needs --api-key or --insecure)")
	fl.StringVar(&f.outDir, "out-dir", "turbodiffusion-videos", "folder for generated videos and the job index")
	fl.StringVar(&f.apiKey, "api-key", os.Getenv("TURBODIFFUSION_API_KEY"), "require \"Authorization: Bearer KEY\" on the API (default $TURBODIFFUSION_API_KEY)")
	fl.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback --addr without --api-key")
	fl.StringSliceVar(&f.allowHosts, "allow-host", nil, "extra Host names the server answers to (besides localhost and IP addresses)")
	fl.StringSliceVar(&f.allowOrigins, "allow-origin", nil, "other web origins allowed to post jobs (e.g. https://example.com)")
	fl.IntVar(&f.maxQueue, "max-queue", 16, "jobs that may wait behind the running one; more get 429")
	fl.IntVar(&f.maxFrames, "max-frames", pipeline.DefaultLimits.MaxFrames, "largest num_frames a request may ask for")
	fl.IntVar(&f.keepJobs, "keep-jobs", 200, "finished jobs (and their videos) kept; older ones are deleted")
	fl.BoolVar(&f.previews, "previews", true, "send a live preview after every sampling step to event streams (the web page shows it)")
	fl.StringVar(&f.loraDir, "lora-dir", "", "folder of LoRA files requests may name in \"loras\" (default: <--model>/loras when it exists)")
	fl.DurationVar(&f.keepFor, "keep-for", 0, "delete finished jobs and their videos after this long (0: keep until --keep-jobs)")
	root.AddCommand(cmd)
}

// checkAddr refuses a listen address reachable from other machines unless
// an API key protects it or --insecure says so.
func checkAddr(addr, apiKey string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %v", addr, err)
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil {
		loopback = ip.IsLoopback()
	}
	if !loopback && apiKey == "" && !insecure {
		if host == "" {
			host = "every interface"
		}
		return fmt.Errorf("--addr %s listens on %s, reachable from other machines: give --api-key KEY (clients send \"Authorization: Bearer KEY\"), or --insecure to serve without one", addr, host)
	}
	return nil
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	if err := checkAddr(f.addr, f.apiKey, f.insecure); err != nil {
		return err
	}
	if f.i2v && !cmd.Flags().Changed("variant") {
		f.variant = pipeline.DefaultI2VVariant
	}
	f.keepText = true // a server answers many prompts: keep umT5 resident
	loraDir, err := serveLoRADir(f.loraDir, f.models)
	if err != nil {
		return err
	}
	errOut := cmd.ErrOrStderr()
	eng, be, err := f.open(errOut)
	if err != nil {
		return err
	}
	defer eng.Close()
	model := f.variant
	if f.files.DiT != "" && !f.i2v {
		model = strings.TrimSuffix(filepath.Base(f.files.DiT), filepath.Ext(f.files.DiT))
	}
	return serve(cmd.Context(), errOut, server.EngineGenerator{Engine: eng}, server.Config{
		OutDir: f.outDir, I2V: f.i2v, Model: model, Attention: f.attention, TopK: f.topk,
		Limits: pipeline.Limits{MaxFrames: f.maxFrames}, MaxQueue: f.maxQueue, APIKey: f.apiKey,
		AllowedHosts: f.allowHosts, AllowedOrigins: f.allowOrigins, KeepJobs: f.keepJobs, KeepFor: f.keepFor,
		Previews: f.previews, LoRADir: loraDir,
	}, f.addr, be.Name())
}

// serveLoRADir is the LoRA folder: --lora-dir, which must be a folder, or
// the models folder's "loras" when it has one ("" otherwise: no LoRAs).
func serveLoRADir(flag, models string) (string, error) {
	if flag != "" {
		st, err := os.Stat(flag)
		if err != nil {
			return "", fmt.Errorf("--lora-dir: %w", err)
		}
		if !st.IsDir() {
			return "", fmt.Errorf("--lora-dir %s: not a folder", flag)
		}
		return flag, nil
	}
	if models == "" {
		return "", nil
	}
	d := filepath.Join(models, "loras")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d, nil
	}
	return "", nil
}

// serve runs the HTTP server until SIGINT or SIGTERM (or ctx ends), then
// stops the jobs and removes partial files.
func serve(ctx context.Context, errOut io.Writer, gen server.Generator, cfg server.Config, addr, backendName string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Log = log.New(errOut, "", log.LstdFlags)
	s, err := server.New(gen, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return err
	}
	mode := "text-to-video"
	if cfg.I2V {
		mode = "image-to-video"
	}
	auth := ""
	if cfg.APIKey != "" {
		auth = ", API key required"
	}
	if cfg.LoRADir != "" {
		auth += ", LoRAs from " + cfg.LoRADir
	}
	fmt.Fprintf(errOut, "serving %s on http://%s (backend %s, videos in %s%s)\n", mode, ln.Addr(), backendName, cfg.OutDir, auth)
	// No write timeout: event streams stay open while a job runs.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
		fmt.Fprintln(errOut, "shutting down: cancelling jobs, removing partial files")
	}
	cerr := s.Close() // ends the event streams and the running job
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return cerr
}
