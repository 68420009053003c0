package video

import (
	"os"
	"path/filepath"
	"testing"
)

// A finished video is an ordinary readable file, not the 0600 of a temp file.
func TestWrittenFileIsReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clip.gif")
	if _, err := Write(path, testClip(8, 8, 2)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want -rw-r--r--", st.Mode().Perm())
	}
}
