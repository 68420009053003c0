package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// storedZip writes a zip of uncompressed entries.
func storedZip(t *testing.T, path string, entries map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNamesFromFilesAreQuoted: names a file carries (pickle globals, zip
// entries, tensor names) reach the terminal quoted, so an ANSI escape in
// them is shown, never executed.
func TestNamesFromFilesAreQuoted(t *testing.T) {
	dir := t.TempDir()
	const esc = "\x1b[2J\x1b[31m"
	global := filepath.Join(dir, "global.pth")
	storedZip(t, global, map[string][]byte{"a/data.pkl": []byte("\x80\x02cos" + esc + "\nsystem\n)R."), "a/byteorder": []byte("little")})
	entry := filepath.Join(dir, "entry.pth")
	storedZip(t, entry, map[string][]byte{"a" + esc + "/data.pkl": []byte("\x80\x02}."), "a" + esc + "/byteorder": []byte("big")})
	names := filepath.Join(dir, "names.safetensors")
	if err := checkpoint.WriteSafetensors(names, []checkpoint.Tensor{
		{Name: "patch_embedding.weight" + esc, DType: tensor.F32, Shape: []int{1}, Data: make([]byte, 4)},
	}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{global, entry, names} {
		for _, list := range []bool{false, true} {
			out, err := inspectOut(t, path, list)
			all := out
			if err != nil {
				all += err.Error()
			}
			if strings.Contains(all, "\x1b") {
				t.Errorf("inspect %s (--tensors %v): an escape reached the output:\n%q", filepath.Base(path), list, all)
			}
			if (path != names || list) && !strings.Contains(all, `\x1b[2J`) {
				t.Errorf("inspect %s (--tensors %v): the escape is not shown quoted:\n%q", filepath.Base(path), list, all)
			}
		}
	}
}
