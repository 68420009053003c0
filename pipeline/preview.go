package pipeline

import (
	"fmt"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/internal/parallel"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
)

// Preview is a look at a sample while it is being generated: after every
// sampling step, a few small RGB frames of the sampler's current estimate
// of the clean video (x0 = x − t·v).
type Preview struct {
	Step, Steps int // Step steps of Steps are done (1 … Steps)
	Sample      int // which sample of the request (0-based)
	// Width×Height is the frames' size: the latent's (1/8 of the video's)
	// for the linear preview, a tiny decoder's own otherwise.
	Width, Height int
	// Frames are packed RGB (Width·Height·3 bytes each), FrameIndex the
	// video frame each shows.
	Frames     [][]byte
	FrameIndex []int
	// Took is the time the preview cost the sampling loop (estimate and
	// decode, not the callback).
	Took time.Duration
}

// PreviewDecoder turns the sampler's estimate of the clean latent into
// preview frames. The pipeline's fallback maps each latent pixel to a colour
// linearly (wanvae.RGBMap, fitted to the loaded VAE); a tiny decoder such as
// TAEHV can be plugged in through Options.Preview.
type PreviewDecoder interface {
	// PreviewFrames returns one packed RGB frame, all of one size w×h, for
	// each latent frame listed in frames of x0, a normalised latent
	// [16,T,H,W] (the DiT's space, as the sampler holds it).
	PreviewFrames(x0 []float32, shape []int, frames []int) (w, h int, rgb [][]byte, err error)
}

// previewFrames is how many latent frames a preview shows, spread evenly
// from the first to the last.
const previewFrames = 4

// tinyPreview previews with the tiny VAE at full resolution: the listed
// latent frames, gathered into a short latent of their own, are decoded in
// the tiny VAE's parallel mode, and each listed frame shows the last video
// frame of its group (latent frame 0 gives one video frame, every later one
// four). The frames lose their temporal context, which a preview can afford:
// it costs len(frames)/T of a full tiny decode.
type tinyPreview struct{ m *taehv.Model }

func (p tinyPreview) PreviewFrames(x0 []float32, shape []int, frames []int) (int, int, [][]byte, error) {
	C, T, plane := shape[0], shape[1], shape[2]*shape[3]
	sub := make([]float32, C*len(frames)*plane)
	for i, t := range frames {
		if t < 0 || t >= T {
			return 0, 0, nil, fmt.Errorf("preview: latent frame %d of %d", t, T)
		}
		for c := 0; c < C; c++ {
			copy(sub[(c*len(frames)+i)*plane:][:plane], x0[(c*T+t)*plane:][:plane])
		}
	}
	vid, vs, err := p.m.Decode(sub, []int{C, len(frames), shape[2], shape[3]})
	if err != nil {
		return 0, 0, nil, err
	}
	all, err := taehv.Frames(vid, vs)
	if err != nil {
		return 0, 0, nil, err
	}
	out := make([][]byte, len(frames))
	for i := range frames {
		j := min(4*i, len(all)-1) // the last video frame of sub-latent frame i
		out[i] = all[j]
	}
	return vs[3], vs[2], out, nil
}

// linearPreview is the fallback PreviewDecoder: the VAE's fitted linear
// colour map at latent resolution.
type linearPreview struct{ m *wanvae.RGBMap }

func (p linearPreview) PreviewFrames(x0 []float32, shape []int, frames []int) (int, int, [][]byte, error) {
	out := make([][]byte, len(frames))
	for i, t := range frames {
		f, err := p.m.Apply(x0, shape, t)
		if err != nil {
			return 0, 0, nil, err
		}
		out[i] = f
	}
	return shape[3], shape[2], out, nil
}

// previewDecoder is the decoder for this request's previews: Options.Preview,
// else the tiny VAE when it is the engine's decoder (then there may be no Wan
// VAE at all), else the linear map fitted to the Wan VAE (loading it first,
// once).
func (e *Engine) previewDecoder() (PreviewDecoder, error) {
	if e.opt.Preview != nil {
		return e.opt.Preview, nil
	}
	if e.opt.TinyVAE != "" {
		if err := e.loadDecoder(); err != nil {
			return nil, err
		}
		return tinyPreview{e.tiny}, nil
	}
	if err := e.loadVAE(); err != nil {
		return nil, err
	}
	m, err := e.decoder.FitRGB()
	if err != nil {
		return nil, err
	}
	return linearPreview{m}, nil
}

// previewer builds the step hook that sends a Preview after each network
// evaluation of sample `sample`; nil when the request wants none.
type previewer struct {
	dec   PreviewDecoder
	send  func(Preview)
	steps int
	shape []int // the latent's [16,T,H,W]
}

// after makes a preview from one step: x is the network input (the noisy
// latent at time st.Time), v its velocity; x0 = x − t·v for the flow
// samplers (rCM and UniPC alike). Only the shown frames are computed.
func (p *previewer) after(sample int, st sampler.Step, x, v []float32) error {
	if p == nil {
		return nil
	}
	t0 := time.Now()
	C, T, plane := p.shape[0], p.shape[1], p.shape[2]*p.shape[3]
	if len(v) < C*T*plane || len(x) < C*T*plane {
		return fmt.Errorf("preview: step %d: latent of %d values, want %v", st.Index, len(v), p.shape)
	}
	idx := spread(T, previewFrames)
	sub := make([]float32, C*len(idx)*plane)
	s := float32(st.Time)
	parallel.For(C*len(idx), func(lo, hi int) {
		for cj := lo; cj < hi; cj++ {
			c, j := cj/len(idx), cj%len(idx)
			src := (c*T + idx[j]) * plane
			dst := cj * plane
			for i := 0; i < plane; i++ {
				sub[dst+i] = x[src+i] - s*v[src+i]
			}
		}
	})
	local := make([]int, len(idx))
	for j := range local {
		local[j] = j
	}
	w, h, rgb, err := p.dec.PreviewFrames(sub, []int{C, len(idx), p.shape[2], p.shape[3]}, local)
	if err != nil {
		return fmt.Errorf("preview: step %d: %w", st.Index+1, err)
	}
	fi := make([]int, len(idx))
	for j, t := range idx {
		if t > 0 {
			fi[j] = wanvae.TemporalFactor*(t-1) + 1
		}
	}
	p.send(Preview{Step: st.Index + 1, Steps: p.steps, Sample: sample, Width: w, Height: h, Frames: rgb, FrameIndex: fi, Took: time.Since(t0)})
	return nil
}

// spread picks up to k indices of [0,n) evenly, first and last included.
func spread(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, k)
	for i := range out {
		out[i] = (i*(n-1) + (k-1)/2) / (k - 1)
	}
	return out
}

// newPreviewer sets previews up for a request (nil when it wants none).
func (e *Engine) newPreviewer(r Request, shape []int) (*previewer, error) {
	if r.OnPreview == nil {
		return nil, nil
	}
	dec, err := e.previewDecoder()
	if err != nil {
		return nil, err
	}
	return &previewer{dec: dec, send: r.OnPreview, steps: r.Steps, shape: shape}, nil
}
