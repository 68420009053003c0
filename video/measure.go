package video

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// EncodeStats is one encoder setting measured on one clip.
type EncodeStats struct {
	Encoding Encoding
	// Alone is the wall time to encode the clip fed as fast as ffmpeg
	// reads it, start to finished file; CPU is ffmpeg's CPU time then.
	Alone, CPU time.Duration
	// Tail is, with the frames fed in chunks at the decoder's pace, the time
	// from the last chunk's arrival to the finished file (what streaming
	// does not hide); Late is how far the feeding fell behind that pace
	// (the decode would have waited for the encoder this long).
	Tail, Late time.Duration
	Bytes      int64
	PSNR       float64 // dB, against the clip's frames
}

// MeasureEncode encodes c with enc twice in dir: once alone, once fed
// chunk frames at a time every interval (a decoder's pace, through a queue
// of queue chunks as the pipeline's encoder has), then reads the file back
// for its size and PSNR.
func MeasureEncode(c *Clip, enc Encoding, dir string, chunk int, interval time.Duration, queue int) (EncodeStats, error) {
	st := EncodeStats{Encoding: enc}
	if err := c.Validate(); err != nil {
		return st, err
	}
	path := filepath.Join(dir, "measure.mp4")
	os.Remove(path)
	t0 := time.Now()
	w, err := NewMP4WriterWith(path, c.Width, c.Height, c.FPS, enc)
	if err != nil {
		return st, err
	}
	for _, f := range c.Frames {
		if err := w.WriteFrame(f); err != nil {
			return st, err
		}
	}
	if err := w.Close(); err != nil {
		return st, err
	}
	st.Alone, st.CPU = time.Since(t0), w.CPUTime()
	fi, err := os.Stat(path)
	if err != nil {
		return st, err
	}
	st.Bytes = fi.Size()
	got, err := ReadMP4(path, c.Width, c.Height)
	if err != nil {
		return st, err
	}
	if st.PSNR, err = PSNR(c.Frames, got); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}

	// Paced: a producer goroutine hands out chunks on a schedule, as the
	// VAE does, into a queue the writer drains.
	os.Remove(path)
	w, err = NewMP4WriterWith(path, c.Width, c.Height, c.FPS, enc)
	if err != nil {
		return st, err
	}
	q := make(chan [][]byte, queue)
	lastDecoded := make(chan time.Time, 1)
	start := time.Now()
	go func() {
		var late time.Duration
		for i := 0; i < len(c.Frames); i += chunk {
			due := start.Add(time.Duration(i/chunk+1) * interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			q <- c.Frames[i:min(i+chunk, len(c.Frames))]
			late = max(late, time.Since(due))
		}
		st.Late = late
		lastDecoded <- time.Now()
		close(q)
	}()
	var werr error
	for b := range q {
		for _, f := range b {
			if werr == nil {
				werr = w.WriteFrame(f)
			}
		}
	}
	if werr != nil {
		return st, werr
	}
	if err := w.Close(); err != nil {
		return st, err
	}
	st.Tail = time.Since(<-lastDecoded)
	return st, nil
}
