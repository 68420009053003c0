// Package server is the HTTP API and web page for local, interactive video
// generation, in the shape of the OpenAI-style video APIs of SGLang and
// FastVideo (docs/API.md): POST /v1/videos queues a job, GET polls it or
// streams its progress as server-sent events, DELETE cancels it, and
// /content serves the video. Jobs run one at a time (one GPU) in
// submission order; every request is checked (settings, limits, memory)
// before it is queued, and the queue is bounded.
//
// Safe by default: the server answers only to loopback names and IP
// literals (no DNS rebinding), refuses cross-site posts, and takes an API
// key for anything reachable from elsewhere. Jobs persist in an index
// beside the videos; finished ones are evicted by age and count.
package server

import (
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

//go:embed web
var webFS embed.FS

// Output is what a Generator wrote.
type Output struct {
	Path    string // the video file (a GIF beside the requested .mp4 without ffmpeg)
	Timings []pipeline.Timing
	Note    string
}

// Generator is what the server drives: EngineGenerator in production, a
// fake in tests. It runs r, writes the video to r.Output and stops with
// ctx's error soon after ctx is cancelled (the engine checks it before
// every network evaluation, so within one sampling step).
type Generator interface {
	Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (Output, error)
}

// Checker is optionally implemented by a Generator: Check runs before a
// job is queued and refuses what the generator cannot serve (a memory
// estimate over what the machine has, an attention the loaded weights
// lack). Errors that are a *pipeline.FieldError name the request field.
type Checker interface {
	Check(r pipeline.Request) error
}

// EngineGenerator adapts a pipeline.Engine. The engine writes the file
// itself, so an MP4 is encoded while the VAE decodes (pipeline.Request.Output).
type EngineGenerator struct{ Engine *pipeline.Engine }

func (g EngineGenerator) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (Output, error) {
	g.Engine.Progress = progress
	defer func() { g.Engine.Progress = nil }()
	res, err := g.Engine.Generate(ctx, r)
	if err != nil {
		return Output{}, err
	}
	if res.Output == nil {
		return Output{}, fmt.Errorf("server: the engine wrote no video for output %q", r.Output)
	}
	return Output{Path: res.Output.Path, Timings: res.Timings, Note: res.Output.Note}, nil
}

// Check is pipeline.Engine.CheckRequest.
func (g EngineGenerator) Check(r pipeline.Request) error { return g.Engine.CheckRequest(r) }

// Config sets up a Server. Zero fields take the defaults named.
type Config struct {
	// OutDir holds the videos, the job index (index.json) and, while their
	// jobs need them, uploaded images.
	OutDir string
	// I2V makes this an image-to-video server: requests must carry an image
	// (input_reference), and defaults are the reference I2V script's.
	I2V bool
	// Model names the model in video objects; Attention and TopK are the
	// engine's defaults, shown by GET /v1/config.
	Model     string
	Attention string
	TopK      float64
	// Limits bound each request (pipeline.DefaultLimits where zero).
	Limits pipeline.Limits
	// MaxQueue is how many jobs may wait behind the running one (16); more
	// are refused with 429 and Retry-After.
	MaxQueue int
	// MaxBody bounds a request body in bytes (48 MiB: a 32 MiB image as
	// base64); larger bodies get 413.
	MaxBody int64
	// APIKey, when set, is required as "Authorization: Bearer KEY" on every
	// /v1/ request.
	APIKey string
	// AllowedHosts are extra Host names the server answers to (besides
	// localhost and IP literals); AllowedOrigins are other web origins
	// allowed to post ("https://example.com").
	AllowedHosts, AllowedOrigins []string
	// KeepJobs is how many finished jobs (and their videos) are kept (200);
	// KeepFor, when positive, evicts finished jobs older than that.
	KeepJobs int
	KeepFor  time.Duration
	// Log receives the access log and the job log (default: stderr).
	Log *log.Logger
	// KeepAlive is the interval of comment lines on idle event streams (15 s).
	KeepAlive time.Duration
	// Previews asks the engine for a live preview after every sampling step
	// (pipeline.Request.OnPreview), sent to event streams as "preview"
	// events with a PNG of a few frames side by side.
	Previews bool
	// LoRADir is the folder of LoRA files requests may name ("loras";
	// GET /v1/loras lists it); "" allows none.
	LoRADir string
}

// Server holds the jobs. Make one with New and end it with Close.
type Server struct {
	cfg Config
	gen Generator
	log *log.Logger

	ctx    context.Context // ends at Close: cancels the running job
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // a job was queued
	dirty  chan struct{} // the index needs saving

	mu       sync.Mutex
	jobs     map[string]*job
	order    []*job // by creation, oldest first
	queue    []*job // waiting, in order
	reserved int    // queue places taken by requests still writing their upload
	running  *job
	closing  bool
	avgJob   time.Duration // recent job time, for Retry-After
	idle     bool          // a job ended since the generator was last told the queue is empty

	loraMu    sync.Mutex
	loraCache map[string]loraCached // GET /v1/loras entries by file path
}

// New opens the output folder (creating it), loads the job index, removes
// partial files a previous run left, and starts the worker.
func New(gen Generator, cfg Config) (*Server, error) {
	if cfg.OutDir == "" {
		return nil, fmt.Errorf("server: no output folder")
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 16
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 48 << 20
	}
	if cfg.KeepJobs <= 0 {
		cfg.KeepJobs = 200
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	if cfg.Log == nil {
		cfg.Log = log.New(os.Stderr, "", log.LstdFlags)
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, gen: gen, log: cfg.Log, jobs: map[string]*job{},
		wake: make(chan struct{}, 1), dirty: make(chan struct{}, 1)}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.removePartials()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.evict()
	s.wg.Add(2)
	go s.worker()
	go s.saver()
	return s, nil
}

// Close stops the server's jobs: queued ones are cancelled, the running
// one's context is cancelled (the engine stops within a step) and waited
// for; then the index is saved and partial files and uploads are removed.
// Call it after the HTTP server has stopped taking requests.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	for _, j := range s.queue {
		s.finishLocked(j, statusCancelled, &VideoError{Code: "server_shutdown", Message: "the server stopped before this job started"})
	}
	s.queue = nil
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	err := s.save()
	s.removePartials()
	return err
}

// Handler returns the HTTP routes, wrapped in the access log, the Host,
// Origin and API-key checks, and JSON 404/405 answers.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, rt)
	}
	page, _ := fs.Sub(webFS, "web")
	files := http.FileServer(http.FS(page))
	mux.Handle("/", route{pattern: "/", methods: map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				if _, err := fs.Stat(page, r.URL.Path[1:]); err != nil {
					writeError(w, newError(http.StatusNotFound, "no_route", "", "no route %s %s (see docs/API.md)", r.Method, r.URL.Path))
					return
				}
			}
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
			files.ServeHTTP(w, r)
		},
	}})
	return accessLog(s.log, recoverJSON(s.log, s.guard(mux)))
}

// route dispatches one path pattern by method, answering other methods
// with a JSON 405 and an Allow header (the mux's own 405 is plain text).
type route struct {
	pattern string
	methods map[string]http.HandlerFunc
}

func (rt route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := r.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	if h, ok := rt.methods[m]; ok {
		h(w, r)
		return
	}
	allow := ""
	for _, k := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if _, ok := rt.methods[k]; ok {
			if allow != "" {
				allow += ", "
			}
			allow += k
			if k == http.MethodGet {
				allow += ", HEAD"
			}
		}
	}
	w.Header().Set("Allow", allow)
	writeError(w, newError(http.StatusMethodNotAllowed, "method_not_allowed", "", "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
}

// Route is one documented route: "GET /v1/videos/{id}".
type Route struct{ Method, Pattern string }

// Routes lists the API's routes (for tests and docs).
func (s *Server) Routes() []Route {
	var out []Route
	for _, rt := range s.routes() {
		for m := range rt.methods {
			out = append(out, Route{m, rt.pattern})
		}
	}
	return out
}

func (s *Server) routes() []route {
	return []route{
		{"/v1/config", map[string]http.HandlerFunc{"GET": s.config}},
		{"/v1/loras", map[string]http.HandlerFunc{"GET": s.loras}},
		{"/v1/videos", map[string]http.HandlerFunc{"GET": s.list, "POST": s.create}},
		{"/v1/videos/{id}", map[string]http.HandlerFunc{"GET": s.get, "DELETE": s.remove}},
		{"/v1/videos/{id}/content", map[string]http.HandlerFunc{"GET": s.content}},
		{"/v1/videos/{id}/events", map[string]http.HandlerFunc{"GET": s.events}},
		{"/v1/videos/{id}/cancel", map[string]http.HandlerFunc{"POST": s.cancelJob}},
	}
}

// outPath is a file of the output folder.
func (s *Server) outPath(name string) string { return filepath.Join(s.cfg.OutDir, name) }

var _ io.Writer = (*recorder)(nil)
