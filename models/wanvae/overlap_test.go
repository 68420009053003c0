package wanvae

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// asyncCPU is the CPU backend with backend.AsyncDownloader and
// backend.Constants written out plainly (the copy made at once, the frames
// converted by rgb24), logging every download queued and finished, so the
// overlapped decode's order and bookkeeping run without a GPU.
type asyncCPU struct {
	*cpu.Backend
	log    *[]string
	marked *int
}

func (a asyncCPU) MarkConstant(ts ...backend.Tensor) { *a.marked = len(ts) }

type fakePending struct {
	a      asyncCPU
	id     int
	vals   []float32
	shape  []int
	frames bool
	rng    rgb24.Range
	done   bool
}

func (a asyncCPU) queue(t backend.Tensor, frames bool, rng rgb24.Range) backend.Pending {
	id := 0
	for _, l := range *a.log {
		if strings.HasPrefix(l, "queue ") {
			id++
		}
	}
	p := &fakePending{a: a, id: id, vals: a.Download(t), shape: t.Shape(), frames: frames, rng: rng}
	a.Free(t) // taken over
	*a.log = append(*a.log, fmt.Sprintf("queue %d", p.id))
	return p
}

func (a asyncCPU) DownloadAsync(t backend.Tensor) backend.Pending { return a.queue(t, false, 0) }

func (a asyncCPU) DownloadFramesAsync(t backend.Tensor, rng rgb24.Range) backend.Pending {
	return a.queue(t, true, rng)
}

func (p *fakePending) finish(how string) {
	if p.done {
		panic("download finished twice")
	}
	p.done = true
	*p.a.log = append(*p.a.log, fmt.Sprintf("%s %d", how, p.id))
}

func (p *fakePending) Floats() []float32 {
	if p.frames {
		panic("Floats on a frames download")
	}
	p.finish("deliver")
	return p.vals
}

func (p *fakePending) Frames() [][]uint8 {
	if !p.frames {
		panic("Frames on a float download")
	}
	p.finish("deliver")
	f, err := rgb24.Frames(p.vals, p.shape, p.rng)
	if err != nil {
		panic(err)
	}
	return f
}

func (p *fakePending) Discard() {
	if !p.done {
		p.finish("discard")
	}
}

// TestOverlappedDecode: with an AsyncDownloader the decode queues chunk t
// (and its download) before it reads chunk t−1, delivers the same values
// as the sequential decode bit for bit (floats, and frames equal to Frames
// of them), marks the decoder's conv weights constant, discards what is in
// flight when emit fails, and SetOverlap(false) brings back the sequential
// decode.
func TestOverlappedDecode(t *testing.T) {
	f := golden.Open(t, "vae.safetensors")
	plain, err := Load(cpu.New(), f, Options{DType: tensor.BF16})
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	marked := 0
	over, err := Load(asyncCPU{cpu.New(), &log, &marked}, f, Options{DType: tensor.BF16})
	if err != nil {
		t.Fatal(err)
	}
	latent, ls := randomLatent(plain.Config().ZDim, 4, 3, 5, 9)
	want, ws, err := plain.Decode(latent, ls)
	if err != nil {
		t.Fatal(err)
	}
	got, gs, err := over.Decode(latent, ls)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gs, ws) || !slices.Equal(got, want) {
		t.Fatalf("overlapped decode %v differs from the sequential one %v", gs, ws)
	}
	// Chunk t is queued before chunk t−1 is delivered.
	order := "queue 0,queue 1,deliver 0,queue 2,deliver 1,queue 3,deliver 2,deliver 3"
	if s := strings.Join(log, ","); s != order {
		t.Errorf("download order %s, want %s", s, order)
	}
	if n := len(over.decoderWeights()); marked != n || n < 10 {
		t.Errorf("marked %d tensors constant, want the decoder's %d conv weights", marked, n)
	}

	wantFrames, err := Frames(want, ws)
	if err != nil {
		t.Fatal(err)
	}
	var gotFrames [][]uint8
	err = over.DecodeFrames(latent, ls, func(first int, fr [][]uint8, w, h int) error {
		if first != len(gotFrames) || w != ws[3] || h != ws[2] {
			t.Fatalf("frames from %d (%dx%d), want from %d (%dx%d)", first, w, h, len(gotFrames), ws[3], ws[2])
		}
		gotFrames = append(gotFrames, fr...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(gotFrames, wantFrames, slices.Equal) {
		t.Errorf("DecodeFrames differs from Frames(Decode)")
	}

	// An error from emit stops the decode; nothing stays in flight.
	log = log[:0]
	stop := errors.New("stop")
	calls := 0
	err = over.DecodeChunks(latent, ls, func(int, []float32, []int) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("callback error: got %v after %d calls, want %v after 1", err, calls, stop)
	}
	if s := strings.Join(log, ","); s != "queue 0,queue 1,deliver 0,discard 1" {
		t.Errorf("downloads after an emit error: %s, want queue 0,queue 1,deliver 0,discard 1", s)
	}

	defer SetOverlap(SetOverlap(false))
	log = log[:0]
	got, _, err = over.Decode(latent, ls)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 0 || !slices.Equal(got, want) {
		t.Errorf("SetOverlap(false): %d async downloads, equal %v; want none, equal", len(log), slices.Equal(got, want))
	}
}
