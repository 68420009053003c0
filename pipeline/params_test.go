package pipeline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParamsDefaults(t *testing.T) {
	r, err := Params{Prompt: "a fox"}.Request(Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sampler != "rcm" || r.Steps != 4 || r.SigmaMax != 80 || r.Size != (Size{832, 480}) || r.Frames != 81 || r.FPS != 16 || r.Samples != 1 || r.Attention != "" || r.TopK != 0 {
		t.Fatalf("T2V defaults: %+v", r)
	}
	r, err = Params{Prompt: "a fox", Image: "in.png"}.Request(Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.SigmaMax != 200 || r.Size != (Size{1280, 720}) {
		t.Fatalf("I2V defaults: %+v", r)
	}
	r, err = Params{Prompt: "a fox", Sampler: "unipc"}.Request(Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Steps != 50 || r.Shift != 5 || r.Guidance != 5 {
		t.Fatalf("UniPC defaults: %+v", r)
	}
	r, err = Params{Prompt: "a fox", Size: Size{W: 640, H: 384}, Seconds: Ptr(5.0), Attention: "SageSLA", TopK: Ptr(0.2), Seed: Ptr[uint64](9)}.Request(Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != (Size{640, 384}) || r.Frames != 81 || r.Attention != "sagesla" || r.TopK != 0.2 || r.Seed != 9 {
		t.Fatalf("explicit settings: %+v", r)
	}
}

// seconds × fps becomes the first 4k+1 frame count at or above it.
func TestParamsSecondsToFrames(t *testing.T) {
	for _, c := range []struct {
		s    float64
		fps  int
		want int
	}{{5, 16, 81}, {1, 16, 17}, {0.01, 16, 1}, {2, 24, 49}, {5.07, 16, 85}} {
		r, err := Params{Prompt: "x", Seconds: &c.s, FPS: &c.fps}.Request(Limits{})
		if err != nil || r.Frames != c.want || r.FPS != c.fps {
			t.Errorf("%gs at %d fps: %d frames (%v), want %d", c.s, c.fps, r.Frames, err, c.want)
		}
	}
}

// Every bad setting is refused with the field it concerns and a code.
func TestParamsFieldErrors(t *testing.T) {
	long := strings.Repeat("a", DefaultLimits.MaxPromptBytes+1)
	for _, c := range []struct {
		name        string
		p           Params
		field, code string
	}{
		{"no prompt", Params{}, FieldPrompt, CodeRequired},
		{"blank prompt", Params{Prompt: " \n"}, FieldPrompt, CodeRequired},
		{"long prompt", Params{Prompt: long}, FieldPrompt, CodeTooLarge},
		{"bad UTF-8", Params{Prompt: "\xff"}, FieldPrompt, CodeInvalid},
		{"steps 0 (not silently 4)", Params{Prompt: "x", Steps: Ptr(0)}, FieldSteps, CodeRange},
		{"steps 5", Params{Prompt: "x", Steps: Ptr(5)}, FieldSteps, CodeRange},
		{"unipc 1 step", Params{Prompt: "x", Sampler: "unipc", Steps: Ptr(1)}, FieldSteps, CodeRange},
		{"unipc 10000 steps", Params{Prompt: "x", Sampler: "unipc", Steps: Ptr(10000)}, FieldSteps, CodeRange},
		{"sampler", Params{Prompt: "x", Sampler: "ddim"}, FieldSampler, CodeInvalid},
		{"guidance with rcm", Params{Prompt: "x", Guidance: Ptr(3.0)}, FieldSampler, CodeConflict},
		{"sigma 0", Params{Prompt: "x", SigmaMax: Ptr(0.0)}, FieldSigmaMax, CodeRange},
		{"sigma NaN", Params{Prompt: "x", SigmaMax: Ptr(math.NaN())}, FieldSigmaMax, CodeRange},
		{"sigma Inf", Params{Prompt: "x", SigmaMax: Ptr(math.Inf(1))}, FieldSigmaMax, CodeRange},
		{"frames 80", Params{Prompt: "x", Frames: Ptr(80)}, FieldFrames, CodeInvalid},
		{"frames 0", Params{Prompt: "x", Frames: Ptr(0)}, FieldFrames, CodeInvalid},
		{"frames -3", Params{Prompt: "x", Frames: Ptr(-3)}, FieldFrames, CodeInvalid},
		{"frames 1000000001", Params{Prompt: "x", Frames: Ptr(1000000001)}, FieldFrames, CodeTooLarge},
		{"seconds and frames", Params{Prompt: "x", Frames: Ptr(81), Seconds: Ptr(5.0)}, FieldSeconds, CodeConflict},
		{"seconds 0", Params{Prompt: "x", Seconds: Ptr(0.0)}, FieldSeconds, CodeRange},
		{"seconds 1e9", Params{Prompt: "x", Seconds: Ptr(1e9)}, FieldSeconds, CodeRange},
		{"fps 0", Params{Prompt: "x", FPS: Ptr(0)}, FieldFPS, CodeRange},
		{"resolution", Params{Prompt: "x", Resolution: "4k"}, FieldResolution, CodeInvalid},
		{"aspect", Params{Prompt: "x", Aspect: "2:1"}, FieldAspect, CodeInvalid},
		{"size not /16", Params{Prompt: "x", Size: Size{830, 480}}, FieldSize, CodeInvalid},
		{"size too large", Params{Prompt: "x", Size: Size{4096, 4096}}, FieldSize, CodeTooLarge},
		{"size and resolution", Params{Prompt: "x", Size: Size{832, 480}, Resolution: "480p"}, FieldSize, CodeConflict},
		{"samples 0", Params{Prompt: "x", Samples: Ptr(0)}, FieldSamples, CodeRange},
		{"samples 100", Params{Prompt: "x", Samples: Ptr(100)}, FieldSamples, CodeRange},
		{"attention", Params{Prompt: "x", Attention: "flash"}, FieldAttention, CodeInvalid},
		{"top-k 0", Params{Prompt: "x", TopK: Ptr(0.0)}, FieldTopK, CodeRange},
		{"top-k 1.5", Params{Prompt: "x", TopK: Ptr(1.5)}, FieldTopK, CodeRange},
		{"top-k with dense", Params{Prompt: "x", Attention: "dense", TopK: Ptr(0.2)}, FieldTopK, CodeConflict},
		{"boundary without image", Params{Prompt: "x", Boundary: Ptr(0.5)}, FieldBoundary, CodeConflict},
		{"adaptive without image", Params{Prompt: "x", AdaptiveResolution: true}, FieldAdaptive, CodeConflict},
		{"format", Params{Prompt: "x", Format: "avi"}, FieldFormat, CodeInvalid},
		{"output", Params{Prompt: "x", Output: "out.avi"}, FieldOutput, CodeInvalid},
	} {
		_, err := c.p.Request(Limits{})
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want a FieldError", c.name, err)
			continue
		}
		if fe.Field != c.field || fe.Code != c.code {
			t.Errorf("%s: field %q code %q (%v), want %q %q", c.name, fe.Field, fe.Code, err, c.field, c.code)
		}
	}
	// A caller's own limit.
	if _, err := (Params{Prompt: "x", Frames: Ptr(81)}).Request(Limits{MaxFrames: 33}); err == nil {
		t.Error("frames over a caller's limit accepted")
	}
}

// A Go caller that builds a Request itself gets the same bounds from
// Validate (and so from Generate): the frames=1000000001 request that once
// exhausted host memory in the sampler is refused up front.
func TestValidateBoundsRequests(t *testing.T) {
	r := Request{Prompt: "x", Steps: 1, SigmaMax: 80, Size: Size{640, 640}, Frames: 1000000001, Samples: 1}
	var fe *FieldError
	if err := r.Validate(); !errors.As(err, &fe) || fe.Field != FieldFrames || fe.Code != CodeTooLarge {
		t.Fatalf("Validate: %v", err)
	}
	r.Frames, r.Size = 81, Size{16 << 10, 16 << 10}
	if err := r.Validate(); !errors.As(err, &fe) || fe.Field != FieldSize {
		t.Fatalf("Validate huge size: %v", err)
	}
}

func TestRenameField(t *testing.T) {
	_, err := Params{Prompt: "x", Frames: Ptr(80)}.Request(Limits{})
	err = Rename(err, func(f string) string { return "--" + f })
	if err.Error() != "--frames 80: must be 4k+1 (1, 5, ..., 77, 81)" {
		t.Fatalf("renamed: %q", err)
	}
	plain := errors.New("plain")
	if Rename(plain, strings.ToUpper) != plain {
		t.Fatal("a plain error changed")
	}
}

func TestParseSize(t *testing.T) {
	if s, err := ParseSize("832x480"); err != nil || s != (Size{832, 480}) {
		t.Fatalf("832x480: %v %v", s, err)
	}
	for _, bad := range []string{"", "832", "x480", "832x", "-832x480", "832x480x2", "9999999x1", "a x b"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// bombPNG is a valid 1×1 PNG whose header claims w×h pixels.
func bombPNG(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	p := b.Bytes()
	// IHDR data starts at 16 (8 signature + 4 length + 4 type); its CRC
	// covers type and data (17 bytes) and follows at 29.
	binary.BigEndian.PutUint32(p[16:], w)
	binary.BigEndian.PutUint32(p[20:], h)
	binary.BigEndian.PutUint32(p[29:], crc32.ChecksumIEEE(p[12:29]))
	return p
}

// A small file whose header promises a huge image is refused from the
// header, before any pixel buffer is allocated.
func TestDecompressionBombRefused(t *testing.T) {
	bomb := bombPNG(t, 60000, 60000)
	info, err := CheckImage(bytes.NewReader(bomb), Limits{})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != FieldImage || fe.Code != CodeTooLarge {
		t.Fatalf("CheckImage: %+v %v", info, err)
	}
	t0 := time.Now()
	if _, err := DecodeImage(bytes.NewReader(bomb)); !errors.As(err, &fe) || fe.Code != CodeTooLarge {
		t.Fatalf("DecodeImage: %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("refusing the bomb took %v", d)
	}
	if info, err := CheckImage(bytes.NewReader(bombPNG(t, 1, 1)), Limits{}); err != nil || info != (ImageInfo{"png", 1, 1}) {
		t.Fatalf("a 1×1 PNG: %+v %v", info, err)
	}
	if _, err := CheckImage(strings.NewReader("GIF89a....."), Limits{}); !errors.As(err, &fe) || fe.Code != CodeInvalid {
		t.Fatalf("GIF: %v", err)
	}
}
