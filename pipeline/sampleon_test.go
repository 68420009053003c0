package pipeline

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/sampler"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// rcmCPU is the CPU backend with the sampler's device ops added (the
// state a sampler.HostTensor, the network input a CPU tensor), so the
// pipeline's device loop runs without a GPU. It counts the updates, to
// show which loop ran.
type rcmCPU struct {
	*cpu.Backend
	h       sampler.HostOps
	updates int
}

func (b *rcmCPU) hostCopy(t backend.Tensor) backend.Tensor {
	return b.h.Upload(t.DType(), t.Shape(), b.Backend.Download(t))
}

func (b *rcmCPU) RCMInit(eps backend.Tensor, s0 float64) backend.Tensor {
	return b.h.RCMInit(b.hostCopy(eps), s0)
}

func (b *rcmCPU) RCMInput(x backend.Tensor, dt tensor.DType) backend.Tensor {
	in := b.h.RCMInput(x, dt)
	return b.Backend.Upload(dt, in.Shape(), b.h.Download(in))
}

func (b *rcmCPU) RCMUpdate(x, v, eps backend.Tensor, cur, next float64) {
	b.updates++
	var e backend.Tensor
	if eps != nil {
		e = b.hostCopy(eps)
	}
	b.h.RCMUpdate(x, b.hostCopy(v), e, cur, next)
}

func (b *rcmCPU) Free(t backend.Tensor) {
	if _, ok := t.(*sampler.HostTensor); ok {
		b.h.Free(t)
		return
	}
	b.Backend.Free(t)
}

// TestGenerateDeviceLoop: on a backend with the sampler's ops, text-to-
// video runs the device loop (SampleOn with ForwardDevice) and gives the
// host loop's latent and previews bit for bit (TURBODIFFUSION_RCM_LOOP=host
// selects the host loop, the reference here); a request cancelled during a
// step stops before the next.
func TestGenerateDeviceLoop(t *testing.T) {
	_, files := tinyFiles(t, Files{TinyVAE: golden.TAEHVWeights(t)})
	dev := &rcmCPU{Backend: cpu.New()}
	eng, err := New(dev, cpu.New(), Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}, KeepTextEncoder: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var done []int
	eng.Progress = func(ev Event) {
		if ev.Stage == "step" {
			done = append(done, ev.Done)
		}
	}
	req := Request{Prompt: "A red fox", Steps: 2, SigmaMax: 80, Size: Size{256, 128}, Frames: 1, Seed: 11, Samples: 1}
	run := func(ctx context.Context, r Request) (*Result, []Preview, error) {
		var prev []Preview
		if r.OnPreview == nil {
			r.OnPreview = func(p Preview) { prev = append(prev, p) }
		}
		dev.updates, done = 0, nil
		res, err := eng.Generate(ctx, r)
		return res, prev, err
	}
	t.Setenv("TURBODIFFUSION_RCM_LOOP", "host")
	want, wantPrev, err := run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if dev.updates != 0 {
		t.Fatalf("TURBODIFFUSION_RCM_LOOP=host: %d device updates, want the host loop", dev.updates)
	}
	t.Setenv("TURBODIFFUSION_RCM_LOOP", "")
	loose := dev.Loose()
	got, gotPrev, err := run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if n := dev.Loose() - loose; n != 0 {
		t.Errorf("the device loop left %d tensors allocated", n)
	}
	if dev.updates != req.Steps {
		t.Fatalf("%d device updates for %d steps: the device loop did not run", dev.updates, req.Steps)
	}
	if len(done) == 0 || done[len(done)-1] != req.Steps {
		t.Errorf("step events %v: the last should report %d steps done", done, req.Steps)
	}
	a, b := got.Latents[0], want.Latents[0]
	if len(a) != len(b) {
		t.Fatalf("latent of %d values, host loop %d", len(a), len(b))
	}
	for i := range b {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("latent[%d] = %v, host loop %v", i, a[i], b[i])
		}
	}
	if len(gotPrev) != len(wantPrev) || len(gotPrev) != req.Steps {
		t.Fatalf("%d previews, host loop %d, steps %d", len(gotPrev), len(wantPrev), req.Steps)
	}
	for k := range wantPrev {
		for f := range wantPrev[k].Frames {
			if string(gotPrev[k].Frames[f]) != string(wantPrev[k].Frames[f]) {
				t.Fatalf("preview %d frame %d differs from the host loop's", k, f)
			}
		}
	}

	// Cancelled during the first step (its preview): the second never runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := req
	r.OnPreview = func(Preview) { cancel() }
	if _, _, err := run(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: error %v, want context.Canceled", err)
	}
	if dev.updates != 1 {
		t.Errorf("cancelled in step 1: %d updates ran, want 1", dev.updates)
	}
}
