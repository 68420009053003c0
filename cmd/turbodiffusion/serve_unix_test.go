//go:build unix

package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/server"
)

// SIGTERM stops serve: the running job is cancelled and the partial files
// go; the job index stays.
func TestServeStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	gen := blockingGen{started: make(chan string, 1)}
	out := &lineWriter{lines: make(chan string, 100)}
	done := make(chan error, 1)
	go func() {
		done <- serve(context.Background(), out, gen, server.Config{OutDir: dir}, "127.0.0.1:0", "fake")
	}()
	var url string
	for url == "" {
		select {
		case line := <-out.lines:
			if i := strings.Index(line, "http://"); i >= 0 {
				url = strings.Fields(line[i:])[0]
			}
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not start")
		}
	}
	resp, err := http.Post(url+"/v1/videos", "application/json", strings.NewReader(`{"prompt":"x","num_frames":1}`))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
	<-gen.started
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "index.json" {
			t.Errorf("left after SIGTERM: %s", e.Name())
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if !strings.Contains(string(b), `"server_shutdown"`) {
		t.Errorf("index after SIGTERM: %s", b)
	}
}
