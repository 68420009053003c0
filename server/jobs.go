package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// Job states, as the video object's status reports them.
const (
	statusQueued     = "queued"
	statusInProgress = "in_progress"
	statusCompleted  = "completed"
	statusFailed     = "failed"
	statusCancelled  = "cancelled"
)

func terminal(status string) bool {
	return status == statusCompleted || status == statusFailed || status == statusCancelled
}

// VideoError is why a job failed or was cancelled.
type VideoError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

// Timing is how long one stage of a job took.
type Timing struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// Settings are a job's resolved request: what it runs with, defaults
// filled in.
type Settings struct {
	Size               string  `json:"size"`
	NumFrames          int     `json:"num_frames"`
	Seconds            string  `json:"seconds"`
	FPS                int     `json:"fps"`
	Seed               uint64  `json:"seed"`
	NumInferenceSteps  int     `json:"num_inference_steps"`
	Attention          string  `json:"attention,omitempty"`
	SLATopK            float64 `json:"sla_topk,omitempty"`
	SigmaMax           float64 `json:"sigma_max"`
	Format             string  `json:"format"`
	ImageToVideo       bool    `json:"image_to_video,omitempty"`
	AdaptiveResolution bool    `json:"adaptive_resolution,omitempty"`
	// LoRAs are the files of the LoRA folder merged for the job.
	LoRAs []LoRAUse `json:"loras,omitempty"`
}

// Video is the video object of the API (docs/API.md).
type Video struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Model       string `json:"model,omitempty"`
	Status      string `json:"status"`
	Progress    int    `json:"progress"`
	CreatedAt   int64  `json:"created_at"`
	StartedAt   *int64 `json:"started_at"`
	CompletedAt *int64 `json:"completed_at"`
	Prompt      string `json:"prompt"`
	Settings
	// Stage is the pipeline stage running, with its progress in units of
	// that stage (steps, decoded chunks).
	Stage         string      `json:"stage,omitempty"`
	StageDone     int         `json:"stage_done,omitempty"`
	StageTotal    int         `json:"stage_total,omitempty"`
	QueuePosition int         `json:"queue_position,omitempty"`
	URL           string      `json:"url,omitempty"`
	Error         *VideoError `json:"error"`
	Note          string      `json:"note,omitempty"`
	Timings       []Timing    `json:"timings,omitempty"`
	InferenceTime float64     `json:"inference_time_s,omitempty"`
}

// job is one request's life. Fields are guarded by Server.mu.
type job struct {
	v    Video  // the public view, kept current
	file string // the video's file name in OutDir once completed

	req        *pipeline.Request // nil once finished
	upload     string            // uploaded image path; "" once removed
	cancel     context.CancelFunc
	cancelAsk  bool      // DELETE or /cancel while it runs
	created    time.Time // for durations
	started    time.Time
	stageStart time.Time
	subs       map[chan event]struct{}
	preview    *PreviewEvent // the latest, while the job runs
}

// PreviewEvent is the data of a "preview" event: a few frames of the
// sampler's current estimate, side by side in one PNG.
type PreviewEvent struct {
	Step   int    `json:"step"`
	Steps  int    `json:"steps"`
	Sample int    `json:"sample"`
	Frames int    `json:"frames"`
	Width  int    `json:"width"`  // of the whole strip
	Height int    `json:"height"` // of a frame
	Image  string `json:"image"`  // data:image/png;base64,...
}

// event is one server-sent event of a job's stream.
type event struct {
	name string // video, stage, step, timing
	data any
}

// promptPreview is what a finished job keeps of its prompt: the request
// and the full prompt are freed once nothing needs them.
const promptPreview = 1000

func preview(s string) string {
	if len(s) <= promptPreview {
		return s
	}
	cut := promptPreview
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func unixPtr(t time.Time) *int64 {
	u := t.Unix()
	return &u
}

// worker runs queued jobs one at a time until Close.
func (s *Server) worker() {
	defer s.wg.Done()
	for {
		j, ctx := s.next()
		if j == nil {
			return
		}
		s.run(ctx, j)
	}
}

// next takes the first queued job and marks it running, or returns nil
// once the server closes.
func (s *Server) next() (*job, context.Context) {
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return nil, nil
		}
		if len(s.queue) > 0 {
			j := s.queue[0]
			s.queue = s.queue[1:]
			ctx, cancel := context.WithCancel(s.ctx)
			j.cancel = cancel
			j.started = time.Now()
			j.stageStart = j.started
			j.v.Status, j.v.StartedAt, j.v.QueuePosition = statusInProgress, unixPtr(j.started), 0
			s.running = j
			s.renumberLocked()
			s.publishLocked(j, event{"video", j.v})
			s.mu.Unlock()
			s.markDirty()
			return j, ctx
		}
		if s.idle {
			// The queue has emptied: the generator may release what it
			// kept for a next job (merged LoRA weights).
			s.idle = false
			s.mu.Unlock()
			if g, ok := s.gen.(Idler); ok {
				if err := g.Idle(); err != nil {
					s.log.Printf("after the last job: %v", err)
				}
			}
			continue
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return nil, nil
		}
	}
}

// run generates one job and records how it ended.
func (s *Server) run(ctx context.Context, j *job) {
	s.mu.Lock()
	req := *j.req
	id, format := j.v.ID, j.v.Format
	wait := j.started.Sub(j.created)
	s.mu.Unlock()
	req.Output = s.outPath(id + "." + format)
	s.log.Printf("job %s started after %s queued: %s, %d frames, %d steps, seed %d", id, wait.Round(time.Millisecond), j.v.Size, req.Frames, req.Steps, req.Seed)
	var out Output
	var err error
	// Never overwrite: ids are random, but a file of that name (or the GIF
	// an MP4 falls back to) must not exist.
	for _, p := range []string{req.Output, s.outPath(id + ".gif")} {
		if _, serr := os.Lstat(p); serr == nil {
			err = fmt.Errorf("%s already exists; refusing to overwrite it", p)
		}
	}
	if err == nil {
		var stop func()
		if s.cfg.Previews {
			req.OnPreview, stop = s.previews(j)
		}
		if mine := req.LoRA; len(mine) > 0 {
			// Merged weights stay for the next job only if it wants them.
			req.KeepLoRA = func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return !s.closing && len(s.queue) > 0 && s.queue[0].req != nil && sameLoRAs(s.queue[0].req.LoRA, mine)
			}
		}
		out, err = s.generate(ctx, req, func(ev pipeline.Event) { s.progress(j, ev) })
		if stop != nil {
			stop()
		}
	}
	s.mu.Lock()
	elapsed := time.Since(j.started)
	var status string
	var verr *VideoError
	switch {
	case j.cancelAsk:
		status, verr = statusCancelled, &VideoError{Code: "cancelled", Message: "cancelled by a client"}
	case s.ctx.Err() != nil:
		status, verr = statusCancelled, &VideoError{Code: "server_shutdown", Message: "the server stopped while this job ran"}
	case err != nil:
		status, verr = statusFailed, &VideoError{Code: "generation_failed", Message: err.Error()}
		var fe *pipeline.FieldError
		if errors.As(err, &fe) {
			verr.Code, verr.Param = fe.Code, apiField(fe.Field)
			verr.Message = pipeline.Rename(err, apiField).Error()
		}
	default:
		status = statusCompleted
	}
	if status == statusCompleted {
		j.file = filepath.Base(out.Path)
		j.v.Format = strings.TrimPrefix(strings.ToLower(filepath.Ext(out.Path)), ".")
		j.v.URL = "/v1/videos/" + id + "/content"
		j.v.Note = out.Note
		j.v.InferenceTime = elapsed.Seconds()
		j.v.Timings = nil
		for _, t := range out.Timings {
			j.v.Timings = append(j.v.Timings, Timing{t.Stage, t.Duration.Seconds()})
		}
	} else if out.Path != "" {
		os.Remove(out.Path) // cancelled after the file was written
	}
	j.cancel()
	s.running = nil
	s.idle = true
	s.finishLocked(j, status, verr)
	if status == statusCompleted {
		// Recent job time, for Retry-After.
		if s.avgJob == 0 {
			s.avgJob = elapsed
		} else {
			s.avgJob = (3*s.avgJob + elapsed) / 4
		}
	}
	var parts []string
	for _, t := range j.v.Timings {
		parts = append(parts, fmt.Sprintf("%s %.2fs", t.Stage, t.Seconds))
	}
	file := j.file
	s.mu.Unlock()
	switch status {
	case statusCompleted:
		s.log.Printf("job %s completed in %.2fs (%s): %s", id, elapsed.Seconds(), strings.Join(parts, ", "), file)
	case statusFailed:
		s.log.Printf("job %s failed after %.2fs: %s", id, elapsed.Seconds(), verr.Message)
	default:
		s.log.Printf("job %s cancelled after %.2fs running (%s)", id, elapsed.Seconds(), verr.Code)
	}
	s.markDirty()
	s.evict()
}

// generate calls the generator; a panic fails the job instead of the
// process.
func (s *Server) generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (out Output, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("internal error: %v", v)
		}
	}()
	return s.gen.Generate(ctx, r, progress)
}

// finishLocked ends a job: its status, error and completion time; the
// request, the full prompt and the uploaded image are freed; streams get
// the final video object and end.
func (s *Server) finishLocked(j *job, status string, verr *VideoError) {
	now := time.Now()
	j.v.Status, j.v.Error, j.v.CompletedAt = status, verr, unixPtr(now)
	j.v.Stage, j.v.StageDone, j.v.StageTotal, j.v.QueuePosition = "", 0, 0, 0
	if status == statusCompleted {
		j.v.Progress = 100
	}
	j.v.Prompt = preview(j.v.Prompt)
	j.req = nil
	j.preview = nil
	if j.upload != "" {
		os.Remove(j.upload)
		j.upload = ""
	}
	s.publishLocked(j, event{"video", j.v})
	for ch := range j.subs {
		close(ch)
	}
	j.subs = nil
}

// progress records a pipeline event: the stage, its counts, the progress
// percentage, and a timing event when a stage ends.
func (s *Server) progress(j *job, ev pipeline.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if terminal(j.v.Status) {
		return
	}
	now := time.Now()
	if ev.Stage != j.v.Stage {
		if j.v.Stage != "" {
			s.publishLocked(j, event{"timing", Timing{j.v.Stage, now.Sub(j.stageStart).Seconds()}})
		}
		j.stageStart = now
		s.publishLocked(j, event{"stage", map[string]any{"stage": ev.Stage, "note": ev.Note}})
	}
	j.v.Stage, j.v.StageDone, j.v.StageTotal = ev.Stage, ev.Done, ev.Total
	frac := 0.0
	if ev.Total > 0 {
		frac = float64(min(ev.Done, ev.Total)) / float64(ev.Total)
	}
	p := j.v.Progress
	switch ev.Stage {
	case "step":
		p = 5 + int(75*frac)
		s.publishLocked(j, event{"step", map[string]any{"step": ev.Done, "steps": ev.Total, "note": ev.Note}})
	case "load-vae":
		p = 80
	case "decode":
		p = 80 + int(18*frac)
	case "write":
		p = 98
	default:
		p = max(p, 2)
	}
	j.v.Progress = max(j.v.Progress, min(p, 99))
}

// publishLocked sends an event to the job's streams; a stream that is not
// keeping up misses it (the final video object always arrives: the
// stream reads the job when its channel closes).
func (s *Server) publishLocked(j *job, ev event) {
	for ch := range j.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// renumberLocked sets the queue positions (1 = next to run).
func (s *Server) renumberLocked() {
	for i, q := range s.queue {
		q.v.QueuePosition = i + 1
	}
}

// retryAfter estimates when a queue place frees: the recent job time.
func (s *Server) retryAfterLocked() int {
	d := s.avgJob
	if d <= 0 {
		d = 10 * time.Second
	}
	return max(1, min(3600, int(d.Seconds()+0.999)))
}

// previews returns the OnPreview callback of a job and a stop func. The
// callback runs on the sampling goroutine, so it only hands the preview to
// an encoder goroutine (the latest wins when it is busy); stop waits for
// that goroutine to end.
func (s *Server) previews(j *job) (func(pipeline.Preview), func()) {
	in := make(chan pipeline.Preview, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range in {
			img, w, err := previewPNG(p)
			if err != nil {
				continue
			}
			ev := &PreviewEvent{Step: p.Step, Steps: p.Steps, Sample: p.Sample, Frames: len(p.Frames), Width: w, Height: p.Height, Image: img}
			s.mu.Lock()
			if !terminal(j.v.Status) {
				j.preview = ev
				s.publishLocked(j, event{"preview", ev})
			}
			s.mu.Unlock()
		}
	}()
	send := func(p pipeline.Preview) {
		select {
		case in <- p:
		default:
			select { // replace the waiting one with this newer preview
			case <-in:
			default:
			}
			select {
			case in <- p:
			default:
			}
		}
	}
	return send, func() { close(in); <-done }
}

// previewPNG lays a preview's frames side by side in one PNG data URL.
func previewPNG(p pipeline.Preview) (string, int, error) {
	n, w, h := len(p.Frames), p.Width, p.Height
	if n == 0 || w <= 0 || h <= 0 {
		return "", 0, fmt.Errorf("empty preview")
	}
	img := image.NewRGBA(image.Rect(0, 0, n*w, h))
	for f, rgb := range p.Frames {
		if len(rgb) < w*h*3 {
			return "", 0, fmt.Errorf("preview frame of %d bytes", len(rgb))
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				i, o := (y*w+x)*3, img.PixOffset(f*w+x, y)
				img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = rgb[i], rgb[i+1], rgb[i+2], 255
			}
		}
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, img); err != nil {
		return "", 0, err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes()), n * w, nil
}
