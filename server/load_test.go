package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// A bounded load test on 127.0.0.1: 200 requests from 20 clients, valid
// and invalid mixed, some cancelled, some streaming their events, against
// a fast fake generator and a small queue (so some are refused with 429).
// Every accepted job ends completed or cancelled; afterwards no goroutine
// and no file is left over, and the heap is back near where it started.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	gen := &fakeGen{stepDelay: 200 * time.Microsecond}
	ts := newTestServer(t, gen, Config{MaxQueue: 8, KeepJobs: 1000, KeepAlive: 50 * time.Millisecond})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 20}}

	bad := []string{`{}`, `{"prompt":"x","num_frames":80}`, `{"prompt":"x","num_inference_steps":0}`, `not json`,
		`{"prompt":"x","num_frames":1000000001}`, `{"prompt":"x","size":"99999x2"}`, `{"prompt":"x"} trailing`}
	big := strings.Repeat("a long prompt ", 1000) // 14 KB
	type outcome struct {
		id     string
		cancel bool
	}
	var mu sync.Mutex
	var accepted []outcome
	counts := map[int]int{}
	var wg sync.WaitGroup
	for c := 0; c < 20; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				n := c*10 + i
				body := fmt.Sprintf(`{"prompt":"client %d request %d","num_frames":%d,"num_inference_steps":%d,"format":"gif"}`, c, i, 1+4*(n%3), 1+n%4)
				if n%5 == 0 {
					body = bad[n%len(bad)]
				} else if n%11 == 0 {
					body = `{"prompt":"` + big + `","num_frames":1,"format":"gif"}`
				}
				var resp *http.Response
				var m map[string]any
				// A full queue answers 429: wait a moment and try again,
				// as a client would after Retry-After (shortened here).
				for try := 0; ; try++ {
					req, _ := http.NewRequest("POST", ts.url+"/v1/videos", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					var err error
					if resp, err = client.Do(req); err != nil {
						t.Error(err)
						return
					}
					m = nil
					decode(resp, &m)
					mu.Lock()
					counts[resp.StatusCode]++
					mu.Unlock()
					if resp.StatusCode != http.StatusTooManyRequests || try == 500 {
						break
					}
					if resp.Header.Get("Retry-After") == "" {
						t.Error("429 without Retry-After")
					}
					time.Sleep(2 * time.Millisecond)
				}
				switch resp.StatusCode {
				case http.StatusAccepted:
				case http.StatusBadRequest:
					if _, ok := m["error"].(map[string]any); !ok {
						t.Errorf("%d without a JSON error", resp.StatusCode)
					}
					continue
				default:
					t.Errorf("POST %.40s: %d %v", body, resp.StatusCode, m)
					continue
				}
				id := m["id"].(string)
				cancel := n%7 == 0
				mu.Lock()
				accepted = append(accepted, outcome{id, cancel})
				mu.Unlock()
				switch {
				case cancel && n%2 == 0:
					do(t, client, "DELETE", ts.url+"/v1/videos/"+id)
				case cancel:
					do(t, client, "POST", ts.url+"/v1/videos/"+id+"/cancel")
				case n%6 == 1:
					// Follow the job's events to the end.
					resp, err := client.Get(ts.url + "/v1/videos/" + id + "/events")
					if err == nil {
						sse(t, resp.Body, func(string, map[string]any) bool { return true })
						resp.Body.Close()
					}
				case n%6 == 2:
					// Open the events and leave early.
					resp, err := client.Get(ts.url + "/v1/videos/" + id + "/events")
					if err == nil {
						resp.Body.Read(make([]byte, 16))
						resp.Body.Close()
					}
				}
			}
		}(c)
	}
	wg.Wait()
	t.Logf("answers by status: %v; %d accepted", counts, len(accepted))
	if counts[http.StatusAccepted] != 200-40 || counts[http.StatusBadRequest] != 40 || counts[http.StatusTooManyRequests] == 0 {
		t.Fatalf("the mix did not happen: %v", counts)
	}

	// Every accepted job ends completed or cancelled, as asked.
	completed := map[string]bool{}
	for _, o := range accepted {
		j := ts.wait(t, o.id, statusCompleted, statusCancelled, statusFailed)
		switch {
		case j["status"] == statusFailed:
			t.Errorf("job %s failed: %v", o.id, j["error"])
		case j["status"] == statusCompleted:
			completed[o.id] = true
		case !o.cancel:
			t.Errorf("job %s cancelled without being asked", o.id)
		}
	}
	ts.mu.Lock()
	if len(ts.queue) != 0 || ts.running != nil || ts.reserved != 0 {
		t.Errorf("queue %d, running %v, reserved %d after the load", len(ts.queue), ts.running != nil, ts.reserved)
	}
	for _, j := range ts.jobs {
		if j.req != nil || j.upload != "" || len(j.subs) != 0 {
			t.Errorf("job %s still holds its request, upload or streams", j.v.ID)
		}
	}
	ts.mu.Unlock()

	// No file leaked: the index and one video per completed job.
	for _, n := range listDir(t, ts.dir) {
		id := strings.TrimSuffix(n, filepath.Ext(n))
		if n != indexFile && !(completed[id] && filepath.Ext(n) == ".gif") {
			t.Errorf("unexpected file %s", n)
		}
	}
	files := len(listDir(t, ts.dir))
	if files != len(completed)+1 {
		t.Errorf("%d files for %d completed jobs", files, len(completed))
	}

	// Memory: finished jobs keep only their video objects.
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	grew := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("heap %d → %d KiB with the server up (%d jobs kept)", m0.HeapAlloc>>10, m1.HeapAlloc>>10, len(accepted))
	if grew > 8<<20 {
		t.Errorf("heap grew %d KiB over the load", grew>>10)
	}

	// No goroutine leaked once the server and the client are gone.
	ts.Close()
	ts.ts.Close()
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), g0, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, indexFile)); err != nil {
		t.Errorf("no index after Close: %v", err)
	}
}

func do(t *testing.T, c *http.Client, method, url string) {
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("%s %s: %d", method, url, resp.StatusCode)
	}
}
