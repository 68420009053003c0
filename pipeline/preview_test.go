package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// tinyEngine is an engine on the set's tiny DiT and VAE with a random umT5.
func tinyEngine(t *testing.T, opt Options) *Engine {
	t.Helper()
	_, files := tinyFiles(t, Files{VAE: golden.Path(t, "vae.safetensors")})
	opt.Files, opt.Attention = files, backend.Dense // SLA needs more key blocks than these sizes have
	be := cpu.New()
	eng, err := New(be, be, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// Every step sends one preview of a few latent-resolution frames; the last
// one, the sampler's final x0 estimate, is the fitted colour map applied to
// the final latent (up to the bf16 rounding of the network input the
// preview starts from), so x0 = x − t·v is computed right; and the previews
// cost the sampling loop well under 5%.
func TestPreviewsEveryStep(t *testing.T) {
	eng := tinyEngine(t, Options{})
	var got []Preview
	req := Request{Prompt: "a fox", Steps: 3, SigmaMax: 80, Size: Size{128, 64}, Frames: 5, Seed: 3, Samples: 1,
		OnPreview: func(p Preview) { got = append(got, p) }}
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range res.Timings {
		t.Logf("%-14s %v", tm.Stage, tm.Duration)
	}
	if len(got) != req.Steps {
		t.Fatalf("%d previews for %d steps", len(got), req.Steps)
	}
	lat, _ := LatentShape(req.Frames, req.Size) // [16, 2, 8, 16]
	wantIdx := []int{0, 1}
	for i, p := range got {
		if p.Step != i+1 || p.Steps != req.Steps || p.Sample != 0 {
			t.Errorf("preview %d: step %d/%d sample %d", i, p.Step, p.Steps, p.Sample)
		}
		if p.Width != lat[3] || p.Height != lat[2] || len(p.Frames) != len(wantIdx) {
			t.Fatalf("preview %d: %d frames of %dx%d, want %d of %dx%d", i, len(p.Frames), p.Width, p.Height, len(wantIdx), lat[3], lat[2])
		}
		for j, f := range p.Frames {
			if len(f) != p.Width*p.Height*3 {
				t.Fatalf("preview %d frame %d: %d bytes", i, j, len(f))
			}
			if want := []int{0, 1}[j]; p.FrameIndex[j] != want {
				t.Errorf("preview %d frame %d shows video frame %d, want %d", i, j, p.FrameIndex[j], want)
			}
		}
	}
	m, err := eng.decoder.FitRGB()
	if err != nil {
		t.Fatal(err)
	}
	last := got[len(got)-1]
	var sum, n float64
	for j, lt := range wantIdx {
		want, err := m.Apply(res.Latents[0], lat[:], lt)
		if err != nil {
			t.Fatal(err)
		}
		for k := range want {
			d := float64(want[k]) - float64(last.Frames[j][k])
			sum += max(d, -d)
			n++
		}
	}
	t.Logf("last preview vs the map of the final latent: mean abs diff %.3f levels", sum/n)
	if sum/n > 1 {
		t.Errorf("last preview is %.2f levels from the colour map of the final latent on average: not the x0 estimate", sum/n)
	}
	var took, sampling time.Duration
	for _, p := range got {
		took += p.Took
	}
	for _, tm := range res.Timings {
		if tm.Stage == "sample 1" {
			sampling = tm.Duration
		}
	}
	t.Logf("previews took %v of %v sampling (%.2f%%)", took, sampling, 100*took.Seconds()/sampling.Seconds())
	if sampling == 0 || took > sampling/20 {
		t.Errorf("previews took %v of %v sampling: more than 5%%", took, sampling)
	}
}

// spread picks evenly spaced frames, first and last included.
func TestSpread(t *testing.T) {
	for _, c := range []struct {
		n, k int
		want []int
	}{{1, 4, []int{0}}, {3, 4, []int{0, 1, 2}}, {4, 4, []int{0, 1, 2, 3}}, {21, 4, []int{0, 7, 13, 20}}, {5, 4, []int{0, 1, 3, 4}}} {
		got := spread(c.n, c.k)
		if len(got) != len(c.want) {
			t.Fatalf("spread(%d,%d) = %v, want %v", c.n, c.k, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("spread(%d,%d) = %v, want %v", c.n, c.k, got, c.want)
			}
		}
	}
}

// Options.VAETile reaches the loaded VAE, and a bad one is refused.
func TestVAETileOption(t *testing.T) {
	eng := tinyEngine(t, Options{VAETile: 8})
	if err := eng.loadVAE(); err != nil {
		t.Fatal(err)
	}
	if got := eng.decoder.Tiling(); got != 8 {
		t.Fatalf("VAE tiling %d, want 8", got)
	}
	be := cpu.New()
	if _, err := New(be, be, Options{VAETile: -3}); err == nil {
		t.Error("a negative tile size was accepted")
	}
	if _, err := New(be, be, Options{Encoding: video.Encoding{Preset: "warp"}}); err == nil {
		t.Error("a bad x264 preset was accepted")
	}
}
