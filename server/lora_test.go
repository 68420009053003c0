package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// keepGen is the fake generator that records, as each job ends, whether
// the server asks it to keep the job's LoRAs merged, and counts Idle calls.
type keepGen struct {
	*fakeGen
	mu    sync.Mutex
	keeps []string // per job: "keep", "restore" or "none" (no LoRA)
	idles int
}

func (g *keepGen) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (Output, error) {
	out, err := g.fakeGen.Generate(ctx, r, progress)
	k := "none"
	if r.KeepLoRA != nil {
		k = "restore"
		if r.KeepLoRA() {
			k = "keep"
		}
	}
	g.mu.Lock()
	g.keeps = append(g.keeps, k)
	g.mu.Unlock()
	return out, err
}

func (g *keepGen) Idle() error {
	g.mu.Lock()
	g.idles++
	g.mu.Unlock()
	return nil
}

// The "loras" field in JSON and in multipart (a JSON array or
// NAME[:SCALE],...) reaches the engine as files of the folder with their
// scales, and the job's settings show it; without a folder, or with bad
// entries, the request is refused naming the field.
func TestLoRAField(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.safetensors", "b.pth"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	realDir, _ := filepath.EvalSymlinks(dir)
	gen := &fakeGen{}
	ts := newTestServer(t, gen, Config{LoRADir: dir})
	const body = `"prompt":"x","num_frames":1,"format":"gif"`
	code, m := ts.post(t, `{`+body+`,"loras":[{"name":"a.safetensors","scale":0.5},{"name":"b.pth"}]}`)
	if code != 202 {
		t.Fatalf("JSON loras: %d %v", code, m)
	}
	if got := strs2(m["loras"]); got != "a.safetensors 0.5, b.pth 1" {
		t.Errorf("settings show loras %q", got)
	}
	ts.wait(t, m["id"].(string), "completed")
	for _, form := range []string{`[{"name":"b.pth","scale":-1}]`, ` b.pth:-1 `} {
		ct, mb := multipartBody(t, map[string]string{"prompt": "x", "num_frames": "1", "format": "gif", "loras": form}, nil)
		code, m, _ := ts.call(t, "POST", "/v1/videos", ct, mb)
		if code != 202 || strs2(m["loras"]) != "b.pth -1" {
			t.Fatalf("multipart loras %q: %d %v", form, code, m)
		}
		ts.wait(t, m["id"].(string), "completed")
	}
	reqs := gen.requests()
	want := [][]lora.Spec{
		{{Path: filepath.Join(realDir, "a.safetensors"), Scale: 0.5}, {Path: filepath.Join(realDir, "b.pth"), Scale: 1}},
		{{Path: filepath.Join(realDir, "b.pth"), Scale: -1}},
		{{Path: filepath.Join(realDir, "b.pth"), Scale: -1}},
	}
	if len(reqs) != len(want) {
		t.Fatalf("%d jobs ran", len(reqs))
	}
	for i, w := range want {
		if !sameLoRAs(reqs[i].LoRA, w) {
			t.Errorf("job %d: the engine got LoRAs %v, want %v", i, reqs[i].LoRA, w)
		}
	}

	for _, c := range []struct{ what, loras, code, param string }{
		{"an empty name", `[{"name":""}]`, "invalid", "loras"},
		{"twice the same file", `[{"name":"a.safetensors"},{"name":"a.safetensors"}]`, "invalid", "loras"},
		{"too many", `[` + strings.Repeat(`{"name":"a.safetensors"},`, MaxLoRAs) + `{"name":"b.pth"}]`, "too_large", "loras"},
		{"a hidden file", `[{"name":".a.safetensors"}]`, "invalid", "loras"},
		{"a backslash path", `[{"name":"..\\a.safetensors"}]`, "invalid", "loras"},
		{"an unknown key", `[{"name":"a.safetensors","path":"/etc/passwd"}]`, "unknown_field", "path"},
	} {
		code, m := ts.post(t, `{`+body+`,"loras":`+c.loras+`}`)
		if code != 400 {
			t.Errorf("%s: %d %v", c.what, code, m)
			continue
		}
		apiErr(t, c.what, m, c.code, c.param)
	}
	ct, mb := multipartBody(t, map[string]string{"prompt": "x", "loras": "a.safetensors:x"}, nil)
	if code, m, _ := ts.call(t, "POST", "/v1/videos", ct, mb); code != 400 {
		t.Errorf("multipart scale x: %d %v", code, m)
	} else {
		apiErr(t, "multipart scale x", m, "invalid_type", "loras")
	}

	// No folder: the listing says so and a request with loras is refused.
	ts2 := newTestServer(t, &fakeGen{}, Config{})
	if code, m, _ := ts2.call(t, "GET", "/v1/loras", "", ""); code != 200 || m["folder"] != false || len(m["data"].([]any)) != 0 {
		t.Errorf("GET /v1/loras without a folder: %d %v", code, m)
	}
	code, m = ts2.post(t, `{`+body+`,"loras":[{"name":"a.safetensors"}]}`)
	if code != 400 || !strings.Contains(fmt.Sprint(m), "--lora-dir") {
		t.Errorf("loras on a server without a folder: %d %v", code, m)
	}
	apiErr(t, "no folder", m, "invalid", "loras")
}

// The server asks the engine to keep a job's LoRAs merged only when the
// next queued job has the same list (same files, same scales), and tells
// it when the queue has emptied (Idle), so the weights are restored then.
func TestLoRAKeptForTheNextJob(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.safetensors", "b.safetensors"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	gen := &keepGen{fakeGen: &fakeGen{hold: make(chan struct{})}}
	ts := newTestServer(t, gen, Config{LoRADir: dir})
	var ids []string
	for _, l := range []string{
		`[{"name":"a.safetensors"}]`, `[{"name":"a.safetensors","scale":1}]`, // the same list: kept
		`[{"name":"a.safetensors"}]`, `[{"name":"a.safetensors","scale":0.5}]`, // kept; then another scale
		`[{"name":"b.safetensors"}]`,       // another file; then nothing
		`[]`, `[{"name":"a.safetensors"}]`, // the last: the queue is empty after it
	} {
		code, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif","loras":`+l+`}`)
		if code != 202 {
			t.Fatalf("POST %s: %d %v", l, code, m)
		}
		ids = append(ids, m["id"].(string))
	}
	for range ids {
		gen.hold <- struct{}{}
	}
	for _, id := range ids {
		ts.wait(t, id, "completed")
	}
	gen.mu.Lock()
	got, idles := strings.Join(gen.keeps, " "), gen.idles
	gen.mu.Unlock()
	if want := "keep keep restore restore restore none restore"; got != want {
		t.Errorf("keep answers %q, want %q", got, want)
	}
	for i := 0; idles == 0 && i < 1000; i++ { // Idle runs once the last job's end is recorded
		time.Sleep(5 * time.Millisecond)
		gen.mu.Lock()
		idles = gen.idles
		gen.mu.Unlock()
	}
	if idles != 1 {
		t.Errorf("Idle called %d times, want once (when the queue emptied)", idles)
	}
}
