package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/video"
)

type benchEncodeFlags struct {
	width, height, frames, crf, chunk int
	patterns, presets, tunes, threads string
	params                            []string
	decodeMS                          float64
}

// `bench encode`: the x264 settings measured on synthetic clips, CPU only.
func init() {
	f := &benchEncodeFlags{}
	cmd := &cobra.Command{
		Use:   "encode",
		Short: "Measure x264 settings for the MP4 writer: encode time, tail after a paced decode, size, PSNR",
		Long: `Encodes synthetic clips (a drifting gradient, a camera pan over a textured
landscape, noise) with every combination of the given presets, tunes, thread
counts and x264 params, and prints for each: the time to encode the clip
alone and ffmpeg's CPU time, the tail (the time from the last frame to the
finished file when the frames arrive in 4-frame chunks at a decoder's pace,
--decode-ms for the whole clip), the file size and the PSNR of the decoded
file against the lossless frames. Needs ffmpeg; no GPU.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBenchEncode(cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.width, "width", 832, "frame width")
	fl.IntVar(&f.height, "height", 480, "frame height")
	fl.IntVar(&f.frames, "frames", 81, "frames")
	fl.IntVar(&f.crf, "crf", 0, "x264 CRF (0: the default, 25)")
	fl.IntVar(&f.chunk, "chunk", 4, "frames the decoder hands over at a time")
	fl.Float64Var(&f.decodeMS, "decode-ms", 500, "how long the simulated decoder takes for the whole clip")
	fl.StringVar(&f.patterns, "patterns", "gradient,pan", "clips: "+strings.Join(video.Patterns, ", "))
	fl.StringVar(&f.presets, "presets", "ultrafast,superfast,veryfast,faster,fast,medium", "x264 presets")
	fl.StringVar(&f.tunes, "tunes", "none,zerolatency", "x264 tunes (none: no tune)")
	fl.StringVar(&f.threads, "threads", "0", "x264 thread counts (0: x264's choice)")
	fl.StringArrayVar(&f.params, "x264-params", []string{""}, "x264 params (repeat the flag for several; empty: none)")
	for _, c := range root.Commands() {
		if c.Name() == "bench" {
			c.AddCommand(cmd)
			return
		}
	}
	root.AddCommand(cmd)
}

func runBenchEncode(out io.Writer, f *benchEncodeFlags) error {
	if _, err := video.FFmpeg(); err != nil {
		return err
	}
	if f.chunk < 1 || f.frames < 1 || f.decodeMS <= 0 {
		return fmt.Errorf("--chunk, --frames and --decode-ms must be positive")
	}
	var threads []int
	for _, s := range strings.Split(f.threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			return fmt.Errorf("--threads %q: want non-negative integers", f.threads)
		}
		threads = append(threads, n)
	}
	var encs []video.Encoding
	for _, p := range strings.Split(f.presets, ",") {
		for _, t := range strings.Split(f.tunes, ",") {
			for _, n := range threads {
				for _, prm := range f.params {
					e := video.Encoding{Preset: strings.TrimSpace(p), Tune: strings.TrimSpace(t), Threads: n, CRF: f.crf, Params: prm}
					if err := e.Validate(); err != nil {
						return err
					}
					encs = append(encs, e)
				}
			}
		}
	}
	dir, err := os.MkdirTemp("", "td-bench-encode-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	chunks := (f.frames + f.chunk - 1) / f.chunk
	interval := time.Duration(f.decodeMS * float64(time.Millisecond) / float64(chunks))
	fmt.Fprintf(out, "bench encode: %dx%d x %d frames, %d cores, decoder pace %.0f ms (%d-frame chunk every %.1f ms)\n",
		f.width, f.height, f.frames, runtime.NumCPU(), f.decodeMS, f.chunk, float64(interval.Microseconds())/1000)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, pat := range strings.Split(f.patterns, ",") {
		c, err := video.Pattern(strings.TrimSpace(pat), f.width, f.height, f.frames)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n%s:\n%-44s %9s %9s %9s %9s %9s %8s\n", pat, "encoding", "alone ms", "fps", "cpu ms", "tail ms", "late ms", "KiB")
		for _, e := range encs {
			st, err := video.MeasureEncode(c, e, dir, f.chunk, interval, 2)
			if err != nil {
				return fmt.Errorf("%s: %w", e, err)
			}
			fmt.Fprintf(out, "%-44s %9.1f %9.1f %9.1f %9.1f %9.1f %8.1f  PSNR %.2f dB\n", e, ms(st.Alone),
				float64(f.frames)/st.Alone.Seconds(), ms(st.CPU), ms(st.Tail), ms(st.Late), float64(st.Bytes)/1024, st.PSNR)
		}
	}
	return nil
}
