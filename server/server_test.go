package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// fakeGen returns a small clip whose size follows the request, or fails on
// the prompt "fail".
type fakeGen struct{ got []pipeline.Request }

func (f *fakeGen) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (string, error) {
	f.got = append(f.got, r)
	if r.Prompt == "fail" {
		return "", errors.New("out of GPU memory: asked 12 GiB, 3 GiB free")
	}
	for i := 0; i <= r.Steps; i++ {
		progress(pipeline.Event{Stage: "step", Done: i, Total: r.Steps})
	}
	c := &video.Clip{Width: 16, Height: 8, FPS: 16}
	for i := 0; i < r.Frames; i++ {
		c.Frames = append(c.Frames, make([]byte, 16*8*3))
	}
	written, _, err := pipeline.WriteOutput(r.Output, c)
	return written, err
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url+"/v1/videos", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func waitJob(t *testing.T, url, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v1/videos/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if m["status"] == "done" || m["status"] == "failed" {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s did not finish", id)
	return nil
}

func TestServerJobsAndErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gen := &fakeGen{}
	s, err := New(ctx, gen, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	// The page is served.
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(page, []byte("/v1/videos")) {
		t.Fatal("index page does not call the API")
	}

	// A job with defaults runs and its video can be fetched.
	code, m := post(t, ts.URL, `{"prompt":"a fox","frames":5,"seed":7,"format":"gif"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, m)
	}
	j := waitJob(t, ts.URL, m["id"].(string))
	if j["status"] != "done" || j["format"] != "gif" {
		t.Fatalf("job: %v (want done, format gif)", j)
	}
	r := gen.got[0]
	if r.Steps != 4 || r.SigmaMax != 80 || r.Size != (pipeline.Size{W: 832, H: 480}) || r.Seed != 7 || r.Frames != 5 {
		t.Fatalf("defaults not applied: %+v", r)
	}
	resp, err = http.Get(ts.URL + j["video_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	gif, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(gif, []byte("GIF8")) {
		t.Fatalf("video content: status %d, %d bytes", resp.StatusCode, len(gif))
	}

	// A failing generation reports its error.
	_, m = post(t, ts.URL, `{"prompt":"fail","frames":5}`)
	j = waitJob(t, ts.URL, m["id"].(string))
	if j["status"] != "failed" || !strings.Contains(j["error"].(string), "out of GPU memory") {
		t.Fatalf("failed job: %v", j)
	}

	// Bad requests are refused with a reason.
	for _, body := range []string{`{}`, `{"prompt":"x","steps":9}`, `{"prompt":"x","frames":80}`, `{"prompt":"x","resolution":"4k"}`, `{"prompt":"x","bogus":1}`, `not json`, `{"prompt":"x","format":"avi"}`} {
		code, m := post(t, ts.URL, body)
		if code != http.StatusBadRequest || m["error"] == "" {
			t.Errorf("%s: got %d %v, want 400 with an error", body, code, m)
		}
	}
	resp, _ = http.Get(ts.URL + "/v1/videos/999")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown job: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

func TestServerImageToVideo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gen := &fakeGen{}
	dir := t.TempDir()
	s, err := New(ctx, gen, dir)
	if err != nil {
		t.Fatal(err)
	}
	s.I2V = true
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	resp, err := http.Get(ts.URL + "/v1/config")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]bool
	json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if !cfg["i2v"] {
		t.Fatalf("/v1/config = %v, want i2v true", cfg)
	}

	var png bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	if err := pngEncode(&png, img); err != nil {
		t.Fatal(err)
	}
	body := `{"prompt":"the cat turns its head","frames":5,"image":"data:image/png;base64,` + base64.StdEncoding.EncodeToString(png.Bytes()) + `","adaptive_resolution":true}`
	code, m := post(t, ts.URL, body)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, m)
	}
	j := waitJob(t, ts.URL, m["id"].(string))
	if j["status"] != "done" {
		t.Fatalf("job: %v", j)
	}
	r := gen.got[0]
	if r.SigmaMax != 200 || r.Size != (pipeline.Size{W: 1280, H: 720}) || !r.AdaptiveResolution {
		t.Errorf("I2V defaults not applied: %+v", r)
	}
	saved, err := os.ReadFile(r.Image)
	if err != nil || !bytes.Equal(saved, png.Bytes()) || filepath.Dir(r.Image) != dir {
		t.Fatalf("input image saved as %q (%v): want the posted PNG in the output folder", r.Image, err)
	}

	for _, body := range []string{
		`{"prompt":"x"}`, // no image on an I2V server
		`{"prompt":"x","image":"%%%"}`,
		`{"prompt":"x","image":"` + base64.StdEncoding.EncodeToString([]byte("GIF89a not allowed")) + `"}`,
	} {
		if code, m := post(t, ts.URL, body); code != http.StatusBadRequest {
			t.Errorf("%.40s: got %d %v, want 400", body, code, m)
		}
	}

	// A text-to-video server refuses an image.
	s.I2V = false
	if code, m := post(t, ts.URL, `{"prompt":"x","image":"`+base64.StdEncoding.EncodeToString(png.Bytes())+`"}`); code != http.StatusBadRequest {
		t.Errorf("T2V server took an image: %d %v", code, m)
	}
}

func pngEncode(w io.Writer, img image.Image) error { return png.Encode(w, img) }

// Without ffmpeg an MP4 request still completes: the generator writes a GIF
// beside the requested file, and the job reports the format it got.
func TestServerMP4FallsBackToGIF(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no ffmpeg
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gen := &fakeGen{}
	out := t.TempDir()
	s, err := New(ctx, gen, out)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	_, m := post(t, ts.URL, `{"prompt":"a fox","frames":5,"seed":7}`)
	j := waitJob(t, ts.URL, m["id"].(string))
	if j["status"] != "done" || j["format"] != "gif" {
		t.Fatalf("job: %v (want done, format gif)", j)
	}
	if got := gen.got[0].Output; filepath.Dir(got) != out || filepath.Ext(got) != ".mp4" {
		t.Fatalf("generator asked to write %q, want an .mp4 in %s", got, out)
	}
	resp, err := http.Get(ts.URL + j["video_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("GIF8")) || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("content: status %d, type %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
}
