package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"log"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// fakeGen is a fast generator: a small clip whose frame count follows the
// request, written as the pipeline would. The prompt "fail" fails, "panic"
// panics. With hold set, each job waits for a value (or its context)
// after its first stage; each step checks the context, as the engine does.
type fakeGen struct {
	mu        sync.Mutex
	got       []pipeline.Request
	ctxErrs   []error
	hold      chan struct{}
	started   chan string
	stepDelay time.Duration
}

func (f *fakeGen) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (Output, error) {
	f.mu.Lock()
	f.got = append(f.got, r)
	f.mu.Unlock()
	if f.started != nil {
		f.started <- r.Output
	}
	end := func(err error) (Output, error) {
		f.mu.Lock()
		f.ctxErrs = append(f.ctxErrs, ctx.Err())
		f.mu.Unlock()
		return Output{}, err
	}
	switch r.Prompt {
	case "fail":
		return end(errors.New("out of GPU memory: asked 12 GiB, 3 GiB free"))
	case "panic":
		panic("fake generator panics")
	}
	progress(pipeline.Event{Stage: "encode", Done: 1, Total: 1})
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return end(ctx.Err())
		}
	}
	for i := 0; i < r.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return end(err)
		}
		progress(pipeline.Event{Stage: "step", Done: i, Total: r.Steps})
		time.Sleep(f.stepDelay)
		progress(pipeline.Event{Stage: "step", Done: i + 1, Total: r.Steps})
		fakePreview(r, i+1)
	}
	progress(pipeline.Event{Stage: "decode", Done: 1, Total: 1})
	c := &video.Clip{Width: 16, Height: 8, FPS: 16}
	for i := 0; i < r.Frames; i++ {
		c.Frames = append(c.Frames, make([]byte, 16*8*3))
	}
	written, note, err := pipeline.WriteOutput(r.Output, c)
	f.mu.Lock()
	f.ctxErrs = append(f.ctxErrs, ctx.Err())
	f.mu.Unlock()
	return Output{Path: written, Note: note, Timings: []pipeline.Timing{{Stage: "sample", Duration: time.Millisecond}}}, err
}

// fakePreview sends a preview of two 8×4 frames after step, if asked.
func fakePreview(r pipeline.Request, step int) {
	if r.OnPreview == nil {
		return
	}
	fr := make([]byte, 8*4*3)
	for i := range fr {
		fr[i] = byte(step * 60)
	}
	r.OnPreview(pipeline.Preview{Step: step, Steps: r.Steps, Width: 8, Height: 4, Frames: [][]byte{fr, fr}, FrameIndex: []int{0, 4}})
}

func (f *fakeGen) requests() []pipeline.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pipeline.Request(nil), f.got...)
}

// testServer is a Server behind httptest on 127.0.0.1, with its log.
type testServer struct {
	*Server
	ts  *httptest.Server
	url string
	dir string
	log *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newTestServer(t *testing.T, gen Generator, cfg Config) *testServer {
	t.Helper()
	if cfg.OutDir == "" {
		cfg.OutDir = t.TempDir()
	}
	buf := &syncBuffer{}
	cfg.Log = log.New(buf, "", 0)
	s, err := New(gen, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return &testServer{Server: s, ts: ts, url: ts.URL, dir: cfg.OutDir, log: buf}
}

// call sends a request and decodes a JSON answer (nil if it is not JSON).
func (ts *testServer) call(t *testing.T, method, path, contentType, body string, hdr ...string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header
}

func (ts *testServer) post(t *testing.T, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	code, m, _ := ts.call(t, "POST", "/v1/videos", "application/json", body, hdr...)
	return code, m
}

// wait polls a job until its status is one of want.
func (ts *testServer) wait(t *testing.T, id string, want ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, m, _ := ts.call(t, "GET", "/v1/videos/"+id, "", "")
		for _, w := range want {
			if m["status"] == w {
				return m
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("job %s did not reach %v", id, want)
	return nil
}

// apiErr checks an error answer: the JSON error object with a message, the
// code and the field. A missing or empty error body fails.
func apiErr(t *testing.T, what string, m map[string]any, code, param string) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Errorf("%s: no error object in %v", what, m)
		return
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("%s: empty error message: %v", what, e)
	}
	if e["code"] != code {
		t.Errorf("%s: code %v, want %q (%v)", what, e["code"], code, e["message"])
	}
	if got, _ := e["param"].(string); got != param {
		t.Errorf("%s: param %q, want %q (%v)", what, got, param, e["message"])
	}
}

func TestCreateRunFetch(t *testing.T) {
	gen := &fakeGen{}
	ts := newTestServer(t, gen, Config{Model: "tiny"})

	// The page is served and calls the API.
	resp, err := http.Get(ts.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("/v1/videos")) {
		t.Fatalf("index page: %d, calls the API: %v", resp.StatusCode, bytes.Contains(page, []byte("/v1/videos")))
	}

	code, m := ts.post(t, `{"prompt":"a fox","num_frames":5,"seed":7,"format":"gif"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, m)
	}
	id := m["id"].(string)
	if !strings.HasPrefix(id, "video_") || m["object"] != "video" || m["status"] != "queued" || m["model"] != "tiny" || m["created_at"] == nil {
		t.Fatalf("created: %v", m)
	}
	j := ts.wait(t, id, "completed", "failed")
	if j["status"] != "completed" || j["format"] != "gif" || j["progress"] != 100.0 || j["completed_at"] == nil || j["error"] != nil || j["url"] != "/v1/videos/"+id+"/content" {
		t.Fatalf("job: %v", j)
	}
	if j["size"] != "832x480" || j["num_frames"] != 5.0 || j["seed"] != 7.0 || j["num_inference_steps"] != 4.0 || j["sigma_max"] != 80.0 || j["fps"] != 16.0 {
		t.Fatalf("settings: %v", j)
	}
	r := gen.requests()[0]
	if r.Steps != 4 || r.SigmaMax != 80 || r.Size != (pipeline.Size{W: 832, H: 480}) || r.Seed != 7 || r.Frames != 5 {
		t.Fatalf("defaults not applied: %+v", r)
	}
	resp, err = http.Get(ts.url + j["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	gif, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(gif, []byte("GIF8")) || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("video content: status %d, %d bytes, %s", resp.StatusCode, len(gif), resp.Header.Get("Content-Type"))
	}

	// OpenAI-style fields: seconds (also as a string) with fps, size.
	code, m = ts.post(t, `{"prompt":"a fox","seconds":"1","fps":8,"size":"640x384","num_inference_steps":2,"attention":"sagesla","sla_topk":0.2,"sigma_max":50,"model":"sora-2"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, m)
	}
	if m["num_frames"] != 9.0 || m["size"] != "640x384" || m["seconds"] != "1.12" {
		t.Fatalf("seconds at 8 fps: %v", m)
	}
	ts.wait(t, m["id"].(string), "completed")
	r = gen.requests()[1]
	if r.Frames != 9 || r.FPS != 8 || r.Steps != 2 || r.Attention != "sagesla" || r.TopK != 0.2 || r.SigmaMax != 50 {
		t.Fatalf("request: %+v", r)
	}

	// A failing generation reports why; a panicking one fails its job, not
	// the process.
	_, m = ts.post(t, `{"prompt":"fail","num_frames":5}`)
	j = ts.wait(t, m["id"].(string), "failed")
	if e, _ := j["error"].(map[string]any); e == nil || e["code"] != "generation_failed" || !strings.Contains(e["message"].(string), "out of GPU memory") {
		t.Fatalf("failed job: %v", j)
	}
	_, m = ts.post(t, `{"prompt":"panic","num_frames":5}`)
	j = ts.wait(t, m["id"].(string), "failed")
	if e, _ := j["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "panics") {
		t.Fatalf("panicking job: %v", j)
	}

	// The list, newest first.
	code, m, _ = ts.call(t, "GET", "/v1/videos", "", "")
	data, _ := m["data"].([]any)
	if code != 200 || m["object"] != "list" || len(data) != 4 || data[0].(map[string]any)["id"] != j["id"] {
		t.Fatalf("list: %d %v", code, m)
	}
	_, m, _ = ts.call(t, "GET", "/v1/videos?limit=1", "", "")
	if data, _ := m["data"].([]any); len(data) != 1 || m["has_more"] != true {
		t.Fatalf("list limit 1: %v", m)
	}
}

// Every refusal is JSON naming the field and a machine-readable code; the
// test fails if the error body is missing.
func TestRequestErrors(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{})
	for _, c := range []struct {
		body        string
		status      int
		code, param string
	}{
		{`{}`, 400, "required", "prompt"},
		{`{"prompt":"x","num_inference_steps":0}`, 400, "out_of_range", "num_inference_steps"},
		{`{"prompt":"x","num_inference_steps":9}`, 400, "out_of_range", "num_inference_steps"},
		{`{"prompt":"x","num_frames":80}`, 400, "invalid", "num_frames"},
		{`{"prompt":"x","num_frames":1000000001,"num_inference_steps":1,"size":"640x640"}`, 400, "too_large", "num_frames"},
		{`{"prompt":"x","num_frames":81,"seconds":5}`, 400, "conflict", "seconds"},
		{`{"prompt":"x","seconds":"soon"}`, 400, "invalid_type", "seconds"},
		{`{"prompt":"x","size":"4k"}`, 400, "invalid", "size"},
		{`{"prompt":"x","size":"830x480"}`, 400, "invalid", "size"},
		{`{"prompt":"x","size":"4096x4096"}`, 400, "too_large", "size"},
		{`{"prompt":"x","sla_topk":2}`, 400, "out_of_range", "sla_topk"},
		{`{"prompt":"x","attention":"flash"}`, 400, "invalid", "attention"},
		{`{"prompt":"x","sigma_max":0}`, 400, "out_of_range", "sigma_max"},
		{`{"prompt":"x","fps":0}`, 400, "out_of_range", "fps"},
		{`{"prompt":"x","seed":-1}`, 400, "invalid_type", "seed"},
		{`{"prompt":"x","format":"avi"}`, 400, "invalid", "format"},
		{`{"prompt":"x","bogus":1}`, 400, "unknown_field", "bogus"},
		{`{"prompt":"x","frames":81}`, 400, "unknown_field", "frames"},
		{`{"prompt":"x","input_reference":"aGk="}`, 400, "conflict", "input_reference"},
		{`{"prompt":"` + strings.Repeat("a", 20000) + `"}`, 400, "too_large", "prompt"},
		{`not json`, 400, "invalid_json", ""},
		{``, 400, "invalid_json", ""},
		{`{"prompt":"x"} {"prompt":"y"}`, 400, "invalid_json", ""},
		{`{"prompt":"x"}garbage`, 400, "invalid_json", ""},
	} {
		code, m := ts.post(t, c.body)
		if code != c.status {
			t.Errorf("%.60s: status %d, want %d (%v)", c.body, code, c.status, m)
		}
		apiErr(t, c.body[:min(len(c.body), 60)], m, c.code, c.param)
	}
	// A text/plain POST (what a cross-site form can send) is refused.
	code, m, _ := ts.call(t, "POST", "/v1/videos", "text/plain", `{"prompt":"x"}`)
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", code)
	}
	apiErr(t, "text/plain", m, "unsupported_media_type", "")
	if n := len(ts.jobs); n != 0 {
		t.Errorf("%d jobs queued by refused requests", n)
	}
}

func TestRoutesAnswerJSON(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{})
	code, m, h := ts.call(t, "PUT", "/v1/videos", "application/json", `{}`)
	if code != 405 || !strings.Contains(h.Get("Allow"), "POST") {
		t.Errorf("PUT /v1/videos: %d, Allow %q", code, h.Get("Allow"))
	}
	apiErr(t, "405", m, "method_not_allowed", "")
	code, m, _ = ts.call(t, "POST", "/v1/videos/video_00/content", "application/json", `{}`)
	if code != 405 {
		t.Errorf("POST content: %d", code)
	}
	apiErr(t, "405 content", m, "method_not_allowed", "")
	code, m, _ = ts.call(t, "GET", "/v1/nothing", "", "")
	if code != 404 {
		t.Errorf("GET /v1/nothing: %d", code)
	}
	apiErr(t, "404 route", m, "no_route", "")
	code, m, _ = ts.call(t, "GET", "/v1/videos/video_0123", "", "")
	if code != 404 {
		t.Errorf("unknown video: %d", code)
	}
	apiErr(t, "404 video", m, "video_not_found", "")
	code, m, _ = ts.call(t, "DELETE", "/v1/videos/video_0123", "", "")
	if code != 404 {
		t.Errorf("DELETE unknown video: %d", code)
	}
	apiErr(t, "DELETE 404", m, "video_not_found", "")
}

func TestBodyLimit(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{MaxBody: 1 << 10})
	code, m := ts.post(t, `{"prompt":"`+strings.Repeat("a", 4<<10)+`"}`)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("4 KiB body over a 1 KiB limit: %d %v", code, m)
	}
	apiErr(t, "413", m, "body_too_large", "")
	// A multipart body too.
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("prompt", strings.Repeat("a", 200))
	fw, _ := mw.CreateFormFile("input_reference", "x.png")
	fw.Write(make([]byte, 8<<10))
	mw.Close()
	code, m, _ = ts.call(t, "POST", "/v1/videos", mw.FormDataContentType(), b.String())
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("multipart over the limit: %d %v", code, m)
	}
}

func TestQueueLimit(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 8)}
	ts := newTestServer(t, gen, Config{MaxQueue: 2})
	var ids []string
	for i := 0; i < 3; i++ {
		code, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
		if code != http.StatusAccepted {
			t.Fatalf("job %d: %d %v", i, code, m)
		}
		ids = append(ids, m["id"].(string))
		if i == 0 {
			<-gen.started // the first runs; two may wait
		}
	}
	code, m, h := ts.call(t, "POST", "/v1/videos", "application/json", `{"prompt":"x","num_frames":1}`)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("4th job with 2 waiting: %d, Retry-After %q", code, h.Get("Retry-After"))
	}
	apiErr(t, "429", m, "queue_full", "")
	_, m, _ = ts.call(t, "GET", "/v1/videos/"+ids[2], "", "")
	if m["queue_position"] != 2.0 {
		t.Errorf("queue position of the third job: %v", m["queue_position"])
	}
	// Cancelling a waiting job frees its place.
	ts.call(t, "DELETE", "/v1/videos/"+ids[1], "", "")
	if code, m := ts.post(t, `{"prompt":"x","num_frames":1}`); code != http.StatusAccepted {
		t.Fatalf("after a cancel: %d %v", code, m)
	}
	close(gen.hold)
}

// DELETE cancels: a queued job at once; a running one through its context,
// so the generator stops within a step; a finished one is deleted with its
// file. POST .../cancel cancels without deleting.
func TestCancel(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 8), stepDelay: 5 * time.Millisecond}
	ts := newTestServer(t, gen, Config{})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	running := m["id"].(string)
	<-gen.started
	_, m = ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	queued := m["id"].(string)

	code, m, _ := ts.call(t, "DELETE", "/v1/videos/"+queued, "", "")
	if code != 200 || m["status"] != "cancelled" {
		t.Fatalf("DELETE queued: %d %v", code, m)
	}
	code, m, _ = ts.call(t, "DELETE", "/v1/videos/"+running, "", "")
	if code != 200 || m["status"] != "cancelled" {
		t.Fatalf("DELETE running: %d %v", code, m)
	}
	j := ts.wait(t, running, "cancelled")
	if e, _ := j["error"].(map[string]any); e == nil || e["code"] != "cancelled" {
		t.Fatalf("cancelled job: %v", j)
	}
	// The generator saw its context cancelled, and the next job runs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		gen.mu.Lock()
		n := len(gen.ctxErrs)
		gen.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the generator was not stopped")
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(gen.ctxErrs[0], context.Canceled) {
		t.Fatalf("generator context: %v", gen.ctxErrs[0])
	}
	if len(gen.requests()) != 1 {
		t.Fatalf("the cancelled queued job ran")
	}
	code, m, _ = ts.call(t, "GET", "/v1/videos/"+running+"/content", "", "")
	if code != http.StatusConflict {
		t.Errorf("content of a cancelled job: %d", code)
	}
	apiErr(t, "content 409", m, "video_not_ready", "")

	// A finished job: /cancel leaves it, DELETE removes it and its file.
	close(gen.hold)
	_, m = ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	done := m["id"].(string)
	ts.wait(t, done, "completed")
	code, m, _ = ts.call(t, "POST", "/v1/videos/"+done+"/cancel", "application/json", "")
	if code != 200 || m["status"] != "completed" {
		t.Fatalf("cancel of a completed job: %d %v", code, m)
	}
	file := filepath.Join(ts.dir, done+".gif")
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	code, m, _ = ts.call(t, "DELETE", "/v1/videos/"+done, "", "")
	if code != 200 || m["deleted"] != true || m["object"] != "video.deleted" {
		t.Fatalf("DELETE finished: %d %v", code, m)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the deleted job's file is still there: %v", err)
	}
	if code, _, _ := ts.call(t, "GET", "/v1/videos/"+done, "", ""); code != 404 {
		t.Fatalf("deleted job still answers %d", code)
	}
	logs := ts.log.String()
	for _, want := range []string{"job " + queued + " cancelled while queued", "job " + running + " cancel requested", "job " + running + " cancelled after", "job " + done + " completed in", "job " + done + " deleted"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// sse reads a server-sent event stream into (event, data) pairs until it
// ends.
func sse(t *testing.T, r io.Reader, each func(name string, data map[string]any) bool) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			var m map[string]any
			if err := json.Unmarshal([]byte(line[len("data: "):]), &m); err != nil {
				t.Fatalf("event %s: %v", name, err)
			}
			if !each(name, m) {
				return
			}
		}
	}
}

func TestEvents(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 1)}
	ts := newTestServer(t, gen, Config{KeepAlive: 10 * time.Millisecond, Previews: true})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"num_inference_steps":3,"format":"gif"}`)
	id := m["id"].(string)
	resp, err := http.Get(ts.url + "/v1/videos/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	<-gen.started
	close(gen.hold)
	var names []string
	var steps []float64
	var last, prev map[string]any
	sse(t, resp.Body, func(name string, d map[string]any) bool {
		names = append(names, name)
		if name == "step" {
			steps = append(steps, d["step"].(float64))
		}
		if name == "preview" {
			prev = d
		}
		if name == "video" {
			last = d
		}
		return true
	})
	if names[0] != "video" || last["status"] != "completed" || last["progress"] != 100.0 {
		t.Fatalf("events %v, last video %v", names, last)
	}
	if len(steps) != 6 || steps[5] != 3 {
		t.Errorf("step events %v", steps)
	}
	// Previews: a PNG of the frames side by side.
	if prev == nil {
		t.Fatal("no preview event")
	}
	img, _ := prev["image"].(string)
	b64, ok := strings.CutPrefix(img, "data:image/png;base64,")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil {
		t.Fatalf("preview image %.40q: %v", img, err)
	}
	if pi, err := png.Decode(bytes.NewReader(raw)); err != nil || pi.Bounds().Dx() != 16 || pi.Bounds().Dy() != 4 || prev["step"] != 3.0 || prev["frames"] != 2.0 {
		t.Fatalf("preview %v: %v", prev, err)
	}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	for _, n := range []string{"stage", "step", "timing", "preview"} {
		if !has[n] {
			t.Errorf("no %q event in %v", n, names)
		}
	}
	// A finished job's stream is its video object, then the end.
	resp2, err := http.Get(ts.url + "/v1/videos/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sse(t, resp2.Body, func(name string, d map[string]any) bool { n++; return true })
	resp2.Body.Close()
	if n != 1 {
		t.Errorf("finished job's stream: %d events", n)
	}
}

// A client that leaves an event stream is unsubscribed (no goroutine or
// channel left behind).
func TestEventsClientLeaves(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 1)}
	ts := newTestServer(t, gen, Config{KeepAlive: 5 * time.Millisecond})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	id := m["id"].(string)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+"/v1/videos/"+id+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts.mu.Lock()
		n := len(ts.jobs[id].subs)
		ts.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream's subscription outlived its client")
		}
		time.Sleep(time.Millisecond)
	}
	close(gen.hold)
	// Leaving the stream does not cancel the job.
	ts.wait(t, id, "completed")
}

// With ?cancel_on_close=1 a client that leaves cancels its job.
func TestEventsCancelOnClose(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 1)}
	ts := newTestServer(t, gen, Config{})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	id := m["id"].(string)
	<-gen.started
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+"/v1/videos/"+id+"/events?cancel_on_close=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	cancel()
	resp.Body.Close()
	j := ts.wait(t, id, "cancelled")
	if e := j["error"].(map[string]any); e["code"] != "cancelled" {
		t.Fatalf("job: %v", j)
	}
}

func TestHostAndOriginChecks(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{AllowedHosts: []string{"gpu-box.lan"}, AllowedOrigins: []string{"https://ok.example"}})
	body := `{"prompt":"x","num_frames":1,"format":"gif"}`
	host := strings.TrimPrefix(ts.url, "http://")
	for _, c := range []struct {
		name   string
		hdr    []string
		status int
		code   string
	}{
		{"DNS rebinding: foreign Host", []string{"Host", "evil.example:8188"}, 403, "host_not_allowed"},
		{"cross-site POST", []string{"Origin", "https://evil.example"}, 403, "cross_origin"},
		{"opaque origin", []string{"Origin", "null"}, 403, "cross_origin"},
		{"cross-site fetch without Origin", []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross_origin"},
		{"same origin", []string{"Origin", "http://" + host}, 202, ""},
		{"allowed origin", []string{"Origin", "https://ok.example"}, 202, ""},
		{"localhost", []string{"Host", "localhost:8188", "Origin", "http://localhost:8188"}, 202, ""},
		{"allowed host", []string{"Host", "gpu-box.lan:8188"}, 202, ""},
		{"IPv6 loopback", []string{"Host", "[::1]:8188"}, 202, ""},
		{"no browser headers (curl)", nil, 202, ""},
	} {
		code, m := ts.post(t, body, c.hdr...)
		if code != c.status {
			t.Errorf("%s: %d, want %d (%v)", c.name, code, c.status, m)
		}
		if c.code != "" {
			apiErr(t, c.name, m, c.code, "")
		}
	}
	// Reads with a foreign Host are refused too (rebinding reads).
	if code, _, _ := ts.call(t, "GET", "/v1/videos", "", "", "Host", "evil.example"); code != 403 {
		t.Errorf("GET with a foreign Host: %d", code)
	}
	// Responses may not be embedded by other sites.
	_, _, h := ts.call(t, "GET", "/v1/videos", "", "")
	if h.Get("Cross-Origin-Resource-Policy") != "same-origin" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("security headers: %v", h)
	}
}

func TestAPIKey(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{APIKey: "s3cret"})
	code, m, h := ts.call(t, "GET", "/v1/videos", "", "")
	if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no key: %d %v", code, h)
	}
	apiErr(t, "401", m, "unauthorized", "")
	if code, _ := ts.post(t, `{"prompt":"x"}`, "Authorization", "Bearer wrong"); code != 401 {
		t.Fatalf("wrong key: %d", code)
	}
	if code, m := ts.post(t, `{"prompt":"x","num_frames":1}`, "Authorization", "Bearer s3cret"); code != 202 {
		t.Fatalf("right key: %d %v", code, m)
	}
	// The page needs no key (it asks for one); /v1/config says so.
	if resp, err := http.Get(ts.url + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("page: %v %v", resp, err)
	}
	_, m, _ = ts.call(t, "GET", "/v1/config", "", "", "Authorization", "Bearer s3cret")
	if m["auth"] != true {
		t.Fatalf("config: %v", m)
	}
}

// pngBytes is a w×h PNG.
func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bombPNG is a 1×1 PNG whose header claims w×h pixels.
func bombPNG(t *testing.T, w, h uint32) []byte {
	p := pngBytes(t, 1, 1)
	binary.BigEndian.PutUint32(p[16:], w)
	binary.BigEndian.PutUint32(p[20:], h)
	binary.BigEndian.PutUint32(p[29:], crc32.ChecksumIEEE(p[12:29]))
	return p
}

func multipartBody(t *testing.T, fields map[string]string, img []byte) (string, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if img != nil {
		fw, _ := mw.CreateFormFile("input_reference", "in.png")
		fw.Write(img)
	}
	mw.Close()
	return mw.FormDataContentType(), b.String()
}

// listDir lists dir's files, leaving out the job index's temporary file:
// the saver goroutine writes the index to .index.json.partial-* and renames
// it, whenever a job changes, so a listing may catch one in passing (the
// start-up and shutdown clean-ups remove any that a crash left).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "."+indexFile+".partial-") {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

func TestImageToVideo(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 8)}
	ts := newTestServer(t, gen, Config{I2V: true, MaxQueue: 1})
	_, cfg, _ := ts.call(t, "GET", "/v1/config", "", "")
	if cfg["i2v"] != true {
		t.Fatalf("/v1/config = %v", cfg)
	}
	img := pngBytes(t, 4, 4)

	// Multipart with the image as a file part.
	ct, body := multipartBody(t, map[string]string{"prompt": "the cat turns its head", "num_frames": "5", "adaptive_resolution": "true", "format": "gif"}, img)
	code, m, _ := ts.call(t, "POST", "/v1/videos", ct, body)
	if code != http.StatusAccepted {
		t.Fatalf("multipart POST: %d %v", code, m)
	}
	first := m["id"].(string)
	<-gen.started
	r := gen.requests()[0]
	if r.SigmaMax != 200 || r.Size != (pipeline.Size{W: 1280, H: 720}) || !r.AdaptiveResolution || r.Frames != 5 {
		t.Errorf("I2V defaults not applied: %+v", r)
	}
	saved, err := os.ReadFile(r.Image)
	if err != nil || !bytes.Equal(saved, img) || filepath.Dir(r.Image) != ts.dir {
		t.Fatalf("input image saved as %q (%v): want the posted PNG in the output folder", r.Image, err)
	}

	// JSON with a data URL, queued behind it.
	code, m = ts.post(t, `{"prompt":"x","num_frames":1,"input_reference":"data:image/png;base64,`+base64.StdEncoding.EncodeToString(img)+`"}`)
	if code != http.StatusAccepted {
		t.Fatalf("JSON POST: %d %v", code, m)
	}
	second := m["id"].(string)
	// The queue is full: a refused request writes no upload.
	before := len(listDir(t, ts.dir))
	code, m = ts.post(t, `{"prompt":"x","num_frames":1,"input_reference":"`+base64.StdEncoding.EncodeToString(img)+`"}`)
	if code != http.StatusTooManyRequests {
		t.Fatalf("queue full: %d %v", code, m)
	}
	if after := len(listDir(t, ts.dir)); after != before {
		t.Fatalf("a refused request wrote a file: %d → %d files", before, after)
	}
	// The queued job's upload goes when it is cancelled; the running one's
	// when it completes.
	ts.mu.Lock()
	upload2 := ts.jobs[second].upload
	ts.mu.Unlock()
	ts.call(t, "DELETE", "/v1/videos/"+second, "", "")
	if _, err := os.Stat(upload2); !os.IsNotExist(err) {
		t.Errorf("a cancelled job's upload remains: %v", err)
	}
	close(gen.hold)
	ts.wait(t, first, "completed")
	if _, err := os.Stat(r.Image); !os.IsNotExist(err) {
		t.Errorf("a finished job's upload remains: %v", err)
	}

	for _, c := range []struct {
		body, code, param string
		status            int
	}{
		{`{"prompt":"x"}`, "required", "input_reference", 400},
		{`{"prompt":"x","input_reference":"%%%"}`, "invalid", "input_reference", 400},
		{`{"prompt":"x","input_reference":"` + base64.StdEncoding.EncodeToString([]byte("GIF89a not allowed")) + `"}`, "invalid", "input_reference", 400},
		// A decompression bomb: a tiny file whose header claims 3.6 gigapixels.
		{`{"prompt":"x","input_reference":"` + base64.StdEncoding.EncodeToString(bombPNG(t, 60000, 60000)) + `"}`, "too_large", "input_reference", 400},
	} {
		code, m := ts.post(t, c.body)
		if code != c.status {
			t.Errorf("%.50s: %d %v", c.body, code, m)
		}
		apiErr(t, c.body[:min(50, len(c.body))], m, c.code, c.param)
	}
}

// Without ffmpeg an MP4 request still completes: the generator writes a GIF
// beside the requested file, and the job reports the format it got.
func TestMP4FallsBackToGIF(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no ffmpeg
	gen := &fakeGen{}
	ts := newTestServer(t, gen, Config{})
	_, m := ts.post(t, `{"prompt":"a fox","num_frames":5,"seed":7}`)
	j := ts.wait(t, m["id"].(string), "completed", "failed")
	if j["status"] != "completed" || j["format"] != "gif" || !strings.Contains(j["note"].(string), "GIF") {
		t.Fatalf("job: %v (want completed, format gif, a note)", j)
	}
	if got := gen.requests()[0].Output; filepath.Dir(got) != ts.dir || filepath.Ext(got) != ".mp4" {
		t.Fatalf("generator asked to write %q, want an .mp4 in %s", got, ts.dir)
	}
	resp, err := http.Get(ts.url + j["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("GIF8")) || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("content: status %d, type %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
}

// checkGen refuses like an engine whose memory estimate is over budget.
type checkGen struct{ fakeGen }

func (c *checkGen) Check(r pipeline.Request) error {
	if r.Frames > 17 {
		return &pipeline.FieldError{Field: pipeline.FieldFrames, Code: pipeline.CodeMemory, Value: "81", Msg: "needs about 90 GiB of GPU memory; at 832x480 up to 17 frames fit"}
	}
	return nil
}

func TestMemoryCheckBeforeQueueing(t *testing.T) {
	gen := &checkGen{}
	ts := newTestServer(t, gen, Config{})
	code, m := ts.post(t, `{"prompt":"x"}`)
	if code != 400 {
		t.Fatalf("over the memory estimate: %d %v", code, m)
	}
	apiErr(t, "memory", m, "insufficient_memory", "num_frames")
	if msg := m["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "up to 17 frames fit") || !strings.HasPrefix(msg, "num_frames 81") {
		t.Errorf("message %q", msg)
	}
	if code, m := ts.post(t, `{"prompt":"x","num_frames":17,"format":"gif"}`); code != 202 {
		t.Fatalf("17 frames: %d %v", code, m)
	}
}

// A finished job keeps a preview of its prompt, no request and no image.
func TestFinishedJobsFreeTheirRequest(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{})
	prompt := strings.Repeat("é", 8000) // 16000 bytes
	_, m := ts.post(t, `{"prompt":"`+prompt+`","num_frames":1,"format":"gif"}`)
	id := m["id"].(string)
	if m["prompt"] != prompt {
		t.Fatal("a queued job's prompt is not whole")
	}
	j := ts.wait(t, id, "completed")
	p := j["prompt"].(string)
	if len(p) > promptPreview+4 || !strings.HasSuffix(p, "…") || !strings.HasPrefix(prompt, strings.TrimSuffix(p, "…")) {
		t.Fatalf("finished prompt: %d bytes", len(p))
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.jobs[id].req != nil {
		t.Fatal("the finished job still holds its request")
	}
}

func TestAccessLog(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	ts.wait(t, m["id"].(string), "completed")
	ts.call(t, "GET", "/v1/nothing", "", "")
	logs := ts.log.String()
	for _, want := range []string{"POST /v1/videos 202", "GET /v1/nothing 404", "GET /v1/videos/" + m["id"].(string) + " 200",
		"job " + m["id"].(string) + " queued", "job " + m["id"].(string) + " started", "job " + m["id"].(string) + " completed in"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func decode(resp *http.Response, v any) {
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(v)
}
