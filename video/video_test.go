package video

import (
	"errors"
	"image/gif"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testClip is a smooth moving gradient (codec-friendly, so the lossy MP4
// round trip stays close).
func testClip(w, h, n int) *Clip {
	c := &Clip{Width: w, Height: h, FPS: 16}
	for f := 0; f < n; f++ {
		px := make([]byte, w*h*3)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				px[i] = byte(x*200/w + f*4) // no wrap-around edge: stays codec-friendly
				px[i+1] = byte(y * 255 / h)
				px[i+2] = 128
			}
		}
		c.Frames = append(c.Frames, px)
	}
	return c
}

func TestWriteMP4RoundTrip(t *testing.T) {
	if _, err := FFmpeg(); err != nil {
		t.Skip("skipping MP4 test:", err)
	}
	c := testClip(64, 48, 9)
	path := filepath.Join(t.TempDir(), "out.mp4")
	if _, err := Write(path, c); err != nil {
		t.Fatal(err)
	}
	frames, err := ReadMP4(path, c.Width, c.Height)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(c.Frames) {
		t.Fatalf("decoded %d frames, wrote %d", len(frames), len(c.Frames))
	}
	var sum float64
	for i := range frames {
		for j := range frames[i] {
			sum += math.Abs(float64(frames[i][j]) - float64(c.Frames[i][j]))
		}
	}
	mae := sum / float64(len(frames)*len(frames[0]))
	t.Logf("MP4 round trip: %d frames, mean abs error %.2f (of 255)", len(frames), mae)
	if mae > 4 {
		t.Errorf("mean abs error %.2f too large for CRF %d", mae, CRF)
	}
	assertNoPartial(t, filepath.Dir(path))
}

func TestWriteGIF(t *testing.T) {
	c := testClip(40, 30, 5)
	path := filepath.Join(t.TempDir(), "out.gif")
	if _, err := Write(path, c); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := gif.DecodeAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Image) != 5 || g.Config.Width != 40 || g.Config.Height != 30 {
		t.Fatalf("gif has %d frames of %dx%d, want 5 of 40x30", len(g.Image), g.Config.Width, g.Config.Height)
	}
	assertNoPartial(t, filepath.Dir(path))
}

func TestWritePNGs(t *testing.T) {
	c := testClip(8, 8, 3)
	dir := filepath.Join(t.TempDir(), "frames")
	if _, err := Write(dir, c); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 3 {
		t.Fatalf("want 3 PNG files, got %d (%v)", len(ents), err)
	}
	if _, err := Write(dir, c); err == nil {
		t.Fatal("writing into an existing folder must fail")
	}
}

func TestBadClipsAndNoPartialFiles(t *testing.T) {
	dir := t.TempDir()
	bad := &Clip{Width: 4, Height: 4, FPS: 16, Frames: [][]byte{make([]byte, 10)}}
	for _, name := range []string{"a.mp4", "a.gif"} {
		if _, err := Write(filepath.Join(dir, name), bad); err == nil {
			t.Errorf("%s: bad frame size must fail", name)
		}
	}
	if _, err := Write(filepath.Join(dir, "a.avi"), testClip(4, 4, 1)); err == nil {
		t.Error("unknown extension must fail")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("failed writes left files: %v", ents)
	}
}

func TestMissingFFmpegIsClear(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	path := filepath.Join(t.TempDir(), "x.mp4")
	_, err := Write(path, testClip(4, 4, 1))
	// Clear: the file named, and ErrNoFFmpeg itself, which callers test
	// for to fall back to a GIF (pipeline's output, the server).
	if !errors.Is(err, ErrNoFFmpeg) || !strings.Contains(err.Error(), path) {
		t.Fatalf("without ffmpeg: %v, want ErrNoFFmpeg naming %s", err, path)
	}
	t.Log(err)
	if _, serr := os.Stat(path); serr == nil {
		t.Error("a file was left behind")
	}
}

func assertNoPartial(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if filepath.Ext(e.Name()) != "" && e.Name()[0] == '.' {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}
