package memplan

import (
	"fmt"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Run is one generation as the pipeline runs it.
type Run struct {
	// DiT is the text-to-video DiT, or one image-to-video expert (both
	// experts of a release have the same layout).
	DiT wan.FileInfo
	// Opt are the DiT's load options (dtype, attention, exact rounding).
	Opt wan.Options
	// KeepExperts keeps both image-to-video experts loaded.
	KeepExperts bool
	// Width, Height, Frames are the video's.
	Width, Height, Frames int
	// Texts is the number of text contexts embedded at once: 1, or 2 for
	// UniPC's classifier-free guidance.
	Texts int
	// Samples is the number of videos made from one prompt (0 counts as
	// 1): their latents and decoded frames are all kept on the host, and
	// several are tiled into one clip (a second copy).
	Samples int
	// TextEncoder: the umT5 encoder loads (the prompt is not cached and the
	// encoder not already loaded).
	TextEncoder bool
	// KeepTextEncoder keeps umT5 loaded after encoding.
	KeepTextEncoder bool
	// Warm: the DiT and the VAE stay loaded from earlier requests (a
	// server), so the text encoder loads beside them.
	Warm bool
	// LoRA: LoRAs are merged at load (host buffers only).
	LoRA bool
	// ReleaseDiT: the DiT is freed before the VAE decode (generate).
	ReleaseDiT bool
	// VAETile decodes in spatial tiles of this many latent pixels (0:
	// untiled).
	VAETile int
	// VAE and TextEncoder are the models' configurations (zero: the Wan2.1
	// VAE and umT5-XXL that Wan uses).
	VAE     wanvae.Config
	Encoder umt5.Config
}

// i2v reports whether the run is image-to-video.
func (r Run) i2v() bool { return r.DiT.Config.Type == wan.I2V }

// Estimate is a run's peak memory.
type Estimate struct {
	Stages []Stage // each stage's peak, in run order
	Peak   Stage   // the largest
	// Host is the peak host memory of the process beyond the memory-mapped
	// checkpoints (which the page cache holds and may drop), approximate.
	Host      int64
	HostParts []Part
}

// GPU is the peak device memory.
func (e Estimate) GPU() int64 { return e.Peak.Bytes() }

// Plan estimates a run.
func Plan(r Run) (Estimate, error) {
	c := r.DiT.Config
	opt := r.Opt
	if opt.DType == tensor.Invalid {
		opt.DType = tensor.BF16
	}
	if r.Texts < 1 {
		r.Texts = 1
	}
	weights, err := DiTWeights(r.DiT, opt)
	if err != nil {
		return Estimate{}, err
	}
	ditName := "DiT weights"
	if r.i2v() && r.KeepExperts {
		weights *= 2
		ditName = "DiT weights (both experts)"
	}
	L := Tokens(r.Width, r.Height, r.Frames)
	fw := DiTForward(c, opt, r.DiT.Quantized, L)
	texts := int64(r.Texts) * DiTText(c, opt.DType)
	if r.i2v() && r.KeepExperts {
		texts *= 2 // each resident expert embeds the prompt
	}
	vae, enc := VAEWeights(r.VAE), TextEncoderWeights(r.Encoder)

	var est Estimate
	add := func(name string, parts ...Part) {
		var kept []Part
		for _, p := range parts {
			if p.Bytes > 0 {
				kept = append(kept, p)
			}
		}
		est.Stages = append(est.Stages, Stage{Name: name, Parts: kept})
	}
	resident := func(on bool, p Part) Part {
		if !on {
			return Part{}
		}
		return p
	}
	keptEnc := resident(r.KeepTextEncoder, Part{"text encoder (kept)", enc})
	if r.TextEncoder {
		add("text encoder",
			resident(r.Warm, Part{ditName, weights}),
			resident(r.Warm, Part{"VAE weights", vae}),
			resident(r.Warm, Part{"VAE repacked weights", VAERepacked(r.VAE)}),
			Part{"umT5 weights", enc},
			Part{"encode", TextEncode(r.Encoder)},
			Part{"cuBLASLt workspace", CublasWorkspace})
	}
	if r.i2v() {
		add("VAE encode",
			resident(r.Warm, Part{ditName, weights}),
			keptEnc,
			Part{"VAE weights", vae},
			resident(r.Warm, Part{"VAE repacked weights", VAERepacked(r.VAE)}),
			Part{fmt.Sprintf("encode %dx%d", r.Width, r.Height), VAEEncode(r.VAE, r.Width, r.Height)},
			Part{"cuBLASLt workspace", CublasWorkspace})
	}
	add("DiT forward",
		Part{ditName, weights},
		keptEnc,
		resident(r.i2v() || r.Warm, Part{"VAE weights", vae}),
		resident(r.Warm, Part{"VAE repacked weights", VAERepacked(r.VAE)}),
		Part{"text contexts", texts},
		Part{"RoPE table", fw.RoPE},
		Part{fmt.Sprintf("activations (%d tokens, peak in the %s)", L, fw.Where), fw.Activations},
		Part{"cuBLASLt workspace", CublasWorkspace})
	// Image-to-video frees its text contexts before the decode and, with
	// one expert resident, holds one expert's weights.
	decodeDiT := Part{ditName, weights}
	decodeTexts := Part{"text contexts", texts}
	rope := Part{"RoPE table", fw.RoPE}
	if r.i2v() {
		decodeTexts = Part{}
	}
	if r.ReleaseDiT {
		decodeDiT, decodeTexts, rope = Part{}, Part{}, Part{}
	}
	add("VAE decode",
		decodeDiT,
		keptEnc,
		decodeTexts,
		rope,
		Part{"VAE weights", vae},
		decodePart(r),
		Part{"cuBLASLt workspace", CublasWorkspace})
	for _, s := range est.Stages {
		if s.Bytes() > est.Peak.Bytes() {
			est.Peak = s
		}
	}
	est.Host, est.HostParts = hostPlan(r, L)
	return est, nil
}

// decodePart is the VAE decode's activations: the whole frame, or with
// tiling one tile with its halo (13 latent pixels a side for the Wan2.1
// VAE) over all frames. The tiled figure scales the untiled per-pixel cost
// to the tile and is not measured.
func decodePart(r Run) Part {
	if r.VAETile <= 0 {
		return Part{fmt.Sprintf("decode %dx%d", r.Width, r.Height), VAEDecode(r.VAE, r.Width, r.Height)}
	}
	const halo = 13
	side := 8 * (r.VAETile + 2*halo)
	w, h := min(r.Width, side), min(r.Height, side)
	return Part{fmt.Sprintf("decode in %dx%d tiles", w, h), VAEDecode(r.VAE, w, h)}
}

// hostPlan is the host side: the largest weight converted to float32 while
// it is uploaded (three more of its size while a LoRA merges into it), the
// text encoder's host tables, latents and the decoded video.
func hostPlan(r Run, L int) (int64, []Part) {
	c := r.DiT.Config
	var parts []Part
	largest := int64(max(c.FFNDim, 6*c.Dim)) * int64(c.Dim) * 4
	parts = append(parts, Part{"weight conversion while loading", largest})
	if r.LoRA {
		parts = append(parts, Part{"LoRA merge buffers", 3 * largest})
	}
	if r.TextEncoder || r.KeepTextEncoder {
		parts = append(parts, Part{"umT5 token embedding", TextEncoderHost(r.Encoder)})
	}
	samples := int64(max(r.Samples, 1))
	lat := int64(16*(1+(r.Frames-1)/4)*(r.Height/8)*(r.Width/8)) * 4
	parts = append(parts, Part{"latents and step buffers", (5+samples)*lat + int64(L)*int64(4*c.InDim)*4})
	video := samples * int64(r.Frames*r.Width*r.Height*3)
	if samples > 1 {
		video *= 2 // the samples' frames and the tiled clip
	}
	parts = append(parts, Part{"decoded video", video + 4*int64(4*3*r.Width*r.Height)*2})
	if r.i2v() {
		parts = append(parts, Part{"condition video (float32)", int64(3*r.Frames*r.Width*r.Height) * 4})
	}
	if r.VAETile > 0 {
		parts = append(parts, Part{"tiled decode's float64 video", int64(3*r.Frames*r.Width*r.Height) * 8})
	}
	if r.Opt.Offload {
		full, err1 := DiTWeights(r.DiT, withOffload(r.Opt, false))
		dev, err2 := DiTWeights(r.DiT, r.Opt)
		if err1 == nil && err2 == nil {
			n := int64(1)
			if r.i2v() && r.KeepExperts {
				n = 2
			}
			parts = append(parts, Part{"streamed DiT weights (pinned)", n * (full - dev)})
		}
	}
	parts = append(parts, Part{"pinned staging", 2 * 16 << 20})
	var n int64
	for _, p := range parts {
		n += p.Bytes
	}
	return n, parts
}

func withOffload(o wan.Options, on bool) wan.Options {
	o.Offload = on
	return o
}

// Headroom is kept free on the device beyond the estimate: the CUDA
// modules and cuBLASLt state loaded after the check, and the estimate's
// error.
func Headroom(total int64) int64 { return max(512<<20, total/50) }

// Option is a change to a run that a user can make with a flag.
type Option struct {
	Flag string // e.g. "--resolution 480p"
	Run  Run
}

// Fit reports whether e fits in avail bytes of device memory (what the
// process can still use, with its own cached blocks) with Headroom(total).
func Fit(e Estimate, avail, total int64) bool { return e.GPU()+Headroom(total) <= avail }

// Advice explains a run that does not fit and lists the options (tried in
// turn, then combined) whose estimate fits.
func Advice(r Run, e Estimate, avail, total int64, options []Option) string {
	var b strings.Builder
	fmt.Fprintf(&b, "this run needs about %s of GPU memory at its peak, the %s; the GPU has %s available",
		FormatGiB(e.GPU()), e.Peak, FormatGiB(avail))
	var fits []string
	for _, o := range options {
		oe, err := Plan(o.Run)
		if err != nil {
			continue
		}
		if Fit(oe, avail, total) {
			fits = append(fits, fmt.Sprintf("%s (about %s)", o.Flag, FormatGiB(oe.GPU())))
		}
	}
	if len(fits) > 0 {
		fmt.Fprintf(&b, ". These would fit: %s", strings.Join(fits, "; "))
	} else {
		b.WriteString(". None of a -quant checkpoint, a smaller resolution or fewer frames alone fits")
	}
	if e.Peak.Name == "text encoder" {
		fmt.Fprintf(&b, " (the umT5 text encoder alone needs %s; a prompt already in the prompt cache never loads it)", FormatGiB(TextEncoderWeights(r.Encoder)))
	}
	return b.String()
}

// Options lists the changes worth suggesting for r: an int8-quantised
// checkpoint, smaller resolutions (the reference's table, same aspect),
// dense attention (the SLA linear branch holds the most at high
// resolutions), fewer frames, and the text encoder not kept. quantFile is
// the -quant file's name for the message ("" when r is quantised already).
func Options(r Run, quantFile string) []Option {
	var out []Option
	add := func(flag string, m func(*Run)) {
		x := r
		m(&x)
		out = append(out, Option{Flag: flag, Run: x})
	}
	if !r.DiT.Quantized && r.Opt.DType != tensor.F32 {
		flag := "a -quant checkpoint"
		if quantFile != "" {
			flag = quantFile
		}
		add(flag, func(x *Run) { x.DiT.Quantized = true })
	}
	for _, s := range []struct {
		name string
		h    int
	}{{"480p", 480}} {
		if r.Height > s.h && r.Width > s.h {
			w := r.Width * s.h / r.Height / 16 * 16
			add("--resolution "+s.name, func(x *Run) { x.Width, x.Height = w, s.h })
			if !r.DiT.Quantized && r.Opt.DType != tensor.F32 {
				add("--resolution "+s.name+" with a -quant checkpoint", func(x *Run) { x.Width, x.Height, x.DiT.Quantized = w, s.h, true })
			}
		}
	}
	if !r.Opt.Offload {
		add("--offload", func(x *Run) { x.Opt.Offload = true })
		if !r.DiT.Quantized && r.Opt.DType != tensor.F32 {
			add("--offload with a -quant checkpoint", func(x *Run) { x.Opt.Offload, x.DiT.Quantized = true, true })
		}
	}
	if r.VAETile == 0 {
		add("--vae-tile 32", func(x *Run) { x.VAETile = 32 })
	}
	if r.Opt.Attention != backend.Dense {
		add("--attention dense (slower)", func(x *Run) { x.Opt.Attention = backend.Dense })
	}
	if r.Frames > 41 {
		add("--frames 41", func(x *Run) { x.Frames = 41 })
	}
	if r.KeepTextEncoder {
		add("without --keep-text-encoder", func(x *Run) { x.KeepTextEncoder = false })
	}
	if r.i2v() && r.KeepExperts {
		add("one expert resident at a time", func(x *Run) { x.KeepExperts = false })
	}
	return out
}

// HostAvailable is the host memory the kernel says is available for new
// allocations without swapping (MemAvailable of /proc/meminfo; on Windows
// GlobalMemoryStatusEx's available physical memory); ok is false where
// that is not known.
func HostAvailable() (n int64, ok bool) { return meminfo("MemAvailable:") }

// HostTotal is the machine's total memory (MemTotal of /proc/meminfo; on
// Windows GlobalMemoryStatusEx's total physical memory); ok is false where
// that is not known.
func HostTotal() (n int64, ok bool) { return meminfo("MemTotal:") }
