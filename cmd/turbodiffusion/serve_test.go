package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/server"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// The server's generator lets the engine write the video itself (so an MP4
// streams during the decode) and reports the file it wrote; tiny models on
// the CPU, as `serve` builds them.
func TestEngineGeneratorWritesOutput(t *testing.T) {
	dir, enc := tinyEncoder(t)
	f := engineFlags{
		files:     pipeline.Files{DiT: golden.Path(t, "dit_weights.pth"), VAE: golden.Path(t, "vae.safetensors"), TextEncoder: enc, Tokenizer: golden.Path(t, "tokenizer")},
		attention: "sla", topk: 0.25, device: "cpu", dtype: "bf16", keepText: true, noCache: true,
	}
	eng, _, err := f.open(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	want := ".gif"
	if _, err := video.FFmpeg(); err == nil {
		want = ".mp4"
	}
	out := filepath.Join(dir, "video-1.mp4")
	req := pipeline.Request{Prompt: "a fox", Steps: 1, SigmaMax: 80, Size: pipeline.Size{W: 512, H: 512}, Frames: 1, Samples: 1, Seed: 3, Output: out}
	res, err := server.EngineGenerator{Engine: eng}.Generate(context.Background(), req, func(pipeline.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	written := res.Path
	if len(res.Timings) == 0 {
		t.Error("no timings reported")
	}
	if filepath.Ext(written) != want || filepath.Dir(written) != dir {
		t.Fatalf("wrote %q, want a %s in %s", written, want, dir)
	}
	if want == ".mp4" {
		frames, err := video.ReadMP4(written, 512, 512)
		if err != nil || len(frames) != 1 {
			t.Fatalf("MP4 decodes to %d frames (%v), want 1", len(frames), err)
		}
	}

	// The same engine behind the server: a job runs, and a cancelled one
	// stops within a sampling step.
	serveTinyEngine(t, eng)
}

func serveTinyEngine(t *testing.T, eng *pipeline.Engine) {
	s, err := server.New(server.EngineGenerator{Engine: eng}, server.Config{OutDir: t.TempDir(), Attention: "sla", TopK: 0.25, Previews: true, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	post := func(body string) (int, map[string]any) {
		resp, err := http.Post(ts.URL+"/v1/videos", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	// Checked by the engine before queueing: a request on a loaded SLA
	// engine may run dense; the memory estimate passes for a tiny model.
	code, m := post(`{"prompt":"a fox","size":"512x512","num_frames":1,"num_inference_steps":1,"attention":"dense","format":"gif"}`)
	if code != 202 {
		t.Fatalf("POST: %d %v", code, m)
	}
	id := m["id"].(string)
	previews := 0
	final := follow(t, ts.URL, id, func(name string, d map[string]any) {
		if name == "preview" && strings.HasPrefix(d["image"].(string), "data:image/png;base64,") {
			previews++
		}
	})
	if final["status"] != "completed" || final["format"] != "gif" {
		t.Fatalf("job: %v", final)
	}
	if previews != 1 {
		t.Errorf("%d previews from a 1-step job, want 1", previews)
	}
	if tm, _ := final["timings"].([]any); len(tm) == 0 {
		t.Errorf("no timings: %v", final)
	}

	// Cancel after the first step: the job ends before a second step
	// would have finished.
	code, m = post(`{"prompt":"a fox","size":"512x512","num_frames":1,"num_inference_steps":4,"format":"gif"}`)
	if code != 202 {
		t.Fatalf("POST: %d %v", code, m)
	}
	id = m["id"].(string)
	var cancelled time.Time
	var stepTime time.Duration
	var lastStep float64
	var t1 time.Time
	final = follow(t, ts.URL, id, func(name string, d map[string]any) {
		if name != "step" {
			return
		}
		lastStep = d["step"].(float64)
		if lastStep == 0 {
			t1 = time.Now()
		}
		if lastStep == 1 && cancelled.IsZero() {
			stepTime = time.Since(t1)
			req, _ := http.NewRequest("DELETE", ts.URL+"/v1/videos/"+id, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cancelled = time.Now()
		}
	})
	stopped := time.Since(cancelled)
	if final["status"] != "cancelled" || cancelled.IsZero() {
		t.Fatalf("cancelled job: %v", final)
	}
	if lastStep > 2 {
		t.Errorf("%v steps done after a cancel at 1", lastStep)
	}
	t.Logf("one step %v; stopped %v after the cancel", stepTime, stopped)
	if stopped > stepTime+2*time.Second {
		t.Errorf("stopped %v after the cancel; a step takes %v", stopped, stepTime)
	}
}

// follow reads a job's event stream to its end and returns the last video
// object; each sees every event.
func follow(t *testing.T, base, id string, each func(string, map[string]any)) map[string]any {
	t.Helper()
	resp, err := http.Get(base + "/v1/videos/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var name string
	var last map[string]any
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			name = v
		} else if v, ok := strings.CutPrefix(line, "data: "); ok {
			var d map[string]any
			json.Unmarshal([]byte(v), &d)
			if name == "video" {
				last = d
			}
			if each != nil {
				each(name, d)
			}
		}
	}
	return last
}

func TestServeAddrNeedsKey(t *testing.T) {
	for _, c := range []struct {
		addr, key string
		insecure  bool
		ok        bool
	}{
		{"127.0.0.1:8188", "", false, true},
		{"[::1]:8188", "", false, true},
		{"localhost:8188", "", false, true},
		{"0.0.0.0:8188", "", false, false},
		{":8188", "", false, false},
		{"192.168.1.5:8188", "", false, false},
		{"gpu-box:8188", "", false, false},
		{"0.0.0.0:8188", "k", false, true},
		{"0.0.0.0:8188", "", true, true},
		{"nonsense", "", false, false},
	} {
		err := checkAddr(c.addr, c.key, c.insecure)
		if (err == nil) != c.ok {
			t.Errorf("%s key %q insecure %v: %v", c.addr, c.key, c.insecure, err)
		}
	}
	// The command refuses before it loads anything.
	_, _, err := run(t, "serve", "--addr", "0.0.0.0:0", "--model", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--api-key") {
		t.Fatalf("serve on 0.0.0.0 without a key: %v", err)
	}
}

// blockingGen runs until its context is cancelled, leaving a partial file
// as an interrupted writer would.
type blockingGen struct{ started chan string }

func (g blockingGen) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (server.Output, error) {
	os.WriteFile(filepath.Join(filepath.Dir(r.Output), "."+strings.TrimSuffix(filepath.Base(r.Output), filepath.Ext(r.Output))+".partial-1.mp4"), []byte("x"), 0o644)
	g.started <- r.Output
	<-ctx.Done()
	return server.Output{}, ctx.Err()
}

type lineWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	for {
		line, err := w.b.ReadString('\n')
		if err != nil {
			w.b.WriteString(line)
			break
		}
		select {
		case w.lines <- line:
		default:
		}
	}
	return len(p), nil
}
