package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// Output says how Request.Output was written.
type Output struct {
	// Path is the file written: Request.Output, or a .gif beside it when
	// there is no ffmpeg (Note then says so).
	Path, Note string
	// Streamed means ffmpeg encoded the MP4 while the VAE decoded: the
	// timings then hold one "decode+encode" stage instead of "decode" and
	// "write".
	Streamed bool
	// EncodeBusy is the encoder's own wall time: for a streamed MP4 the
	// time spent handing frames to ffmpeg (blocked while it was busy) and
	// waiting for it to finish the file; otherwise the "write" stage.
	EncodeBusy time.Duration
	// EncodeTail is the part of the "decode+encode" stage after the last
	// frame was decoded: the encoding streaming did not hide.
	EncodeTail time.Duration
}

// encodeQueue is how many decoded chunks (4 frames each) may wait for the
// encoder before the decode waits for it: enough to ride out a slow frame,
// small enough not to hold much memory twice.
const encodeQueue = 2

// call is what one Generate call passes down to the decode stage, which
// text-to-video and image-to-video share.
type call struct {
	ctx       context.Context
	output    string
	encoding  video.Encoding
	attention string  // the request's attention override ("" = the engine's)
	topK      float64 // the request's SLA fraction (0 = the engine's)
	// loras are the request's LoRA adapters; applied the models they were
	// merged into (restored when the call ends), notes their warnings.
	loras   []*lora.Adapter
	applied []applied
	notes   []string
}

// checkOutput rejects an output name video.Write would refuse, before any
// model runs.
// A file's folder must exist already, so a typo fails now and not after
// the whole generation.
func checkOutput(path string) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".mp4", ".gif":
		dir := filepath.Dir(path)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fieldErr(FieldOutput, CodeInvalid, path, "folder %s does not exist", dir)
		}
		return nil
	case "":
		return nil
	}
	return fieldErr(FieldOutput, CodeInvalid, path, "unknown format %q (use .mp4, .gif, or a folder for PNG frames)", filepath.Ext(path))
}

// streams says whether decodeLatents encodes while decoding: one sample
// (several are tiled side by side, which needs every sample decoded first)
// to an .mp4 with ffmpeg present.
func (c call) streams(samples int) bool {
	if c.output == "" || samples != 1 || !strings.EqualFold(filepath.Ext(c.output), ".mp4") {
		return false
	}
	_, err := video.FFmpeg()
	return err == nil
}

// decodeStreaming decodes the single latent of res chunk by chunk, handing
// each chunk's frames to an MP4 encoder goroutine while the next chunk
// decodes. The frames are also kept in res.Clip.
func (e *Engine) decodeStreaming(res *Result, lat [4]int, fps int, stage func(string, func() error) error) error {
	ctx, path := e.call.ctx, e.call.output
	if ctx == nil {
		ctx = context.Background()
	}
	T := lat[1]
	var frames [][]uint8
	var vshape []int
	out := &Output{Path: path, Streamed: true}
	err := stage("decode+encode", func() error {
		enc := startEncoder(path, fps, e.call.encoding)
		err := e.decodeFrames(res.Latents[0], []int{16, T, lat[2], lat[3]}, func(first int, f [][]uint8, w, h int) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			e.report(Event{Stage: "decode", Done: (first+3)/4 + 1, Total: T, Note: "encoding " + filepath.Base(path)})
			frames, vshape = append(frames, f...), []int{3, len(f), h, w}
			return enc.send(f, w, h)
		})
		if err != nil {
			enc.abort()
			return err
		}
		decoded := time.Now()
		e.report(Event{Stage: "write", Note: "finishing " + filepath.Base(path)})
		if err := enc.finish(); err != nil {
			return err
		}
		out.EncodeBusy, out.EncodeTail = enc.busy, time.Since(decoded)
		return nil
	})
	if err != nil {
		return err
	}
	res.Clip = tile([][][]uint8{frames}, vshape[3], vshape[2], fps)
	res.Output = out
	return nil
}

// writeAfterDecode writes res.Clip to the call's output, if any, as its own
// "write" stage (several samples, GIF or PNG output, or no ffmpeg).
func (e *Engine) writeAfterDecode(res *Result, stage func(string, func() error) error) error {
	if e.call.output == "" {
		return nil
	}
	e.report(Event{Stage: "write", Note: e.call.output})
	out := &Output{}
	if err := stage("write", func() (err error) {
		t0 := time.Now()
		out.Path, out.Note, err = WriteOutputWith(e.call.output, res.Clip, e.call.encoding)
		out.EncodeBusy = time.Since(t0)
		return err
	}); err != nil {
		return err
	}
	res.Output = out
	return nil
}

// encoder feeds frames to a video.MP4Writer on its own goroutine; ffmpeg
// starts with the first frames, when their size is known.
type encoder struct {
	path    string
	fps     int
	enc     video.Encoding
	batches chan batch
	done    chan struct{} // closed when the goroutine has returned
	failed  chan struct{} // closed when err is set
	stop    chan struct{} // closed by abort: queued frames are dropped
	err     error
	mu      sync.Mutex // guards w between run's goroutine and abort
	w       *video.MP4Writer
	busy    time.Duration // time in NewMP4Writer, WriteFrame and Close
}

type batch struct {
	frames        [][]uint8
	width, height int
}

func startEncoder(path string, fps int, e video.Encoding) *encoder {
	enc := &encoder{path: path, fps: fps, enc: e, batches: make(chan batch, encodeQueue), done: make(chan struct{}),
		failed: make(chan struct{}), stop: make(chan struct{})}
	go enc.run()
	return enc
}

func (enc *encoder) run() {
	defer close(enc.done)
	for b := range enc.batches {
		if enc.err != nil || enc.stopped() {
			continue // drain until the decode side stops sending
		}
		t0 := time.Now()
		err := enc.write(b)
		enc.busy += time.Since(t0)
		if err != nil {
			enc.err = err
			close(enc.failed)
		}
	}
}

func (enc *encoder) write(b batch) error {
	if enc.w == nil {
		w, err := video.NewMP4WriterWith(enc.path, b.width, b.height, enc.fps, enc.enc)
		if err != nil {
			return err
		}
		enc.mu.Lock()
		enc.w = w
		enc.mu.Unlock()
	}
	for _, f := range b.frames {
		if enc.stopped() {
			return nil // abort reaps the writer
		}
		if err := enc.w.WriteFrame(f); err != nil {
			return err
		}
	}
	return nil
}

// send queues frames, waiting while the queue is full; it returns the
// encoder's error once it has failed, which stops the decode.
func (enc *encoder) send(frames [][]uint8, width, height int) error {
	select {
	case <-enc.failed:
		return enc.err
	default:
	}
	select {
	case enc.batches <- batch{frames, width, height}:
		return nil
	case <-enc.failed:
		return enc.err
	}
}

// finish waits for the queued frames to be encoded and the file to be
// completed and renamed into place.
func (enc *encoder) finish() error {
	close(enc.batches)
	<-enc.done
	if enc.err != nil {
		return enc.err // a writer that failed has already aborted itself
	}
	if enc.w == nil {
		return errors.New("video: " + enc.path + ": no frames decoded")
	}
	t0 := time.Now()
	err := enc.w.Close()
	enc.busy += time.Since(t0)
	return err
}

func (enc *encoder) stopped() bool {
	select {
	case <-enc.stop:
		return true
	default:
		return false
	}
}

// abort stops the encoder after a decode error or cancel: queued frames are
// dropped, ffmpeg is killed at once (so a write blocked on it returns, and
// no frames are encoded for nothing) and reaped, and no file is left.
func (enc *encoder) abort() {
	close(enc.stop)
	// A writer made after this look sees stop closed before its first frame.
	enc.mu.Lock()
	w := enc.w
	enc.mu.Unlock()
	if w != nil {
		w.Kill()
	}
	close(enc.batches)
	<-enc.done
	if enc.w != nil {
		enc.w.Abort()
	}
}

// WriteOutput writes the clip to path; without ffmpeg an .mp4 request falls
// back to a .gif beside it and says so in the returned note.
func WriteOutput(path string, c *video.Clip) (written, note string, err error) {
	return WriteOutputWith(path, c, video.Encoding{})
}

// WriteOutputWith is WriteOutput with the x264 settings of enc for an MP4.
func WriteOutputWith(path string, c *video.Clip, enc video.Encoding) (written, note string, err error) {
	written, err = video.WriteWith(path, c, enc)
	if errors.Is(err, video.ErrNoFFmpeg) {
		gif := path[:len(path)-len(filepath.Ext(path))] + ".gif"
		if _, serr := os.Stat(gif); serr == nil {
			return "", "", fmt.Errorf("%w; and the GIF fallback %s already exists", err, gif)
		}
		written, err = video.Write(gif, c)
		note = fmt.Sprintf("%v: wrote an animated GIF instead", video.ErrNoFFmpeg)
	}
	return written, note, err
}
