// Package video writes generated frames to files: H.264 MP4 through the
// ffmpeg found on PATH (as the reference does through imageio), or, where
// there is no ffmpeg, an animated GIF or PNG frames. Every file is written
// under a temporary name and renamed when complete, so a failed or
// interrupted run never leaves a half-written video behind.
package video

import (
	"errors"
	"fmt"
	"image"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
)

// Clip is a sequence of RGB frames of one size.
type Clip struct {
	Width, Height int
	FPS           int
	// Frames holds each frame as packed RGB bytes (Width*Height*3).
	Frames [][]byte
}

// Validate checks that every frame has the clip's size.
func (c *Clip) Validate() error {
	if c.Width <= 0 || c.Height <= 0 {
		return fmt.Errorf("video: bad frame size %dx%d", c.Width, c.Height)
	}
	if c.FPS <= 0 {
		return fmt.Errorf("video: bad frame rate %d", c.FPS)
	}
	if len(c.Frames) == 0 {
		return errors.New("video: no frames")
	}
	for i, f := range c.Frames {
		if len(f) != c.Width*c.Height*3 {
			return fmt.Errorf("video: frame %d has %d bytes, want %d (%dx%d RGB)", i, len(f), c.Width*c.Height*3, c.Width, c.Height)
		}
	}
	return nil
}

// CRF is the x264 quality the reference uses: imageio quality 5 maps to
// int((1-5/10)*51) = 25.
const CRF = 25

// ErrNoFFmpeg means no ffmpeg executable was found on PATH.
var ErrNoFFmpeg = errors.New("ffmpeg not found on PATH (install it, e.g. `apt install ffmpeg`, for MP4 output)")

// FFmpeg returns the path of the ffmpeg executable, or ErrNoFFmpeg.
func FFmpeg() (string, error) {
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		return "", ErrNoFFmpeg
	}
	return p, nil
}

// Write writes the clip to path, choosing the format by extension: .mp4
// (needs ffmpeg), .gif, or a directory of PNG frames for any path ending in
// a slash or without extension. It returns the path actually written.
func Write(path string, c *Clip) (string, error) {
	return WriteWith(path, c, Encoding{})
}

// WriteWith is Write with the x264 settings of enc for an MP4.
func WriteWith(path string, c *Clip, enc Encoding) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".mp4":
		return path, WriteMP4With(path, c, enc)
	case ".gif":
		return path, WriteGIF(path, c)
	case "":
		return path, WritePNGs(path, c)
	}
	return "", fmt.Errorf("video: %s: unknown output format %q (use .mp4, .gif, or a folder for PNG frames)", path, filepath.Ext(path))
}

// WriteMP4 encodes the clip as H.264 (libx264, yuv420p, CRF 25) at the
// clip's frame rate, like the reference's imageio.mimsave call (whose x264
// runs at its default preset, medium; ours is DefaultPreset).
func WriteMP4(path string, c *Clip) error { return WriteMP4With(path, c, Encoding{}) }

// WriteMP4With is WriteMP4 with the x264 settings of enc.
func WriteMP4With(path string, c *Clip, enc Encoding) error {
	if err := c.Validate(); err != nil {
		return err
	}
	w, err := NewMP4WriterWith(path, c.Width, c.Height, c.FPS, enc)
	if err != nil {
		return err
	}
	for _, f := range c.Frames {
		if err := w.WriteFrame(f); err != nil {
			return err
		}
	}
	return w.Close()
}

// WriteGIF writes an animated GIF (Plan 9 palette, Floyd-Steinberg
// dithering): the fallback when ffmpeg is missing.
func WriteGIF(path string, c *Clip) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return atomicWrite(path, func(tmp string) error {
		g := &gif.GIF{Image: make([]*image.Paletted, len(c.Frames)), Delay: make([]int, len(c.Frames))}
		delay := max(1, (100+c.FPS/2)/c.FPS)
		// Frames are dithered independently, so quantise them on every core.
		parallel.For(len(c.Frames), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				img := image.NewPaletted(image.Rect(0, 0, c.Width, c.Height), palette.Plan9)
				draw.FloydSteinberg.Draw(img, img.Bounds(), rgbImage(c.Width, c.Height, c.Frames[i]), image.Point{})
				g.Image[i], g.Delay[i] = img, delay
			}
		})
		out, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if err := gif.EncodeAll(out, g); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// WritePNGs writes frame_00000.png ... into the folder dir, built in a
// temporary folder and renamed into place.
func WritePNGs(dir string, c *Clip) error {
	if err := c.Validate(); err != nil {
		return err
	}
	dir = strings.TrimRight(dir, "/")
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("video: %s already exists; choose a new folder for PNG frames", dir)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return err
	}
	for i, f := range c.Frames {
		out, err := os.Create(filepath.Join(tmp, fmt.Sprintf("frame_%05d.png", i)))
		if err == nil {
			err = png.Encode(out, rgbImage(c.Width, c.Height, f))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("video: %s: %w", dir, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return nil
}

// atomicWrite lets write fill a temporary file beside path, then renames
// it to path.
func atomicWrite(path string, write func(tmp string) error) error {
	tmp, err := createTemp(path)
	if err != nil {
		return err
	}
	if err := write(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("video: %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("video: %s: %w", path, err)
	}
	return nil
}

// createTemp makes an empty temporary file beside path (same extension, so
// tools that sniff it behave) and returns its name.
func createTemp(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))+".partial-*"+filepath.Ext(path))
	if err != nil {
		return "", fmt.Errorf("video: %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	// CreateTemp makes the file private (0600); a finished video is an
	// ordinary file for the user's other programs, as os.Create would make it.
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("video: %s: %w", path, err)
	}
	return tmp, nil
}

func rgbImage(w, h int, rgb []byte) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		img.Pix[4*i+0] = rgb[3*i+0]
		img.Pix[4*i+1] = rgb[3*i+1]
		img.Pix[4*i+2] = rgb[3*i+2]
		img.Pix[4*i+3] = 0xff
	}
	return img
}
