package pipeline

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// decodeRig is an engine with the golden tiny VAE and random latents of
// 3 latent frames (9 video frames of 128x64), for the decode stage alone.
type decodeRig struct {
	eng     *Engine
	lat     [4]int
	latents [][]float32
	events  []Event
}

func newDecodeRig(t *testing.T, samples int) *decodeRig {
	t.Helper()
	be := cpu.New()
	eng, err := New(be, be, Options{Files: Files{VAE: golden.Path(t, "vae.safetensors")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	r := &decodeRig{eng: eng, lat: [4]int{16, 3, 8, 16}}
	eng.Progress = func(ev Event) { r.events = append(r.events, ev) }
	for s := 0; s < samples; s++ {
		x := make([]float32, 16*3*8*16)
		if err := sampler.NewGaussian(uint64(s + 1)).Normal(x); err != nil {
			t.Fatal(err)
		}
		r.latents = append(r.latents, x)
	}
	return r
}

// decode runs decodeLatents as Generate would, writing to output ("" for none).
func (r *decodeRig) decode(ctx context.Context, output string) (*Result, error) {
	res := &Result{Latents: r.latents}
	r.eng.call = call{ctx: ctx, output: output}
	defer func() { r.eng.call = call{} }()
	err := r.eng.decodeLatents(res, r.lat, 16, func(name string, f func() error) error { return timedStage(ctx, res, name, f) })
	return res, err
}

func stages(res *Result) string {
	var s []string
	for _, tm := range res.Timings {
		s = append(s, tm.Stage)
	}
	return strings.Join(s, ",")
}

func psnr(a, b [][]byte) float64 {
	var se float64
	for i := range a {
		for j := range a[i] {
			d := float64(a[i][j]) - float64(b[i][j])
			se += d * d
		}
	}
	return 10 * math.Log10(255*255/(se/float64(len(a)*len(a[0]))))
}

func noFiles(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left in %s: %v", dir, names)
	}
}

// One sample to .mp4: the frames are encoded during the decode, the clip is
// the same as without an output, and the file holds those frames in order.
func TestStreamedMP4(t *testing.T) {
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("skipping:", err)
	}
	r := newDecodeRig(t, 1)
	plain, err := r.decode(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if stages(plain) != "load VAE,decode" || plain.Output != nil {
		t.Fatalf("no output: stages %q, output %+v; want load VAE,decode and none", stages(plain), plain.Output)
	}
	path := filepath.Join(t.TempDir(), "clip.mp4")
	r.events = nil
	res, err := r.decode(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if stages(res) != "load VAE,decode+encode" {
		t.Errorf("stages %q, want load VAE,decode+encode", stages(res))
	}
	o := res.Output
	if o == nil || !o.Streamed || o.Path != path || o.Note != "" {
		t.Fatalf("output %+v, want streamed to %s", o, path)
	}
	total := res.Timings[1].Duration
	t.Logf("decode+encode %v, encoder busy %v, after the decode %v", total, o.EncodeBusy, o.EncodeTail)
	if o.EncodeBusy <= 0 || o.EncodeTail <= 0 || o.EncodeTail > total || o.EncodeBusy > total {
		t.Errorf("encoder times busy %v, tail %v must be positive and within the stage's %v", o.EncodeBusy, o.EncodeTail, total)
	}
	if n := len(res.Clip.Frames); n != 9 || len(plain.Clip.Frames) != 9 {
		t.Fatalf("clips have %d and %d frames, want 9", n, len(plain.Clip.Frames))
	}
	for i := range plain.Clip.Frames {
		if string(plain.Clip.Frames[i]) != string(res.Clip.Frames[i]) {
			t.Fatalf("frame %d differs between the streamed and the plain decode", i)
		}
	}
	got, err := video.ReadMP4(path, 128, 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Fatalf("MP4 holds %d frames, want 9", len(got))
	}
	reversed := make([][]byte, 9)
	for i := range reversed {
		reversed[i] = res.Clip.Frames[8-i]
	}
	good, bad := psnr(got, res.Clip.Frames), psnr(got, reversed)
	t.Logf("MP4 vs decoded frames: PSNR %.1f dB (reversed %.1f dB)", good, bad)
	if good < 18 || good < bad+3 {
		t.Errorf("MP4 frames do not match the decoded frames: PSNR %.1f dB, reversed %.1f dB", good, bad)
	}
	var sawWrite bool
	for _, ev := range r.events {
		sawWrite = sawWrite || ev.Stage == "write"
	}
	if !sawWrite {
		t.Error("no write event while finishing the file")
	}
	assertOnly(t, filepath.Dir(path), "clip.mp4")
}

// Several samples are tiled after every sample is decoded, then written.
func TestTiledOutputWrittenAfterDecode(t *testing.T) {
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("skipping:", err)
	}
	r := newDecodeRig(t, 2)
	path := filepath.Join(t.TempDir(), "two.mp4")
	res, err := r.decode(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if stages(res) != "load VAE,decode,write" || res.Output == nil || res.Output.Streamed || res.Output.Path != path {
		t.Fatalf("stages %q, output %+v; want a write stage after the decode", stages(res), res.Output)
	}
	got, err := video.ReadMP4(path, 256, 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 || res.Clip.Width != 256 {
		t.Fatalf("MP4 holds %d frames, clip width %d; want 9 of 256", len(got), res.Clip.Width)
	}
}

// Without ffmpeg an .mp4 output becomes a GIF beside it, written after the
// decode, and the output says so.
func TestOutputGIFFallback(t *testing.T) {
	r := newDecodeRig(t, 1)
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir()
	res, err := r.decode(context.Background(), filepath.Join(dir, "clip.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	o := res.Output
	if stages(res) != "load VAE,decode,write" || o == nil || o.Streamed || o.Path != filepath.Join(dir, "clip.gif") || !strings.Contains(o.Note, "GIF") {
		t.Fatalf("stages %q, output %+v; want a GIF written after the decode, with a note", stages(res), o)
	}
	assertOnly(t, dir, "clip.gif")
}

// ffmpeg failing mid-stream fails the decode with ffmpeg's message and
// leaves no file.
func TestStreamedMP4FFmpegFails(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh for the fake ffmpeg")
	}
	r := newDecodeRig(t, 1)
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "ffmpeg"), []byte("#!/bin/sh\necho 'fake ffmpeg: disk full' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	dir := t.TempDir()
	_, err := r.decode(context.Background(), filepath.Join(dir, "clip.mp4"))
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "fake ffmpeg: disk full") {
		t.Fatalf("error %v, want ffmpeg's message", err)
	}
	noFiles(t, dir)
}

// Cancelling during the decode stops it, kills the encoder and leaves no
// file.
func TestStreamedMP4Cancel(t *testing.T) {
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("skipping:", err)
	}
	r := newDecodeRig(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	decodes := 0
	r.eng.Progress = func(ev Event) {
		if ev.Stage == "decode" {
			if decodes++; decodes == 2 {
				cancel()
			}
		}
	}
	dir := t.TempDir()
	_, err := r.decode(ctx, filepath.Join(dir, "clip.mp4"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if decodes != 2 {
		t.Errorf("%d chunks decoded after cancelling at the second", decodes)
	}
	noFiles(t, dir)
}

func TestOutputFormatCheckedFirst(t *testing.T) {
	req := Request{Prompt: "x", Steps: 2, SigmaMax: 80, Size: Size{256, 128}, Frames: 5, Samples: 1, Output: "clip.avi"}
	if err := req.Validate(); err == nil || !strings.Contains(err.Error(), `unknown format ".avi"`) {
		t.Fatalf("Validate: %v, want an unknown-format error", err)
	}
	for _, ok := range []string{"clip.mp4", "clip.GIF", "frames/"} {
		req.Output = ok
		if err := req.Validate(); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	// A file in a folder that does not exist fails before any model runs.
	req.Output = filepath.Join(t.TempDir(), "no-such-dir", "clip.mp4")
	if err := req.Validate(); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Validate(%s): %v, want a missing-folder error", req.Output, err)
	}
}

func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != name {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v, want only %s", dir, names, name)
	}
}

// stalledFFmpeg puts an ffmpeg on PATH that never reads its input (a hung
// encoder, or one stuck on a slow disk).
func stalledFFmpeg(t *testing.T) {
	t.Helper()
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
}

// Aborting the encoder (a cancelled or failed decode) returns promptly even
// while ffmpeg is not reading: it is killed, not waited for, queued frames
// are dropped, and no file is left.
func TestEncoderAbortStalledFFmpeg(t *testing.T) {
	stalledFFmpeg(t)
	dir := t.TempDir()
	enc := startEncoder(filepath.Join(dir, "clip.mp4"), 16, video.Encoding{})
	const w, h = 1024, 1024 // 3 MB frames: more than a pipe holds
	frames := [][]uint8{make([]uint8, w*h*3), make([]uint8, w*h*3)}
	for i := 0; i < 2; i++ {
		if err := enc.send(frames, w, h); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the encoder start ffmpeg and block on the pipe
	done := make(chan struct{})
	t0 := time.Now()
	go func() {
		enc.abort()
		close(done)
	}()
	select {
	case <-done:
		t.Logf("abort returned after %v", time.Since(t0))
	case <-time.After(10 * time.Second):
		t.Fatal("abort still waiting for a stalled ffmpeg after 10 s")
	}
	noFiles(t, dir)
}
