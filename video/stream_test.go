package video

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := FFmpeg(); err != nil {
		t.Skip("skipping MP4 test:", err)
	}
}

// Frames written one at a time come back from the file in order and close
// to what was written, and the file appears only at Close.
func TestMP4WriterRoundTrip(t *testing.T) {
	needFFmpeg(t)
	c := testClip(64, 48, 13)
	path := filepath.Join(t.TempDir(), "stream.mp4")
	w, err := NewMP4Writer(path, c.Width, c.Height, c.FPS)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range c.Frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the file exists before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Frames() != len(c.Frames) {
		t.Errorf("Frames() = %d, want %d", w.Frames(), len(c.Frames))
	}
	got, err := ReadMP4(path, c.Width, c.Height)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(c.Frames) {
		t.Fatalf("decoded %d frames, wrote %d", len(got), len(c.Frames))
	}
	// Per-frame error: a dropped, duplicated or reordered frame shows as a
	// large error on that frame (the gradient moves 4 levels a frame).
	for i := range got {
		var sum float64
		for j := range got[i] {
			sum += math.Abs(float64(got[i][j]) - float64(c.Frames[i][j]))
		}
		mae := sum / float64(len(got[i]))
		if i == 0 || i == len(got)-1 {
			t.Logf("frame %d: mean abs error %.2f (of 255)", i, mae)
		}
		if mae > 4 {
			t.Errorf("frame %d: mean abs error %.2f too large for CRF %d", i, mae, CRF)
		}
	}
	if err := w.WriteFrame(c.Frames[0]); err == nil {
		t.Error("a frame written after Close must fail")
	}
	assertNoPartial(t, filepath.Dir(path))
}

// Abort after some frames leaves neither the file nor its temporary, and
// reaps ffmpeg.
func TestMP4WriterAbort(t *testing.T) {
	needFFmpeg(t)
	c := testClip(32, 32, 3)
	dir := t.TempDir()
	path := filepath.Join(dir, "aborted.mp4")
	w, err := NewMP4Writer(path, c.Width, c.Height, c.FPS)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.Frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	w.Abort()
	w.Abort() // twice is harmless
	if w.cmd.ProcessState == nil {
		t.Error("ffmpeg was not reaped")
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "aborted") {
		t.Errorf("Close after Abort: %v, want an 'aborted' error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("abort left files: %v", ents)
	}
}

// fakeFFmpeg puts an ffmpeg on PATH that prints a message and fails.
func fakeFFmpeg(t *testing.T) {
	t.Helper()
	bin := t.TempDir()
	script := "#!/bin/sh\necho 'fake ffmpeg: Unknown encoder libx264' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "ffmpeg"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
}

// ffmpeg failing surfaces its own message with the file name, whether the
// failure shows at a write (broken pipe) or at Close, and leaves no file.
func TestMP4WriterFFmpegFails(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh for the fake ffmpeg")
	}
	fakeFFmpeg(t)
	for _, size := range []int{4, 1024} { // a 48-byte frame fits in the pipe; a 3 MB one does not
		dir := t.TempDir()
		path := filepath.Join(dir, "fail.mp4")
		w, err := NewMP4Writer(path, size, size, 16)
		if err != nil {
			t.Fatal(err)
		}
		err = w.WriteFrame(make([]byte, size*size*3))
		if err == nil {
			err = w.Close()
		}
		t.Logf("%dx%d: %v", size, size, err)
		if err == nil || !strings.Contains(err.Error(), "fake ffmpeg: Unknown encoder libx264") || !strings.Contains(err.Error(), path) {
			t.Errorf("%dx%d: error %v should name %s and carry ffmpeg's message", size, size, err, path)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%dx%d: failure left files: %v", size, size, ents)
		}
	}
}

// A real encoder refusal (libx264 needs even sizes for yuv420p) and a
// wrong frame size are errors, not files.
func TestMP4WriterBadInput(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	w, err := NewMP4Writer(filepath.Join(dir, "odd.mp4"), 33, 17, 16)
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteFrame(make([]byte, 33*17*3))
	if err == nil {
		err = w.Close()
	}
	t.Log("odd size:", err)
	if err == nil {
		t.Error("an odd frame size must fail in libx264")
	}

	w, err = NewMP4Writer(filepath.Join(dir, "short.mp4"), 8, 8, 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "frame 0 has 10 bytes, want 192") {
		t.Errorf("short frame: %v", err)
	}
	w, err = NewMP4Writer(filepath.Join(dir, "empty.mp4"), 8, 8, 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "no frames") {
		t.Errorf("no frames: %v", err)
	}
	if _, err := NewMP4Writer(filepath.Join(dir, "x.mp4"), 0, 8, 16); err == nil {
		t.Error("a zero width must fail")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failures left files: %v", ents)
	}
}

// Kill, from another goroutine, unblocks a WriteFrame stuck on an ffmpeg
// that stopped reading; Abort then leaves no file.
func TestMP4WriterKill(t *testing.T) {
	for _, p := range []string{"/bin/sh", "/bin/sleep"} {
		if _, err := os.Stat(p); err != nil {
			t.Skip("no " + p + " for the fake ffmpeg")
		}
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "ffmpeg"), []byte("#!/bin/sh\nexec /bin/sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	dir := t.TempDir()
	const size = 1024 // a 3 MB frame: more than the pipe holds
	w, err := NewMP4Writer(filepath.Join(dir, "stalled.mp4"), size, size, 16)
	if err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() { werr <- w.WriteFrame(make([]byte, size*size*3)) }()
	select {
	case err := <-werr:
		t.Fatalf("WriteFrame returned %v before ffmpeg read anything", err)
	case <-time.After(200 * time.Millisecond):
	}
	w.Kill()
	select {
	case err := <-werr:
		t.Log(err)
		if err == nil {
			t.Error("a frame ffmpeg never read was reported written")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteFrame still blocked 10 s after Kill")
	}
	w.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("kill left files: %v", ents)
	}
}
