package server

import (
	"bytes"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// CreateRequest is the body of POST /v1/videos (JSON, or the same fields
// as multipart/form-data with the image as a file part). Absent fields
// take defaults; present ones are checked as given (num_inference_steps 0
// is an error).
type CreateRequest struct {
	Prompt string `json:"prompt"`
	// Model is accepted for OpenAI-style clients and ignored: the server
	// runs the model it was started with.
	Model string `json:"model,omitempty"`
	// Size is "WIDTHxHEIGHT", e.g. "832x480" (multiples of 16).
	Size string `json:"size,omitempty"`
	// NumFrames (4k+1), or Seconds at FPS (rounded up to 4k+1 frames).
	NumFrames          *int       `json:"num_frames,omitempty"`
	Seconds            *flexFloat `json:"seconds,omitempty"`
	FPS                *int       `json:"fps,omitempty"`
	Seed               *uint64    `json:"seed,omitempty"`
	NumInferenceSteps  *int       `json:"num_inference_steps,omitempty"`
	Attention          string     `json:"attention,omitempty"`
	SLATopK            *float64   `json:"sla_topk,omitempty"`
	SigmaMax           *float64   `json:"sigma_max,omitempty"`
	Format             string     `json:"format,omitempty"`
	InputReference     string     `json:"input_reference,omitempty"` // base64 PNG/JPEG or a data URL
	AdaptiveResolution *bool      `json:"adaptive_resolution,omitempty"`
	// LoRAs are files of the server's LoRA folder merged for this job
	// (lora.go); in multipart, the same JSON array or "NAME[:SCALE],...".
	LoRAs []LoRARef `json:"loras,omitempty"`
}

// flexFloat takes a number or a numeric string (OpenAI clients send
// "seconds": "4").
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	s := string(b)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: nil}
	}
	*f = flexFloat(v)
	return nil
}

// apiField is the JSON field of a pipeline setting.
func apiField(field string) string {
	switch field {
	case pipeline.FieldFrames:
		return "num_frames"
	case pipeline.FieldSteps:
		return "num_inference_steps"
	case pipeline.FieldSize, pipeline.FieldResolution, pipeline.FieldAspect:
		return "size"
	case pipeline.FieldImage:
		return "input_reference"
	case pipeline.FieldLoRA:
		return "loras"
	}
	return field
}

// fieldError turns a pipeline error into a 400 naming the JSON field.
func fieldError(err error) *apiError {
	var fe *pipeline.FieldError
	if errors.As(err, &fe) {
		return newError(http.StatusBadRequest, fe.Code, apiField(fe.Field), "%s", pipeline.Rename(err, apiField).Error())
	}
	return newError(http.StatusBadRequest, "invalid", "", "%v", err)
}

// readCreate parses the body of POST /v1/videos and returns the request
// and the uploaded image's bytes (nil without one).
func (s *Server) readCreate(w http.ResponseWriter, r *http.Request) (CreateRequest, []byte, *apiError) {
	var req CreateRequest
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	tooLarge := func(err error) *apiError {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, "body_too_large", "", "request body over %d bytes", s.cfg.MaxBody)
		}
		return nil
	}
	switch ct {
	case "application/json":
		dec := json.NewDecoder(body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			if e := tooLarge(err); e != nil {
				return req, nil, e
			}
			return req, nil, jsonError(err)
		}
		if _, err := dec.Token(); err != io.EOF {
			if e := tooLarge(err); e != nil {
				return req, nil, e
			}
			return req, nil, newError(http.StatusBadRequest, "invalid_json", "", "trailing data after the JSON object")
		}
		var img []byte
		if req.InputReference != "" {
			b, err := decodeBase64Image(req.InputReference)
			if err != nil {
				return req, nil, newError(http.StatusBadRequest, "invalid", "input_reference", "input_reference: %v", err)
			}
			img = b
		}
		return req, img, nil
	case "multipart/form-data":
		if params["boundary"] == "" {
			return req, nil, newError(http.StatusBadRequest, "invalid", "", "multipart body without a boundary")
		}
		img, e := s.readMultipart(multipart.NewReader(body, params["boundary"]), &req)
		if e != nil {
			return req, nil, e
		}
		return req, img, nil
	}
	return req, nil, newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "",
		"Content-Type %q: send application/json or multipart/form-data", r.Header.Get("Content-Type"))
}

func jsonError(err error) *apiError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return newError(http.StatusBadRequest, "invalid_type", te.Field, "%s: wrong type (got JSON %s)", te.Field, te.Value)
	case errors.As(err, &se):
		return newError(http.StatusBadRequest, "invalid_json", "", "bad JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return newError(http.StatusBadRequest, "unknown_field", name, "unknown field %q (see docs/API.md)", name)
	case errors.Is(err, io.EOF):
		return newError(http.StatusBadRequest, "invalid_json", "", "empty body: send a JSON object")
	}
	return newError(http.StatusBadRequest, "invalid_json", "", "bad JSON body: %v", err)
}

// readMultipart reads form fields into req and the input_reference file.
func (s *Server) readMultipart(mr *multipart.Reader, req *CreateRequest) ([]byte, *apiError) {
	var img []byte
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, newError(http.StatusRequestEntityTooLarge, "body_too_large", "", "request body over %d bytes", s.cfg.MaxBody)
			}
			return nil, newError(http.StatusBadRequest, "invalid", "", "bad multipart body: %v", err)
		}
		name := part.FormName()
		if seen[name] {
			return nil, newError(http.StatusBadRequest, "invalid", name, "%s given twice", name)
		}
		seen[name] = true
		limit := 256
		switch name {
		case "prompt":
			limit = s.cfg.Limits.MaxPromptBytes
		case "input_reference":
			limit = s.cfg.Limits.MaxImageBytes
		case "loras":
			limit = 8192
		}
		b, err := io.ReadAll(io.LimitReader(part, int64(limit)+1))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, newError(http.StatusRequestEntityTooLarge, "body_too_large", "", "request body over %d bytes", s.cfg.MaxBody)
			}
			return nil, newError(http.StatusBadRequest, "invalid", name, "reading %s: %v", name, err)
		}
		if len(b) > limit {
			return nil, newError(http.StatusBadRequest, pipeline.CodeTooLarge, name, "%s: over %d bytes", name, limit)
		}
		if name == "input_reference" {
			if part.FileName() == "" {
				// A text field: base64 or a data URL, as in JSON.
				if b, err = decodeBase64Image(string(b)); err != nil {
					return nil, newError(http.StatusBadRequest, "invalid", name, "input_reference: %v", err)
				}
			}
			img = b
			continue
		}
		if e := req.setForm(name, string(b)); e != nil {
			return nil, e
		}
	}
	return img, nil
}

// setForm sets one multipart field.
func (c *CreateRequest) setForm(name, v string) *apiError {
	bad := func(want string) *apiError {
		return newError(http.StatusBadRequest, "invalid_type", name, "%s %q: want %s", name, v, want)
	}
	intp := func(p **int) *apiError {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return bad("an integer")
		}
		*p = &n
		return nil
	}
	floatp := func(p **float64) *apiError {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return bad("a number")
		}
		*p = &f
		return nil
	}
	switch name {
	case "prompt":
		c.Prompt = v
	case "model":
		c.Model = v
	case "size":
		c.Size = v
	case "attention":
		c.Attention = v
	case "format":
		c.Format = v
	case "num_frames":
		return intp(&c.NumFrames)
	case "fps":
		return intp(&c.FPS)
	case "num_inference_steps":
		return intp(&c.NumInferenceSteps)
	case "sla_topk":
		return floatp(&c.SLATopK)
	case "sigma_max":
		return floatp(&c.SigmaMax)
	case "seconds":
		var f *float64
		if e := floatp(&f); e != nil {
			return e
		}
		c.Seconds = (*flexFloat)(f)
	case "seed":
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return bad("an integer from 0 to 2^64-1")
		}
		c.Seed = &n
	case "adaptive_resolution":
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return bad("true or false")
		}
		c.AdaptiveResolution = &b
	case "loras":
		refs, e := parseLoRAForm(v)
		if e != nil {
			return e
		}
		c.LoRAs = refs
	default:
		return newError(http.StatusBadRequest, "unknown_field", name, "unknown field %q (see docs/API.md)", name)
	}
	return nil
}

// decodeBase64Image reads base64 image bytes, optionally as a data URL.
func decodeBase64Image(s string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		i := strings.Index(s, ";base64,")
		if i < 0 {
			return nil, errors.New("a data URL must be base64 (data:image/png;base64,...)")
		}
		s = s[i+len(";base64,"):]
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not valid base64: %v", err)
	}
	return b, nil
}

// randomSeed is below 2^53, so a seed survives a trip through JavaScript.
func randomSeed() uint64 {
	var b [8]byte
	crand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 11
}

// params turns the API request into pipeline.Params (the one home of
// defaults and checks).
func (c CreateRequest) params(i2v bool, image []byte) (pipeline.Params, *apiError) {
	if i2v && image == nil {
		return pipeline.Params{}, newError(http.StatusBadRequest, pipeline.CodeRequired, "input_reference",
			"input_reference is required: this server runs image-to-video (a PNG or JPEG file part, or base64 in JSON)")
	}
	if !i2v && (image != nil || c.AdaptiveResolution != nil) {
		param := "input_reference"
		if image == nil {
			param = "adaptive_resolution"
		}
		return pipeline.Params{}, newError(http.StatusBadRequest, pipeline.CodeConflict, param,
			"%s: this server runs text-to-video; start it with --i2v and the I2V experts for image input", param)
	}
	p := pipeline.Params{Prompt: c.Prompt, Frames: c.NumFrames, FPS: c.FPS, Seed: c.Seed, Steps: c.NumInferenceSteps,
		Attention: c.Attention, TopK: c.SLATopK, SigmaMax: c.SigmaMax, Format: strings.ToLower(c.Format)}
	if c.Seconds != nil {
		p.Seconds = pipeline.Ptr(float64(*c.Seconds))
	}
	if c.AdaptiveResolution != nil {
		p.AdaptiveResolution = *c.AdaptiveResolution
	}
	if c.Size != "" {
		sz, err := pipeline.ParseSize(c.Size)
		if err != nil {
			return p, fieldError(err)
		}
		p.Size = sz
	}
	if image != nil {
		p.Image = "(upload)" // the saved file's path once the job is queued
	}
	if p.Seed == nil {
		p.Seed = pipeline.Ptr(randomSeed())
	}
	return p, nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	creq, img, e := s.readCreate(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	p, e := creq.params(s.cfg.I2V, img)
	if e != nil {
		writeError(w, e)
		return
	}
	ext := ""
	if img != nil {
		info, err := pipeline.CheckImage(bytes.NewReader(img), s.cfg.Limits)
		if err != nil {
			writeError(w, fieldError(err))
			return
		}
		ext = ".png"
		if info.Format == "jpeg" {
			ext = ".jpg"
		}
	}
	req, err := p.Request(s.cfg.Limits)
	if err != nil {
		writeError(w, fieldError(err))
		return
	}
	specs, loras, e := s.resolveLoRAs(creq.LoRAs)
	if e != nil {
		writeError(w, e)
		return
	}
	req.LoRA = specs
	if c, ok := s.gen.(Checker); ok {
		if err := c.Check(req); err != nil {
			e := fieldError(err)
			if dir, derr := s.loraDir(); derr == nil && len(specs) > 0 {
				e.Message = stripDir(e.Message, dir) // LoRAs by name, not path
			}
			writeError(w, e)
			return
		}
	}
	format := p.Format
	if format == "" {
		format = pipeline.DefaultFormat
	}

	// A queue place first; the upload is written only once the job has one.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		writeError(w, newError(http.StatusServiceUnavailable, "shutting_down", "", "the server is shutting down"))
		return
	}
	if len(s.queue)+s.reserved >= s.cfg.MaxQueue {
		after := s.retryAfterLocked()
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(after))
		writeError(w, newError(http.StatusTooManyRequests, "queue_full", "", "the queue is full (%d jobs waiting); try again in about %d s", s.cfg.MaxQueue, after))
		return
	}
	s.reserved++
	id := s.newIDLocked()
	s.jobs[id] = nil // hold the id while the upload is written
	s.mu.Unlock()

	upload := ""
	if img != nil {
		upload = s.outPath(id + uploadSuffix[:len(uploadSuffix)-1] + ext)
		err = writeNew(upload, img)
	}
	now := time.Now()
	s.mu.Lock()
	s.reserved--
	if err != nil || s.closing {
		delete(s.jobs, id)
		s.mu.Unlock()
		if upload != "" {
			os.Remove(upload)
		}
		if err == nil {
			writeError(w, newError(http.StatusServiceUnavailable, "shutting_down", "", "the server is shutting down"))
		} else {
			writeError(w, newError(http.StatusInternalServerError, "internal_error", "", "saving the input image: %v", err))
		}
		return
	}
	if upload != "" {
		req.Image = upload
	}
	j := &job{req: &req, upload: upload, created: now, v: Video{
		ID: id, Object: "video", Model: s.cfg.Model, Status: statusQueued, CreatedAt: now.Unix(), Prompt: req.Prompt,
		Settings: Settings{
			Size: fmt.Sprintf("%dx%d", req.Size.W, req.Size.H), NumFrames: req.Frames, FPS: req.FPS,
			Seconds: strconv.FormatFloat(float64(req.Frames)/float64(req.FPS), 'f', 2, 64), Seed: req.Seed,
			NumInferenceSteps: req.Steps, Attention: req.Attention, SLATopK: req.TopK, SigmaMax: req.SigmaMax,
			Format: format, ImageToVideo: img != nil, AdaptiveResolution: req.AdaptiveResolution, LoRAs: loras,
		}}}
	s.jobs[id] = j
	s.order = append(s.order, j)
	s.queue = append(s.queue, j)
	s.renumberLocked()
	view := j.v
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.markDirty()
	s.log.Printf("job %s queued (position %d): %s, %d frames, %d steps", id, view.QueuePosition, view.Size, view.NumFrames, view.NumInferenceSteps)
	writeJSON(w, http.StatusAccepted, view)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// lookup finds a job (nil while its id is only reserved).
func (s *Server) lookupLocked(w http.ResponseWriter, r *http.Request) *job {
	id := r.PathValue("id")
	j := s.jobs[id]
	if j == nil {
		writeError(w, newError(http.StatusNotFound, "video_not_found", "", "no video %q", id))
	}
	return j
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	limit := -1
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, newError(http.StatusBadRequest, "invalid", "limit", "limit %q: want a positive integer", v))
			return
		}
		limit = n
	}
	s.mu.Lock()
	out := make([]Video, 0, len(s.order))
	for i := len(s.order) - 1; i >= 0 && (limit < 0 || len(out) < limit); i-- {
		out = append(out, s.order[i].v)
	}
	more := limit >= 0 && len(s.order) > limit
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out, "has_more": more})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	j := s.lookupLocked(w, r)
	var v Video
	if j != nil {
		v = j.v
	}
	s.mu.Unlock()
	if j != nil {
		writeJSON(w, http.StatusOK, v)
	}
}

func (s *Server) content(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	j := s.lookupLocked(w, r)
	if j == nil {
		s.mu.Unlock()
		return
	}
	v, file := j.v, j.file
	s.mu.Unlock()
	if v.Status != statusCompleted {
		writeError(w, newError(http.StatusConflict, "video_not_ready", "", "video %s is %s", v.ID, v.Status))
		return
	}
	f, err := os.Open(s.outPath(file))
	if err != nil {
		writeError(w, newError(http.StatusNotFound, "video_not_found", "", "the file of video %s is gone", v.ID))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		writeError(w, newError(http.StatusNotFound, "video_not_found", "", "the file of video %s is gone", v.ID))
		return
	}
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Disposition", `attachment; filename="`+file+`"`)
	}
	http.ServeContent(w, r, file, st.ModTime(), f)
}

// remove is DELETE /v1/videos/{id}: a queued or running job is cancelled
// (the answer is its video object, status cancelled); a finished one is
// deleted with its file.
func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	j := s.lookupLocked(w, r)
	if j == nil {
		s.mu.Unlock()
		return
	}
	if !terminal(j.v.Status) {
		v := s.cancelLocked(j)
		s.mu.Unlock()
		s.markDirty()
		writeJSON(w, http.StatusOK, v)
		return
	}
	if j == s.running {
		s.mu.Unlock()
		writeError(w, newError(http.StatusConflict, "video_stopping", "", "video %s is stopping; delete it once it has", j.v.ID))
		return
	}
	files := s.deleteLocked(j)
	id := j.v.ID
	s.mu.Unlock()
	for _, f := range files {
		os.Remove(f)
	}
	s.log.Printf("job %s deleted", id)
	s.markDirty()
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "video.deleted", "deleted": true})
}

// cancelJob is POST /v1/videos/{id}/cancel: cancel, never delete.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	j := s.lookupLocked(w, r)
	if j == nil {
		s.mu.Unlock()
		return
	}
	v := j.v
	if !terminal(j.v.Status) {
		v = s.cancelLocked(j)
	}
	s.mu.Unlock()
	s.markDirty()
	writeJSON(w, http.StatusOK, v)
}

// cancelLocked cancels a queued job at once, or a running one: its
// context is cancelled (the engine stops before its next network
// evaluation) and it reports cancelled from now on.
func (s *Server) cancelLocked(j *job) Video {
	if j == s.running {
		j.cancelAsk = true
		j.cancel()
		j.v.Status = statusCancelled
		j.v.Error = &VideoError{Code: "cancelled", Message: "cancelled by a client"}
		s.publishLocked(j, event{"video", j.v})
		s.log.Printf("job %s cancel requested after %.2fs running", j.v.ID, time.Since(j.started).Seconds())
		return j.v
	}
	for i, q := range s.queue {
		if q == j {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	s.renumberLocked()
	s.finishLocked(j, statusCancelled, &VideoError{Code: "cancelled", Message: "cancelled by a client before it started"})
	s.log.Printf("job %s cancelled while queued (%.2fs)", j.v.ID, time.Since(j.created).Seconds())
	return j.v
}

// events is GET /v1/videos/{id}/events: server-sent events. The first is
// the video object; then "stage", "step" and "timing" events as the job
// runs, a "video" event on each status change, and the final video object
// when the job ends, after which the stream closes. With
// ?cancel_on_close=1 a client that goes away before the job ends cancels
// it (for clients that only want the job while they watch it).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	cancelOnClose := r.URL.Query().Get("cancel_on_close") != ""
	s.mu.Lock()
	j := s.lookupLocked(w, r)
	if j == nil {
		s.mu.Unlock()
		return
	}
	first := j.v
	lastPreview := j.preview
	var ch chan event
	if !terminal(j.v.Status) || j == s.running {
		ch = make(chan event, 64)
		if j.subs == nil {
			j.subs = map[chan event]struct{}{}
		}
		j.subs[ch] = struct{}{}
	}
	s.mu.Unlock()
	unsubscribe := func() {
		s.mu.Lock()
		if j.subs != nil {
			delete(j.subs, ch)
		}
		s.mu.Unlock()
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(ev event) bool {
		b, _ := json.Marshal(ev.data)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	ok := send(event{"video", first})
	if ok && lastPreview != nil {
		ok = send(event{"preview", lastPreview})
	}
	if !ok || ch == nil {
		if ch != nil {
			unsubscribe()
		}
		return
	}
	tick := time.NewTicker(s.cfg.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				// The job ended; its final object may have been dropped.
				s.mu.Lock()
				v := j.v
				s.mu.Unlock()
				send(event{"video", v})
				return
			}
			if !send(ev) {
				unsubscribe()
				return
			}
		case <-tick.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				unsubscribe()
				return
			}
		case <-r.Context().Done():
			unsubscribe()
			if cancelOnClose {
				s.mu.Lock()
				if !terminal(j.v.Status) {
					s.cancelLocked(j)
				}
				s.mu.Unlock()
				s.markDirty()
			}
			return
		case <-s.ctx.Done():
			unsubscribe()
			return
		}
	}
}

// config is GET /v1/config: what the web page needs to build its form.
func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	l := s.cfg.Limits
	size, sigma := "832x480", float64(pipeline.DefaultSigmaMax)
	if s.cfg.I2V {
		size, sigma = "1280x720", pipeline.DefaultI2VSigmaMax
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"i2v":   s.cfg.I2V,
		"model": s.cfg.Model,
		"auth":  s.cfg.APIKey != "",
		"defaults": map[string]any{
			"size": size, "num_frames": pipeline.DefaultFrames, "fps": pipeline.DefaultFPS,
			"num_inference_steps": pipeline.DefaultSteps, "sigma_max": sigma,
			"attention": s.cfg.Attention, "sla_topk": s.cfg.TopK, "format": pipeline.DefaultFormat,
		},
		"limits": map[string]any{
			"max_frames": l.MaxFrames, "max_pixels": l.MaxPixels, "max_side": l.MaxSide,
			"max_prompt_bytes": l.MaxPromptBytes, "max_image_pixels": l.MaxImagePixels,
			"max_body_bytes": s.cfg.MaxBody, "max_queue": s.cfg.MaxQueue, "max_steps": 4,
		},
		"sizes": []string{"832x480", "480x832", "640x640", "640x480", "480x640", "1280x720", "720x1280", "960x960", "960x720", "720x960"},
	})
}
