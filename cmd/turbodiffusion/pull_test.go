package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// hfServer serves small files as Hugging Face does: a HEAD or GET of
// /REPO/resolve/main/PATH answers a redirect to a CDN URL with
// X-Linked-Size and X-Linked-Etag (the SHA-256) for large files, and the
// file itself with an ETag for small ones; the CDN honours ranges.
type hfServer struct {
	*httptest.Server
	files  map[string][]byte // "REPO/PATH" → content
	lfs    map[string]bool
	mu     sync.Mutex
	ranges []string
	lie    map[string]string // a wrong SHA-256 to announce
	cut    map[string]int    // close the connection after this many bytes, once
}

func newHFServer(t *testing.T) *hfServer {
	s := &hfServer{files: map[string][]byte{}, lfs: map[string]bool{}, lie: map[string]string{}, cut: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *hfServer) serve(w http.ResponseWriter, r *http.Request) {
	key, cdn := strings.CutPrefix(r.URL.Path, "/cdn/")
	if !cdn {
		key = strings.TrimPrefix(strings.Replace(r.URL.Path, "/resolve/main/", "/", 1), "/")
	}
	b, ok := s.files[key]
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	if l, ok := s.lie[key]; ok {
		etag = `"` + l + `"`
	}
	if s.lfs[key] && !cdn {
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(b)))
		w.Header().Set("X-Linked-Etag", etag)
		http.Redirect(w, r, "/cdn/"+key, http.StatusFound)
		return
	}
	s.mu.Lock()
	if rg := r.Header.Get("Range"); rg != "" {
		s.ranges = append(s.ranges, key+" "+rg)
	}
	n, cut := s.cut[key]
	delete(s.cut, key)
	s.mu.Unlock()
	if !s.lfs[key] {
		w.Header().Set("ETag", etag)
	}
	if cut && r.Method == "GET" {
		// Send part of the file, then drop the connection.
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(200)
		w.Write(b[:n])
		w.(http.Flusher).Flush()
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
		return
	}
	http.ServeContent(w, r, key, time.Time{}, bytes.NewReader(b))
}

// fill makes the files of model 1.3b (and its -quant) on the server.
func (s *hfServer) fill() map[string][]byte {
	want := map[string][]byte{}
	for i, f := range append(mustFiles("1.3b", false), mustFiles("1.3b", true)...) {
		b := bytes.Repeat([]byte(fmt.Sprintf("%s-%d;", f.path, i)), 500+i*300)
		s.files[f.repo+"/"+f.path] = b
		s.lfs[f.repo+"/"+f.path] = strings.HasSuffix(f.path, ".pth")
		want[f.dest] = b
	}
	return want
}

func mustFiles(model string, quant bool) []pullFile {
	f, err := modelFiles(model, quant)
	if err != nil {
		panic(err)
	}
	return f
}

func TestPull(t *testing.T) {
	srv := newHFServer(t)
	want := srv.fill()
	dir := t.TempDir()
	dit := "TurboWan2.1-T2V-1.3B-480P.pth"
	ditKey := "TurboDiffusion/TurboWan2.1-T2V-1.3B-480P/" + dit

	// An interrupted download: the connection drops after 1000 bytes.
	srv.cut[ditKey] = 1000
	_, stderr, err := run(t, "pull", "1.3b", "--dir", dir, "--base-url", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "run pull again to resume") {
		t.Fatalf("interrupted pull: %v\n%s", err, stderr)
	}
	if st, err := os.Stat(filepath.Join(dir, dit+".partial")); err != nil || st.Size() != 1000 {
		t.Fatalf("partial file: %v %v", st, err)
	}
	// Again: it resumes with a range request and completes every file.
	_, stderr, err = run(t, "pull", "1.3b", "--dir", dir, "--base-url", srv.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(srv.ranges) != 1 || srv.ranges[0] != ditKey+" bytes=1000-" {
		t.Errorf("range requests %v", srv.ranges)
	}
	for _, f := range mustFiles("1.3b", false) {
		b, err := os.ReadFile(filepath.Join(dir, f.dest))
		if err != nil || !bytes.Equal(b, want[f.dest]) {
			t.Errorf("%s: %d bytes (%v), want %d", f.dest, len(b), err, len(want[f.dest]))
		}
	}
	for _, w := range []string{"google/umt5-xxl/tokenizer.json", "size and SHA-256 checked", "done: turbodiffusion generate --model " + dir} {
		if !strings.Contains(stderr, w) {
			t.Errorf("output lacks %q:\n%s", w, stderr)
		}
	}
	// generate finds the folder complete.
	if _, err := pipeline.FindModels(dir, pipeline.DefaultVariant, pipeline.Files{}); err != nil {
		t.Errorf("the pulled folder: %v", err)
	}

	// A second pull finds everything there and downloads nothing.
	_, stderr, err = run(t, "pull", "1.3b", "--dir", dir, "--base-url", srv.URL)
	if err != nil || strings.Count(stderr, "already there") != len(mustFiles("1.3b", false)) {
		t.Fatalf("second pull: %v\n%s", err, stderr)
	}

	// --quant takes the -quant DiT; a corrupt download (the hash does not
	// match) is refused and removed.
	q := "TurboWan2.1-T2V-1.3B-480P-quant.pth"
	srv.lie["TurboDiffusion/TurboWan2.1-T2V-1.3B-480P/"+q] = strings.Repeat("0", 64)
	_, _, err = run(t, "pull", "1.3b", "--quant", "--dir", dir, "--base-url", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt download: %v", err)
	}
	for _, n := range []string{q, q + ".partial"} {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s kept after a hash mismatch", n)
		}
	}
	delete(srv.lie, "TurboDiffusion/TurboWan2.1-T2V-1.3B-480P/"+q)
	if _, _, err := run(t, "pull", "1.3b", "--quant", "--dir", dir, "--base-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, q)); !bytes.Equal(b, want[q]) {
		t.Error("the -quant file is wrong")
	}

	// A file already there that does not match is not overwritten.
	os.WriteFile(filepath.Join(dir, "Wan2.1_VAE.pth"), []byte("mine"), 0o644)
	if _, _, err := run(t, "pull", "1.3b", "--dir", dir, "--base-url", srv.URL); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("mismatching existing file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Wan2.1_VAE.pth")); string(b) != "mine" {
		t.Error("an existing file was overwritten")
	}

	if _, _, err := run(t, "pull", "7b"); err == nil || !strings.Contains(err.Error(), "1.3b, 14b-480p, 14b-720p, i2v-a14b") {
		t.Errorf("unknown model: %v", err)
	}
	if f := mustFiles("i2v-a14b", true); f[0].path != "TurboWan2.2-I2V-A14B-high-720P-quant.pth" || f[1].repo != "TurboDiffusion/TurboWan2.2-I2V-A14B-720P" {
		t.Errorf("i2v files %v", f[:2])
	}
}
