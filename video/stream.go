package video

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// MP4Writer encodes frames into an MP4 file as they come, through one
// ffmpeg process reading raw RGB from a pipe, so a caller can encode while
// it is still producing frames. The file appears under its name only when
// Close succeeds; a failed write or Close, or Abort, kills and reaps ffmpeg
// and removes the temporary file. One goroutine uses a writer at a time
// (only Kill may come from another).
type MP4Writer struct {
	path, tmp     string
	width, height int
	cmd           *exec.Cmd
	stdin         io.WriteCloser
	stderr        *tailBuffer
	frames        int
	finished      bool  // Close or Abort ran: ffmpeg is reaped
	err           error // the first failure, returned by every later call
}

// NewMP4Writer starts ffmpeg (libx264, yuv420p, the default Encoding, like
// WriteMP4) on a temporary file beside path.
func NewMP4Writer(path string, width, height, fps int) (*MP4Writer, error) {
	return NewMP4WriterWith(path, width, height, fps, Encoding{})
}

// NewMP4WriterWith is NewMP4Writer with the x264 settings of enc.
func NewMP4WriterWith(path string, width, height, fps int, enc Encoding) (*MP4Writer, error) {
	if err := enc.Validate(); err != nil {
		return nil, fmt.Errorf("video: %s: %w", path, err)
	}
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("video: %s: bad frame size %dx%d", path, width, height)
	}
	if fps <= 0 {
		return nil, fmt.Errorf("video: %s: bad frame rate %d", path, fps)
	}
	ff, err := FFmpeg()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tmp, err := createTemp(path)
	if err != nil {
		return nil, err
	}
	w := &MP4Writer{path: path, tmp: tmp, width: width, height: height, stderr: &tailBuffer{max: 8 << 10}}
	args := []string{"-y", "-loglevel", "error",
		"-f", "rawvideo", "-vcodec", "rawvideo", "-s", fmt.Sprintf("%dx%d", width, height),
		"-pix_fmt", "rgb24", "-r", fmt.Sprintf("%d.00", fps), "-i", "-", "-an"}
	args = append(args, enc.x264Args()...)
	w.cmd = exec.Command(ff, append(args, "-f", "mp4", tmp)...)
	w.cmd.Stderr = w.stderr
	if w.stdin, err = w.cmd.StdinPipe(); err == nil {
		err = w.cmd.Start()
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("video: %s: starting ffmpeg: %w", path, err)
	}
	return w, nil
}

// Frames is how many frames were written so far.
func (w *MP4Writer) Frames() int { return w.frames }

// WriteFrame sends one packed RGB frame (width*height*3 bytes) to ffmpeg.
// It blocks while ffmpeg's input pipe is full. On error the writer is
// aborted.
func (w *MP4Writer) WriteFrame(rgb []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return fmt.Errorf("video: %s: frame written after Close", w.path)
	}
	if len(rgb) != w.width*w.height*3 {
		err := fmt.Errorf("video: %s: frame %d has %d bytes, want %d (%dx%d RGB)", w.path, w.frames, len(rgb), w.width*w.height*3, w.width, w.height)
		w.abort(err)
		return err
	}
	if _, err := w.stdin.Write(rgb); err != nil {
		// Usually a broken pipe: ffmpeg exited, and its stderr says why.
		w.abort(nil)
		w.err = w.ffmpegError(fmt.Errorf("stopped reading at frame %d (%v)", w.frames, err))
		return w.err
	}
	w.frames++
	return nil
}

// Close ends ffmpeg's input, waits for it to finish the file and renames
// the file into place.
func (w *MP4Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return nil
	}
	if w.frames == 0 {
		err := fmt.Errorf("video: %s: no frames", w.path)
		w.abort(err)
		return err
	}
	w.finished = true
	cerr := w.stdin.Close()
	werr := w.cmd.Wait()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(w.tmp, w.path)
	}
	if werr != nil {
		os.Remove(w.tmp)
		w.err = w.ffmpegError(werr)
		return w.err
	}
	return nil
}

// CPUTime is the CPU time (user + system) ffmpeg used, known after a
// successful Close.
func (w *MP4Writer) CPUTime() time.Duration {
	if w.cmd.ProcessState == nil {
		return 0
	}
	return w.cmd.ProcessState.UserTime() + w.cmd.ProcessState.SystemTime()
}

// Kill stops ffmpeg at once and may be called from any goroutine: a
// WriteFrame blocked on an ffmpeg that stopped reading then returns an
// error. The writer's own goroutine must still call Abort (or see that
// error), which reaps ffmpeg and removes the temporary file.
func (w *MP4Writer) Kill() { w.cmd.Process.Kill() }

// Abort stops ffmpeg, reaps it and removes the temporary file; the output
// path is never created. It does nothing after a successful Close.
func (w *MP4Writer) Abort() {
	if !w.finished {
		w.abort(errors.New("video: " + w.path + ": aborted"))
	}
}

func (w *MP4Writer) abort(err error) {
	if w.err == nil {
		w.err = err
	}
	if w.finished {
		return
	}
	w.finished = true
	w.stdin.Close()
	w.cmd.Process.Kill()
	w.cmd.Wait()
	os.Remove(w.tmp)
}

// ffmpegError names the file and adds what ffmpeg printed.
func (w *MP4Writer) ffmpegError(err error) error {
	msg := strings.TrimSpace(w.stderr.String())
	if msg == "" {
		return fmt.Errorf("video: %s: ffmpeg: %v", w.path, err)
	}
	return fmt.Errorf("video: %s: ffmpeg: %v: %s", w.path, err, msg)
}

// tailBuffer keeps the last max bytes written to it (ffmpeg's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
