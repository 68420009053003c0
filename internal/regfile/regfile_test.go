//go:build unix

package regfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRefusesNonRegular: a FIFO (without a writer, which would block a
// plain open forever), a directory and a device are refused at once.
func TestRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "weights.pth")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for path, want := range map[string]string{fifo: "named pipe", dir: "directory", "/dev/zero": "character device"} {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: error %v, want one naming it %s, not a regular file", path, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still blocked after 5 s", path)
		}
	}
	reg := filepath.Join(dir, "ok.txt")
	os.WriteFile(reg, []byte("hello"), 0o644)
	if b, err := ReadFile(reg); err != nil || string(b) != "hello" {
		t.Errorf("regular file: %q, %v", b, err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(reg, link)
	if b, err := ReadFile(link); err != nil || string(b) != "hello" {
		t.Errorf("link to a regular file: %q, %v", b, err)
	}
}
