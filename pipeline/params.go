package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
)

// This file is the one home of request defaults and validation: the CLI
// (generate, bench e2e) and the server fill a Params from their flags or
// JSON and call Params.Request; a Go caller that builds a Request itself
// gets the same checks from Request.Validate. Errors are *FieldError
// naming the setting by its canonical name (the Field* constants), which
// the CLI shows as its flag and the server as its JSON field.

// Canonical setting names, as FieldError.Field carries them.
const (
	FieldPrompt     = "prompt"
	FieldNegative   = "negative_prompt"
	FieldSampler    = "sampler"
	FieldSteps      = "steps"
	FieldSigmaMax   = "sigma_max"
	FieldShift      = "shift"
	FieldGuidance   = "guidance"
	FieldSize       = "size" // a width×height given directly
	FieldResolution = "resolution"
	FieldAspect     = "aspect"
	FieldFrames     = "frames"
	FieldSeconds    = "seconds"
	FieldFPS        = "fps"
	FieldSeed       = "seed"
	FieldSamples    = "samples"
	FieldAttention  = "attention"
	FieldTopK       = "sla_topk"
	FieldImage      = "image"
	FieldBoundary   = "boundary"
	FieldAdaptive   = "adaptive_resolution"
	FieldOutput     = "output"
	FieldFormat     = "format"
	FieldEncoding   = "encoding" // x264 preset, CRF, … (Request.Encoding)
	FieldLoRA       = "lora"     // Request.LoRA; a FieldError's Value is the file's name
)

// Error codes of a FieldError: machine-readable, stable.
const (
	CodeRequired = "required"     // the setting must be given
	CodeInvalid  = "invalid"      // malformed or not one of the choices
	CodeRange    = "out_of_range" // a number outside what is allowed
	CodeTooLarge = "too_large"    // over a size limit (frames, pixels, prompt)
	CodeConflict = "conflict"     // does not go with another setting
	CodeMemory   = "insufficient_memory"
)

// FieldError is a request setting that is missing, malformed or out of
// range. Field is its canonical name (FieldFrames, ...); Value is the value
// as given ("" when there was none); Msg says what is allowed, without the
// name, so a caller can show the setting under its own name (see Rename).
type FieldError struct {
	Field, Code, Value, Msg string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Msg
	}
	return e.Field + " " + e.Value + ": " + e.Msg
}

func fieldErr(field, code string, value any, format string, args ...any) *FieldError {
	v := ""
	if value != nil {
		v = fmt.Sprint(value)
		if s, ok := value.(string); ok {
			v = fmt.Sprintf("%q", s)
		}
	}
	return &FieldError{Field: field, Code: code, Value: v, Msg: fmt.Sprintf(format, args...)}
}

// Rename returns err with a FieldError's field shown under name(field):
// the CLI passes its flag names, the server its JSON field names. Other
// errors come back unchanged.
func Rename(err error, name func(field string) string) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	out := *fe
	out.Field = name(fe.Field)
	return &out
}

// Defaults of a request; the I2V ones are the reference I2V script's.
const (
	DefaultSteps      = 4
	DefaultUniPCSteps = 50
	DefaultSigmaMax   = 80
	DefaultShift      = 5
	DefaultGuidance   = 5
	DefaultFrames     = 81
	DefaultFPS        = 16
	DefaultResolution = "480p"
	DefaultAspect     = "16:9"
	DefaultTopK       = 0.1
	DefaultFormat     = "mp4"
)

// Limits bound what one request may ask for, so that no request can exhaust
// the machine before a model runs. Zero fields take DefaultLimits' values.
type Limits struct {
	MaxFrames      int // frames per video (4k+1)
	MaxPixels      int // width×height of a frame
	MaxSide        int // largest width or height
	MaxPromptBytes int // prompt and negative prompt, in bytes of UTF-8
	MaxSamples     int // videos per request
	MaxUniPCSteps  int // the 50-step mode's step count
	MaxImagePixels int // input image width×height, checked before decoding
	MaxImageBytes  int // input image file size
}

// DefaultLimits are generous for one GPU: 481 frames (30 s at 16 fps),
// frames up to 1280×1280 (every table size), 16 KiB prompts (umT5 keeps
// 512 tokens; the rest would be cut), 4 samples, 40-megapixel images.
var DefaultLimits = Limits{
	MaxFrames:      481,
	MaxPixels:      1280 * 1280,
	MaxSide:        2048,
	MaxPromptBytes: 16 << 10,
	MaxSamples:     4,
	MaxUniPCSteps:  200,
	MaxImagePixels: 40 << 20,
	MaxImageBytes:  32 << 20,
}

// WithDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxFrames, d.MaxFrames)
	set(&l.MaxPixels, d.MaxPixels)
	set(&l.MaxSide, d.MaxSide)
	set(&l.MaxPromptBytes, d.MaxPromptBytes)
	set(&l.MaxSamples, d.MaxSamples)
	set(&l.MaxUniPCSteps, d.MaxUniPCSteps)
	set(&l.MaxImagePixels, d.MaxImagePixels)
	set(&l.MaxImageBytes, d.MaxImageBytes)
	return l
}

// Params are a request's settings as a person or a client gives them:
// names not yet resolved (resolution, aspect, attention), nil pointers
// meaning "not given, take the default". An explicit zero is checked like
// any other value (steps 0 is an error, not 4).
type Params struct {
	Prompt   string
	Negative string // UniPC negative prompt ("" = Wan's)
	Sampler  string // "rcm" (default) or "unipc"
	Steps    *int
	SigmaMax *float64 // default 80, 200 with an image
	ODE      bool
	Shift    *float64
	Guidance *float64

	// Size is the frame size given directly; zero means Resolution and
	// Aspect from the reference's table (default 480p 16:9, 720p with an
	// image).
	Size       Size
	Resolution string
	Aspect     string

	// Frames, or Seconds × FPS rounded up to the next 4k+1 frames; neither
	// means 81.
	Frames  *int
	Seconds *float64
	FPS     *int

	Seed    *uint64 // nil: the caller's choice (RandomSeed, or 0)
	Samples *int

	// Attention ("dense", "sla", "sagesla") and TopK override the engine's
	// for this request; "" and nil keep the engine's.
	Attention string
	TopK      *float64

	Image              string // input image path: image-to-video
	Boundary           *float64
	AdaptiveResolution bool

	Output string // file Generate writes ("" = none)
	Format string // "", "mp4" or "gif": the container a server writes
}

// Ptr returns a pointer to v, for the optional fields of Params.
func Ptr[T any](v T) *T { return &v }

// Request fills defaults, checks every setting against lim (zero fields:
// DefaultLimits) and returns the request to Generate. The error is a
// *FieldError. A nil Seed becomes 0; callers wanting a random seed set one.
func (p Params) Request(lim Limits) (Request, error) {
	lim = lim.WithDefaults()
	i2v := p.Image != ""
	r := Request{Prompt: p.Prompt, Negative: p.Negative, Sampler: p.Sampler, ODE: p.ODE, Image: p.Image,
		AdaptiveResolution: p.AdaptiveResolution, Output: p.Output, Attention: strings.ToLower(strings.TrimSpace(p.Attention))}
	if r.Sampler == "" {
		r.Sampler = "rcm"
	}
	if err := checkPrompt(FieldPrompt, p.Prompt, true, lim); err != nil {
		return r, err
	}
	if err := checkPrompt(FieldNegative, p.Negative, false, lim); err != nil {
		return r, err
	}
	switch r.Sampler {
	case "rcm":
		r.Steps = deref(p.Steps, DefaultSteps)
		if p.Shift != nil || p.Guidance != nil || p.Negative != "" {
			return r, fieldErr(FieldSampler, CodeConflict, r.Sampler, "shift, guidance and a negative prompt are for the unipc sampler")
		}
	case "unipc":
		r.Steps = deref(p.Steps, DefaultUniPCSteps)
		r.Shift = deref(p.Shift, DefaultShift)
		if !finite(r.Shift) || r.Shift <= 0 {
			return r, fieldErr(FieldShift, CodeRange, r.Shift, "must be positive")
		}
		g := deref(p.Guidance, DefaultGuidance)
		if !finite(g) || g < 0 || g > 100 {
			return r, fieldErr(FieldGuidance, CodeRange, g, "must be in [0, 100]")
		}
		r.Guidance = float32(g)
	}
	def := float64(DefaultSigmaMax)
	if i2v {
		def = DefaultI2VSigmaMax
	}
	r.SigmaMax = deref(p.SigmaMax, def)
	if p.SigmaMax != nil && r.Sampler == "unipc" {
		return r, fieldErr(FieldSigmaMax, CodeConflict, r.SigmaMax, "sigma_max is for the rcm sampler")
	}

	// Frame size.
	if p.Size != (Size{}) {
		if p.Resolution != "" || p.Aspect != "" {
			return r, fieldErr(FieldSize, CodeConflict, sizeString(p.Size), "give a size or a resolution and aspect, not both")
		}
		r.Size = p.Size
	} else {
		res, aspect := p.Resolution, p.Aspect
		if res == "" {
			res = DefaultResolution
			if i2v {
				res = DefaultI2VResolution
			}
		}
		if aspect == "" {
			aspect = DefaultAspect
		}
		s, err := Resolution(res, aspect)
		if err != nil {
			return r, err
		}
		r.Size = s
	}

	// Length.
	r.FPS = deref(p.FPS, DefaultFPS)
	if r.FPS < 1 || r.FPS > 120 {
		return r, fieldErr(FieldFPS, CodeRange, r.FPS, "must be 1 to 120")
	}
	switch {
	case p.Frames != nil && p.Seconds != nil:
		return r, fieldErr(FieldSeconds, CodeConflict, *p.Seconds, "give frames or seconds, not both")
	case p.Frames != nil:
		r.Frames = *p.Frames
	case p.Seconds != nil:
		s := *p.Seconds
		maxS := float64(lim.MaxFrames-1) / float64(r.FPS)
		if !finite(s) || s <= 0 || s > maxS {
			return r, fieldErr(FieldSeconds, CodeRange, s, "must be more than 0 and at most %.4g at %d fps (%d frames)", maxS, r.FPS, lim.MaxFrames)
		}
		// The first 4k+1 frame count at or above seconds × fps.
		n := max(1, int(math.Ceil(s*float64(r.FPS)-1e-9)))
		r.Frames = 4*((n+2)/4) + 1
	default:
		r.Frames = DefaultFrames
	}
	if p.Seed != nil {
		r.Seed = *p.Seed
	}
	r.Samples = deref(p.Samples, 1)

	// Attention override.
	if r.Attention != "" {
		if _, err := ParseAttention(r.Attention); err != nil {
			return r, err
		}
	}
	if p.TopK != nil {
		if r.Attention == "dense" {
			return r, fieldErr(FieldTopK, CodeConflict, *p.TopK, "sla_topk is for sla and sagesla attention, not dense")
		}
		if err := CheckTopK(*p.TopK); err != nil {
			return r, err
		}
		r.TopK = *p.TopK
	}

	// Image-to-video.
	if p.Boundary != nil {
		if !i2v {
			return r, fieldErr(FieldBoundary, CodeConflict, *p.Boundary, "the expert boundary is for image-to-video (give an image)")
		}
		r.Boundary = *p.Boundary
		if r.Boundary == 0 {
			r.Boundary = -1 // an explicit 0 never switches; Request's 0 means the default
		}
	}

	switch f := strings.ToLower(p.Format); f {
	case "", "mp4", "gif":
	default:
		return r, fieldErr(FieldFormat, CodeInvalid, p.Format, "choose mp4 or gif")
	}
	return r, r.ValidateLimits(lim)
}

// ParseAttention resolves a self-attention name: dense (or original), sla
// or sagesla.
func ParseAttention(s string) (backend.AttentionKind, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "dense", "original":
		return backend.Dense, nil
	case "sla":
		return backend.SLA, nil
	case "sagesla":
		return backend.SageSLA, nil
	}
	return 0, fieldErr(FieldAttention, CodeInvalid, s, "choose dense, sla or sagesla")
}

// CheckTopK checks an SLA top-k fraction: in (0, 1].
func CheckTopK(k float64) error {
	if !(k > 0 && k <= 1) {
		return fieldErr(FieldTopK, CodeRange, k, "must be in (0, 1]")
	}
	return nil
}

func checkPrompt(field, s string, required bool, lim Limits) error {
	if required && strings.TrimSpace(s) == "" {
		return fieldErr(field, CodeRequired, nil, "is required")
	}
	if len(s) > lim.MaxPromptBytes {
		return fieldErr(field, CodeTooLarge, nil, "%d bytes; at most %d (umT5 reads the first 512 tokens)", len(s), lim.MaxPromptBytes)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, CodeInvalid, nil, "is not valid UTF-8")
	}
	return nil
}

// checkSize bounds a frame size; LatentShape (in Validate) checks the
// multiples of 16.
func checkSize(s Size, lim Limits) error {
	if s.W <= 0 || s.H <= 0 {
		return fieldErr(FieldSize, CodeInvalid, sizeString(s), "width and height must be positive")
	}
	if s.W > lim.MaxSide || s.H > lim.MaxSide || s.W*s.H > lim.MaxPixels {
		return fieldErr(FieldSize, CodeTooLarge, sizeString(s), "at most %d pixels a side and %d pixels a frame", lim.MaxSide, lim.MaxPixels)
	}
	return nil
}

// ParseSize reads "WIDTHxHEIGHT" (e.g. "832x480").
func ParseSize(s string) (Size, error) {
	var z Size
	w, h, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if ok {
		var err1, err2 error
		z.W, err1 = atoiStrict(w)
		z.H, err2 = atoiStrict(h)
		ok = err1 == nil && err2 == nil
	}
	if !ok {
		return Size{}, fieldErr(FieldSize, CodeInvalid, s, `want WIDTHxHEIGHT, e.g. "832x480"`)
	}
	return z, nil
}

func atoiStrict(s string) (int, error) {
	if s == "" || len(s) > 6 {
		return 0, errors.New("bad number")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("bad number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

func sizeString(s Size) string { return fmt.Sprintf("%dx%d", s.W, s.H) }

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Validate checks a request against DefaultLimits before any model is
// loaded. Errors are *FieldError.
func (r *Request) Validate() error { return r.ValidateLimits(Limits{}) }

// ValidateLimits checks a request against lim (zero fields: DefaultLimits);
// Generate calls it with the engine's Options.Limits.
func (r *Request) ValidateLimits(lim Limits) error {
	lim = lim.WithDefaults()
	if err := checkPrompt(FieldPrompt, r.Prompt, false, lim); err != nil {
		return err
	}
	if err := checkPrompt(FieldNegative, r.Negative, false, lim); err != nil {
		return err
	}
	switch r.Sampler {
	case "", "rcm":
		if r.Steps < 1 || r.Steps > sampler.MaxRCMSteps {
			return fieldErr(FieldSteps, CodeRange, r.Steps, "rCM takes 1 to %d steps", sampler.MaxRCMSteps)
		}
		if !finite(r.SigmaMax) || r.SigmaMax < 0.1 || r.SigmaMax > 1e5 {
			return fieldErr(FieldSigmaMax, CodeRange, r.SigmaMax, "must be in [0.1, 1e5]")
		}
	case "unipc":
		if r.Steps < 2 || r.Steps > lim.MaxUniPCSteps {
			return fieldErr(FieldSteps, CodeRange, r.Steps, "UniPC takes 2 to %d steps (the reference uses 50)", lim.MaxUniPCSteps)
		}
	default:
		return fieldErr(FieldSampler, CodeInvalid, r.Sampler, "choose rcm or unipc")
	}
	if r.Samples < 1 || r.Samples > lim.MaxSamples {
		return fieldErr(FieldSamples, CodeRange, r.Samples, "must be 1 to %d", lim.MaxSamples)
	}
	if r.FPS < 0 || r.FPS > 120 {
		return fieldErr(FieldFPS, CodeRange, r.FPS, "must be 1 to 120 (0: 16)")
	}
	if r.Frames > lim.MaxFrames {
		return fieldErr(FieldFrames, CodeTooLarge, r.Frames, "at most %d frames", lim.MaxFrames)
	}
	if err := checkSize(r.Size, lim); err != nil {
		return err
	}
	if r.Attention != "" {
		if _, err := ParseAttention(r.Attention); err != nil {
			return err
		}
	}
	if r.TopK != 0 {
		if err := CheckTopK(r.TopK); err != nil {
			return err
		}
	}
	if err := r.validateI2V(); err != nil {
		return err
	}
	if r.Output != "" {
		if err := checkOutput(r.Output); err != nil {
			return err
		}
	}
	if err := r.Encoding.Validate(); err != nil {
		return fieldErr(FieldEncoding, CodeInvalid, nil, "%v", err)
	}
	if _, err := LatentShape(r.Frames, r.Size); err != nil {
		return err
	}
	return nil
}
