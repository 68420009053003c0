// Package server is the HTTP API and web page for local, interactive video
// generation. Jobs run one at a time (one GPU) in submission order; clients
// poll a job for progress and fetch the video when it is done.
package server

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

//go:embed web
var webFS embed.FS

// Generator is what the server drives: pipeline.Engine in production, a fake
// in tests. It runs r and writes the video to r.Output, returning the path
// it wrote (a GIF beside it when no MP4 can be made).
type Generator interface {
	Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (written string, err error)
}

// EngineGenerator adapts a pipeline.Engine. The engine writes the file
// itself, so an MP4 is encoded while the VAE decodes (pipeline.Request.Output).
type EngineGenerator struct{ Engine *pipeline.Engine }

func (g EngineGenerator) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (string, error) {
	g.Engine.Progress = progress
	res, err := g.Engine.Generate(ctx, r)
	if err != nil {
		return "", err
	}
	if res.Output == nil {
		return "", fmt.Errorf("server: the engine wrote no video for output %q", r.Output)
	}
	return res.Output.Path, nil
}

// Request is the JSON body of POST /v1/videos. Zero fields take defaults.
type Request struct {
	Prompt     string   `json:"prompt"`
	Steps      *int     `json:"steps,omitempty"`
	SigmaMax   *float64 `json:"sigma_max,omitempty"`
	Resolution string   `json:"resolution,omitempty"`
	Aspect     string   `json:"aspect,omitempty"`
	Frames     *int     `json:"frames,omitempty"`
	Seed       *uint64  `json:"seed,omitempty"`
	Format     string   `json:"format,omitempty"` // mp4 (default) or gif
	// Image is the input image of an image-to-video request: PNG or JPEG,
	// base64, optionally as a data URL. Only a server started for
	// image-to-video (serve --i2v) takes it, and there it is required.
	Image string `json:"image,omitempty"`
	// AdaptiveResolution keeps the resolution's area but the image's aspect.
	AdaptiveResolution bool `json:"adaptive_resolution,omitempty"`
}

// maxBody bounds a request body (an input image included).
const maxBody = 32 << 20

// Job is the JSON view of a job.
type Job struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"` // queued, running, done, failed
	Stage    string    `json:"stage,omitempty"`
	Done     int       `json:"done,omitempty"`
	Total    int       `json:"total,omitempty"`
	Error    string    `json:"error,omitempty"`
	VideoURL string    `json:"video_url,omitempty"`
	Format   string    `json:"format"` // mp4 or gif
	Created  time.Time `json:"created"`
	Seconds  float64   `json:"seconds,omitempty"`

	req  pipeline.Request
	path string
}

// Server holds the job queue.
type Server struct {
	gen    Generator
	outDir string
	mu     sync.Mutex
	jobs   map[string]*Job
	order  []string
	queue  chan *Job
	nextID int
	// MaxQueue bounds waiting jobs; more are refused with 503.
	MaxQueue int
	// I2V makes this an image-to-video server: requests must carry an image,
	// and defaults are the reference I2V script's (σmax 200, 720p).
	I2V bool
}

// New starts a server that writes videos under outDir and runs one worker
// until ctx ends.
func New(ctx context.Context, gen Generator, outDir string) (*Server, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{gen: gen, outDir: outDir, jobs: map[string]*Job{}, queue: make(chan *Job, 64), MaxQueue: 64}
	go s.worker(ctx)
	return s, nil
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	page, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServer(http.FS(page)))
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"i2v": s.I2V})
	})
	mux.HandleFunc("POST /v1/videos", s.create)
	mux.HandleFunc("GET /v1/videos", s.list)
	mux.HandleFunc("GET /v1/videos/{id}", s.get)
	mux.HandleFunc("GET /v1/videos/{id}/content", s.content)
	return mux
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// toPipeline validates a request and fills defaults (pipeline.Params: the
// reference's T2V defaults, its I2V ones on an image-to-video server).
func (r Request) toPipeline(i2v bool) (pipeline.Request, string, error) {
	if i2v && r.Image == "" {
		return pipeline.Request{}, "", errors.New("image is required: this server runs image-to-video (base64 PNG or JPEG in \"image\")")
	}
	if !i2v && (r.Image != "" || r.AdaptiveResolution) {
		return pipeline.Request{}, "", errors.New("this server runs text-to-video; start it with --i2v and the I2V experts for image input")
	}
	p := pipeline.Params{Prompt: r.Prompt, Resolution: r.Resolution, Aspect: r.Aspect, Seed: r.Seed,
		AdaptiveResolution: r.AdaptiveResolution, Format: r.Format}
	if r.Steps != nil {
		p.Steps = r.Steps
	}
	if r.SigmaMax != nil {
		p.SigmaMax = r.SigmaMax
	}
	if r.Frames != nil {
		p.Frames = r.Frames
	}
	if p.Resolution == "" && p.Aspect != "" {
		p.Resolution = pipeline.DefaultResolution
		if i2v {
			p.Resolution = pipeline.DefaultI2VResolution
		}
	}
	if r.Image != "" {
		p.Image = "(uploaded image)" // replaced by the saved file's path once it is written
	}
	if p.Seed == nil {
		p.Seed = pipeline.Ptr(uint64(time.Now().UnixNano()))
	}
	pr, err := p.Request(pipeline.Limits{})
	format := strings.ToLower(r.Format)
	if format == "" {
		format = pipeline.DefaultFormat
	}
	return pr, format, err
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON body: %v", err)
		return
	}
	pr, format, err := req.toPipeline(s.I2V)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var img []byte
	if req.Image != "" {
		if img, err = decodeImage(req.Image); err != nil {
			httpError(w, http.StatusBadRequest, "image: %v", err)
			return
		}
	}
	s.mu.Lock()
	s.nextID++
	job := &Job{ID: strconv.Itoa(s.nextID), Status: "queued", Created: time.Now(), req: pr, Format: format}
	if img != nil {
		// The pipeline reads the image from a file; it lives beside the videos.
		job.req.Image = filepath.Join(s.outDir, "input-"+job.ID+imageExt(img))
		if err := os.WriteFile(job.req.Image, img, 0o644); err != nil {
			s.nextID--
			s.mu.Unlock()
			httpError(w, http.StatusInternalServerError, "saving the input image: %v", err)
			return
		}
	}
	select {
	case s.queue <- job:
		s.jobs[job.ID] = job
		s.order = append(s.order, job.ID)
	default:
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "queue full (%d jobs waiting); try again later", s.MaxQueue)
		return
	}
	view := *job
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, view)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := make([]Job, 0, len(s.order))
	for i := len(s.order) - 1; i >= 0; i-- {
		out = append(out, *s.jobs[s.order[i]])
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[r.PathValue("id")]
	if !ok {
		httpError(w, http.StatusNotFound, "no job %q", r.PathValue("id"))
		return Job{}, false
	}
	return *j, true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, j)
	}
}

func (s *Server) content(w http.ResponseWriter, r *http.Request) {
	j, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if j.Status != "done" {
		httpError(w, http.StatusConflict, "job %s is %s", j.ID, j.Status)
		return
	}
	http.ServeFile(w, r, j.path)
}

func (s *Server) update(j *Job, f func(*Job)) {
	s.mu.Lock()
	f(j)
	s.mu.Unlock()
}

func (s *Server) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue:
			s.run(ctx, j)
		}
	}
}

func (s *Server) run(ctx context.Context, j *Job) {
	t0 := time.Now()
	s.update(j, func(j *Job) { j.Status = "running" })
	req := j.req
	req.Output = filepath.Join(s.outDir, "video-"+j.ID+"."+j.Format)
	path, err := s.gen.Generate(ctx, req, func(ev pipeline.Event) {
		s.update(j, func(j *Job) { j.Stage, j.Done, j.Total = ev.Stage, ev.Done, ev.Total })
	})
	s.update(j, func(j *Job) {
		j.Seconds = time.Since(t0).Seconds()
		if err != nil {
			j.Status, j.Error = "failed", err.Error()
			return
		}
		// The format actually written (an MP4 request becomes a GIF without ffmpeg).
		j.Format = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
		j.Status, j.path, j.VideoURL = "done", path, "/v1/videos/"+j.ID+"/content"
	})
}

// decodeImage reads a base64 image (optionally a data URL) and checks that
// it is a PNG or JPEG.
func decodeImage(s string) ([]byte, error) {
	if i := strings.Index(s, ";base64,"); strings.HasPrefix(s, "data:") && i >= 0 {
		s = s[i+len(";base64,"):]
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not valid base64: %v", err)
	}
	if imageExt(b) == "" {
		return nil, errors.New("not a PNG or JPEG image")
	}
	return b, nil
}

// imageExt is ".png" or ".jpg" by the file's magic bytes, else "".
func imageExt(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return ".png"
	case bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}):
		return ".jpg"
	}
	return ""
}
