package server

import (
	"encoding/json"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Jobs survive a restart: the index lists them, ids stay unique, no file
// is overwritten, and what an interrupted run left behind is cleaned up.
func TestRestartKeepsJobs(t *testing.T) {
	dir := t.TempDir()
	ts := newTestServer(t, &fakeGen{}, Config{OutDir: dir})
	var ids []string
	for i := 0; i < 2; i++ {
		_, m := ts.post(t, `{"prompt":"a fox `+string(rune('a'+i))+`","num_frames":1,"format":"gif"}`)
		ids = append(ids, m["id"].(string))
		ts.wait(t, m["id"].(string), "completed")
	}
	ts.Close()
	ts.ts.Close()
	var ix index
	b, err := os.ReadFile(filepath.Join(dir, indexFile))
	if err != nil || json.Unmarshal(b, &ix) != nil || len(ix.Jobs) != 2 {
		t.Fatalf("index: %v %s", err, b)
	}
	files := map[string][]byte{}
	for _, id := range ids {
		files[id], _ = os.ReadFile(filepath.Join(dir, id+".gif"))
	}

	// What a killed run leaves: a writer's partial file, an upload, a
	// partial index, and a job that was running.
	leftovers := []string{".video_0123456789abcdef.partial-42.mp4", ".video-3.partial-7.mp4", "video_0123456789abcdef-input.png", "." + indexFile + ".partial-9"}
	for _, f := range leftovers {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("the user's"), 0o644)
	ix.Jobs = append(ix.Jobs, indexRecord{Video: Video{ID: "video_00000000000000ff", Object: "video", Status: statusInProgress, CreatedAt: time.Now().Unix(), Prompt: "was running"}})
	b, _ = json.Marshal(ix)
	os.WriteFile(filepath.Join(dir, indexFile), b, 0o644)

	ts2 := newTestServer(t, &fakeGen{}, Config{OutDir: dir})
	for _, f := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s survived the restart", f)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a file of the user's was removed: %v", err)
	}
	_, m, _ := ts2.call(t, "GET", "/v1/videos", "", "")
	data := m["data"].([]any)
	if len(data) != 3 {
		t.Fatalf("after restart: %v", m)
	}
	for _, id := range ids {
		j := ts2.wait(t, id, "completed")
		if j["prompt"] == "" || j["url"] == nil {
			t.Errorf("restored job: %v", j)
		}
	}
	j := ts2.wait(t, "video_00000000000000ff", "failed")
	if e, _ := j["error"].(map[string]any); e == nil || e["code"] != "interrupted" {
		t.Errorf("interrupted job: %v", j)
	}
	// New jobs get new ids and new files; the old files are untouched.
	_, m = ts2.post(t, `{"prompt":"a fox","num_frames":1,"format":"gif"}`)
	id := m["id"].(string)
	for _, old := range ids {
		if id == old {
			t.Fatalf("id %s reused", id)
		}
	}
	ts2.wait(t, id, "completed")
	for _, old := range ids {
		if b, err := os.ReadFile(filepath.Join(dir, old+".gif")); err != nil || string(b) != string(files[old]) {
			t.Errorf("%s.gif changed: %v", old, err)
		}
	}
}

// A file already named like the job's output is never overwritten.
func TestNeverOverwrites(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 2)}
	ts := newTestServer(t, gen, Config{})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	<-gen.started
	_, m2 := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	second := m2["id"].(string)
	victim := filepath.Join(ts.dir, second+".gif")
	os.WriteFile(victim, []byte("precious"), 0o644)
	close(gen.hold)
	ts.wait(t, m["id"].(string), "completed")
	j := ts.wait(t, second, "failed")
	if e := j["error"].(map[string]any); !strings.Contains(e["message"].(string), "refusing to overwrite") {
		t.Fatalf("job over an existing file: %v", j)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatal("the existing file was overwritten")
	}
}

func TestEviction(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{KeepJobs: 2})
	var ids []string
	for i := 0; i < 4; i++ {
		_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
		ids = append(ids, m["id"].(string))
		ts.wait(t, m["id"].(string), "completed")
	}
	// Eviction runs just after a job's end is published.
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, m, _ := ts.call(t, "GET", "/v1/videos", "", "")
		if n := len(m["data"].([]any)); n == 2 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("kept %d jobs, want 2", n)
		}
		time.Sleep(time.Millisecond)
	}
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(ts.dir, id+".gif"))
		if i < 2 && !os.IsNotExist(err) {
			t.Errorf("evicted job %d's file remains", i)
		}
		if i >= 2 && err != nil {
			t.Errorf("kept job %d's file is gone", i)
		}
	}

	// By age: finished jobs older than KeepFor go at start-up.
	dir := ts.dir
	ts.Close()
	buf := &syncBuffer{}
	s, err := New(&fakeGen{}, Config{OutDir: dir, KeepFor: time.Nanosecond, Log: log.New(buf, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	if n := len(s.order); n != 0 {
		t.Fatalf("%d jobs older than KeepFor kept", n)
	}
	var left []string
	for _, n := range listDir(t, dir) {
		if n != indexFile {
			left = append(left, n)
		}
	}
	sort.Strings(left)
	if len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
}

// Close (SIGINT/SIGTERM in serve) cancels the running job, leaves no
// partial file, and ends the worker.
func TestCloseCancelsRunningJob(t *testing.T) {
	gen := &fakeGen{hold: make(chan struct{}), started: make(chan string, 1)}
	ts := newTestServer(t, gen, Config{})
	_, m := ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	id := m["id"].(string)
	<-gen.started
	_, m = ts.post(t, `{"prompt":"x","num_frames":1,"format":"gif"}`)
	queued := m["id"].(string)
	os.WriteFile(filepath.Join(ts.dir, "."+id+".partial-1.gif"), []byte("x"), 0o644) // as a killed writer would leave
	done := make(chan struct{})
	go func() { ts.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	ts.mu.Lock()
	st, code := ts.jobs[id].v.Status, ts.jobs[id].v.Error.Code
	st2 := ts.jobs[queued].v.Status
	ts.mu.Unlock()
	if st != statusCancelled || code != "server_shutdown" || st2 != statusCancelled {
		t.Fatalf("after Close: running job %s (%s), queued job %s", st, code, st2)
	}
	for _, n := range listDir(t, ts.dir) {
		if n != indexFile {
			t.Errorf("left in the output folder: %s", n)
		}
	}
	if code, _ := ts.post(t, `{"prompt":"x"}`); code != 503 {
		t.Errorf("a POST after Close: %d", code)
	}
}
