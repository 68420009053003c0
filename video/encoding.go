package video

import (
	"fmt"
	"slices"
	"strings"
)

// Encoding chooses how x264 encodes an MP4. The zero value is the default:
// DefaultPreset, DefaultTune, CRF and x264's own thread count.
type Encoding struct {
	// Preset is an x264 preset (ultrafast … veryslow); "" = DefaultPreset.
	Preset string
	// CRF is the constant rate factor, 1 (best) to 51; 0 = CRF (25, the
	// reference's quality).
	CRF int
	// Tune is an x264 tune (film, animation, grain, stillimage,
	// fastdecode, zerolatency), "none" for no tune, "" = DefaultTune.
	Tune string
	// Threads is x264's thread count; 0 lets x264 choose (1.5 per core).
	Threads int
	// Params is extra x264 options in -x264-params form
	// ("rc-lookahead=10:bframes=0"); "" = none.
	Params string
}

// DefaultPreset and DefaultTune are the x264 settings the MP4 writer uses
// unless told otherwise: chosen by measurement (docs/PERF.md, "MP4
// encoding") so the encoder keeps pace with a VAE decoding 81 480p frames in
// 0.5 s and finishes the file within ~0.1 s of the last frame, at a file size
// and quality close to the reference's preset (medium).
const (
	DefaultPreset = "veryfast"
	DefaultTune   = "none"
)

// Presets are x264's presets, fastest first.
var Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"}

// Tunes are x264's tunes, and "none".
var Tunes = []string{"none", "film", "animation", "grain", "stillimage", "fastdecode", "zerolatency", "psnr", "ssim"}

// Validate names the first bad field.
func (e Encoding) Validate() error {
	if e.Preset != "" && !slices.Contains(Presets, e.Preset) {
		return fmt.Errorf("x264 preset %q: choose one of %s", e.Preset, strings.Join(Presets, ", "))
	}
	if e.Tune != "" && !slices.Contains(Tunes, e.Tune) {
		return fmt.Errorf("x264 tune %q: choose one of %s", e.Tune, strings.Join(Tunes, ", "))
	}
	if e.CRF < 0 || e.CRF > 51 {
		return fmt.Errorf("x264 CRF %d: must be 1 (best) to 51 (0 = the default, %d)", e.CRF, CRF)
	}
	if e.Threads < 0 {
		return fmt.Errorf("x264 threads %d: must be 0 (automatic) or more", e.Threads)
	}
	if strings.ContainsAny(e.Params, " \t\n") {
		return fmt.Errorf("x264 params %q: key=value pairs separated by ':' without spaces", e.Params)
	}
	return nil
}

// Resolved fills the defaults in.
func (e Encoding) Resolved() Encoding {
	if e.Preset == "" {
		e.Preset = DefaultPreset
	}
	if e.Tune == "" {
		e.Tune = DefaultTune
	}
	if e.CRF == 0 {
		e.CRF = CRF
	}
	return e
}

// String is a short description, e.g. "veryfast crf 25".
func (e Encoding) String() string {
	e = e.Resolved()
	s := fmt.Sprintf("%s crf %d", e.Preset, e.CRF)
	if e.Tune != "none" {
		s += " tune " + e.Tune
	}
	if e.Threads > 0 {
		s += fmt.Sprintf(" threads %d", e.Threads)
	}
	if e.Params != "" {
		s += " " + e.Params
	}
	return s
}

// x264Args are ffmpeg's output options for e (yuv420p, as the reference's
// imageio writes).
func (e Encoding) x264Args() []string {
	e = e.Resolved()
	args := []string{"-vcodec", "libx264", "-pix_fmt", "yuv420p", "-preset", e.Preset, "-crf", fmt.Sprint(e.CRF)}
	if e.Tune != "none" {
		args = append(args, "-tune", e.Tune)
	}
	if e.Threads > 0 {
		args = append(args, "-threads", fmt.Sprint(e.Threads))
	}
	if e.Params != "" {
		args = append(args, "-x264-params", e.Params)
	}
	return args
}
