package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/server"
)

// benchServe runs `bench e2e --serve`: each generation goes through the
// HTTP API as the web page drives it (POST /v1/videos, then the job's
// event stream, previews on), and the times are those a client sees: from
// the POST to the first step event (sampling started), from there to the
// first preview event (the "first preview on the web page"), and
// to the final video object.
func benchServe(out io.Writer, eng *pipeline.Engine, req pipeline.Request, runs int) error {
	dir, err := os.MkdirTemp("", "td-bench-serve")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := server.New(server.EngineGenerator{Engine: eng}, server.Config{OutDir: dir, Previews: true,
		Log: log.New(io.Discard, "", 0)})
	if err != nil {
		return err
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	body := map[string]any{"prompt": req.Prompt, "size": fmt.Sprintf("%dx%d", req.Size.W, req.Size.H),
		"num_frames": req.Frames, "seed": req.Seed, "num_inference_steps": req.Steps,
		"attention": req.Attention, "sla_topk": req.TopK}
	if req.Image != "" {
		img, err := os.ReadFile(req.Image)
		if err != nil {
			return err
		}
		body["input_reference"] = base64.StdEncoding.EncodeToString(img)
	}
	post, _ := json.Marshal(body)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for run := 1; run <= runs; run++ {
		t0 := time.Now()
		resp, err := http.Post(ts.URL+"/v1/videos", "application/json", bytes.NewReader(post))
		if err != nil {
			return err
		}
		var v struct {
			ID string `json:"id"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted { // POST /v1/videos queues: 202 (docs/API.md)
			return fmt.Errorf("bench e2e --serve: POST /v1/videos: %s: %s", resp.Status, b)
		}
		if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
			return fmt.Errorf("bench e2e --serve: POST /v1/videos answered %q (%v)", b, err)
		}
		ev, err := http.Get(ts.URL + "/v1/videos/" + v.ID + "/events")
		if err != nil {
			return err
		}
		var sampling, first, done time.Duration
		previews := 0
		status := ""
		err = readEvents(ev.Body, func(name string, data []byte) bool {
			at := time.Since(t0)
			switch name {
			case "step":
				var s struct{ Step int }
				if json.Unmarshal(data, &s) == nil && s.Step == 0 && sampling == 0 {
					sampling = at
				}
			case "preview":
				if previews == 0 {
					first = at
				}
				previews++
			case "video":
				var s struct {
					Status string
					Error  *struct{ Message string }
				}
				if err := json.Unmarshal(data, &s); err != nil {
					return false
				}
				status = s.Status
				switch s.Status {
				case "completed", "failed", "cancelled":
					done = at
					if s.Error != nil {
						status += ": " + s.Error.Message
					}
					return false
				}
			}
			return true
		})
		ev.Body.Close()
		if err != nil {
			return fmt.Errorf("bench e2e --serve: event stream: %w", err)
		}
		if status != "completed" {
			return fmt.Errorf("bench e2e --serve: job %s ended %q", v.ID, status)
		}
		if sampling == 0 || previews == 0 {
			return fmt.Errorf("bench e2e --serve: job %s sent no step-0 event or no preview (%d previews)", v.ID, previews)
		}
		fmt.Fprintf(out, "run %d (HTTP API, as the web page): sampling started %.1f ms after the POST, first preview %.1f ms after that, %d previews, video completed %.1f ms after the POST\n",
			run, ms(sampling), ms(first-sampling), previews, ms(done))
	}
	return nil
}

// readEvents reads a server-sent event stream, calling each with every
// event's name and data until it returns false or the stream ends.
func readEvents(r io.Reader, each func(name string, data []byte) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20) // previews are PNG data URLs
	var name string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if name != "" && !each(name, data) {
				return nil
			}
			name, data = "", nil
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):]...)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the stream ended before the job did")
}
