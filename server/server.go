// Package server is the HTTP API and web page for local, interactive video
// generation. Jobs run one at a time (one GPU) in submission order; clients
// poll a job for progress and fetch the video when it is done.
package server

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

//go:embed web
var webFS embed.FS

// Generator is what the server drives: pipeline.Engine in production, a fake
// in tests.
type Generator interface {
	Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (*video.Clip, error)
}

// EngineGenerator adapts a pipeline.Engine.
type EngineGenerator struct{ Engine *pipeline.Engine }

func (g EngineGenerator) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (*video.Clip, error) {
	g.Engine.Progress = progress
	res, err := g.Engine.Generate(ctx, r)
	if err != nil {
		return nil, err
	}
	return res.Clip, nil
}

// Request is the JSON body of POST /v1/videos. Zero fields take defaults.
type Request struct {
	Prompt     string  `json:"prompt"`
	Steps      int     `json:"steps,omitempty"`
	SigmaMax   float64 `json:"sigma_max,omitempty"`
	Resolution string  `json:"resolution,omitempty"`
	Aspect     string  `json:"aspect,omitempty"`
	Frames     int     `json:"frames,omitempty"`
	Seed       *uint64 `json:"seed,omitempty"`
	Format     string  `json:"format,omitempty"` // mp4 (default) or gif
}

// Job is the JSON view of a job.
type Job struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"` // queued, running, done, failed
	Stage    string    `json:"stage,omitempty"`
	Done     int       `json:"done,omitempty"`
	Total    int       `json:"total,omitempty"`
	Error    string    `json:"error,omitempty"`
	VideoURL string    `json:"video_url,omitempty"`
	Created  time.Time `json:"created"`
	Seconds  float64   `json:"seconds,omitempty"`

	req  pipeline.Request
	path string
	fmt  string
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

// toPipeline validates a request and fills defaults (the reference's T2V
// defaults: 4 steps, σmax 80, 480p 16:9, 81 frames).
func (r Request) toPipeline() (pipeline.Request, string, error) {
	if r.Prompt == "" {
		return pipeline.Request{}, "", errors.New("prompt is required")
	}
	pr := pipeline.Request{Prompt: r.Prompt, Sampler: "rcm", Steps: r.Steps, SigmaMax: r.SigmaMax, Frames: r.Frames, Samples: 1}
	if pr.Steps == 0 {
		pr.Steps = 4
	}
	if pr.SigmaMax == 0 {
		pr.SigmaMax = 80
	}
	if pr.Frames == 0 {
		pr.Frames = 81
	}
	res, aspect := r.Resolution, r.Aspect
	if res == "" {
		res = "480p"
	}
	if aspect == "" {
		aspect = "16:9"
	}
	size, err := pipeline.Resolution(res, aspect)
	if err != nil {
		return pr, "", err
	}
	pr.Size = size
	if r.Seed != nil {
		pr.Seed = *r.Seed
	} else {
		pr.Seed = uint64(time.Now().UnixNano())
	}
	format := r.Format
	if format == "" {
		format = "mp4"
	}
	if format != "mp4" && format != "gif" {
		return pr, "", fmt.Errorf("format %q: choose mp4 or gif", format)
	}
	return pr, format, pr.Validate()
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON body: %v", err)
		return
	}
	pr, format, err := req.toPipeline()
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.mu.Lock()
	s.nextID++
	job := &Job{ID: strconv.Itoa(s.nextID), Status: "queued", Created: time.Now(), req: pr, fmt: format}
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
	clip, err := s.gen.Generate(ctx, j.req, func(ev pipeline.Event) {
		s.update(j, func(j *Job) { j.Stage, j.Done, j.Total = ev.Stage, ev.Done, ev.Total })
	})
	var path string
	if err == nil {
		path = filepath.Join(s.outDir, "video-"+j.ID+"."+j.fmt)
		_, err = video.Write(path, clip)
	}
	s.update(j, func(j *Job) {
		j.Seconds = time.Since(t0).Seconds()
		if err != nil {
			j.Status, j.Error = "failed", err.Error()
			return
		}
		j.Status, j.path, j.VideoURL = "done", path, "/v1/videos/"+j.ID+"/content"
	})
}
