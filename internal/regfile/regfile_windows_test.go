package regfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusesNonRegularWindows: a directory and the NUL device are refused,
// a regular file is read. (Compiled on Linux in CI; run only on Windows.)
func TestRefusesNonRegularWindows(t *testing.T) {
	dir := t.TempDir()
	for path, want := range map[string]string{dir: "directory", "NUL": "device"} {
		if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming it %s, not a regular file", path, err, want)
		}
	}
	reg := filepath.Join(dir, "ok.txt")
	os.WriteFile(reg, []byte("hello"), 0o644)
	if b, err := ReadFile(reg); err != nil || string(b) != "hello" {
		t.Errorf("regular file: %q, %v", b, err)
	}
}
