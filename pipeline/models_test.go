package pipeline

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindModelsMissing: an empty folder names every file; a folder that
// does not exist says so instead of only listing files.
func TestFindModelsMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := FindModels(dir, "", Files{})
	var me *MissingError
	if !errors.As(err, &me) || me.NoDir || len(me.Missing) != 4 {
		t.Fatalf("empty folder: got %v, want a MissingError listing 4 files", err)
	}
	if !strings.Contains(err.Error(), "is missing 4 file(s)") {
		t.Errorf("empty folder: %v", err)
	}
	gone := filepath.Join(dir, "nope")
	_, err = FindModels(gone, "", Files{})
	if !errors.As(err, &me) || !me.NoDir || !strings.Contains(err.Error(), gone+" does not exist") {
		t.Errorf("absent folder: got %v, want one saying %s does not exist", err, gone)
	}
}
