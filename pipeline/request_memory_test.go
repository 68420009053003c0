package pipeline

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
)

// fitFrames is the frame count a refusal's advice names.
func fitFrames(t *testing.T, err error) int {
	t.Helper()
	msg := err.Error()
	i := strings.Index(msg, "up to ")
	if i < 0 {
		t.Fatalf("no frame count in %q", msg)
	}
	var n int
	if _, err := fmt.Sscanf(msg[i:], "up to %d frames fit", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func memoryErr(t *testing.T, err error, want string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Code != CodeMemory || fe.Field != FieldFrames || !strings.Contains(err.Error(), want) {
		t.Fatalf("want a %s refusal of the frames saying %q, got %v", CodeMemory, want, err)
	}
}

// TestCheckPlan: the pre-queue check refuses exactly what the planner says
// does not fit (GPU with its headroom, host), and the frame count it
// advises is the largest whose plan fits.
func TestCheckPlan(t *testing.T) {
	c, err := wan.Preset("Wan2.1-T2V-1.3B")
	if err != nil {
		t.Fatal(err)
	}
	run := memplan.Run{DiT: wan.FileInfo{Config: c, ProjL: true}, Opt: wan.Options{Attention: backend.SLA},
		Width: 1280, Height: 720, Frames: 481, Texts: 1, TextEncoder: true, Warm: true}
	plan := func(frames int) memplan.Estimate {
		q := run
		q.Frames = frames
		est, err := memplan.Plan(q)
		if err != nil {
			t.Fatal(err)
		}
		return est
	}
	const total = 80 << 30
	est := plan(481)
	gpu := Budget{Host: 1 << 40, Device: est.GPU() + memplan.Headroom(total), DeviceTotal: total}
	if err := CheckPlan(run, gpu); err != nil {
		t.Fatalf("a budget of exactly the plan and its headroom: %v", err)
	}
	// One byte less is refused, and so is a GPU that holds the plan for
	// 241 frames only: the advice is the largest 4k+1 count that fits.
	gpu.Device--
	memoryErr(t, CheckPlan(run, gpu), "GPU memory")
	gpu.Device = plan(241).GPU() + memplan.Headroom(total)
	err = CheckPlan(run, gpu)
	memoryErr(t, err, "at 1280x720 up to ")
	n := fitFrames(t, err)
	if n < 241 || n >= 481 || (n-1)%4 != 0 {
		t.Fatalf("advice %d frames, want 4k+1 in [241, 481)", n)
	}
	if !memplan.Fit(plan(n), gpu.Device, total) || memplan.Fit(plan(n+4), gpu.Device, total) {
		t.Fatalf("the planner disagrees with the advice of %d frames", n)
	}
	run.Frames = n
	if err := CheckPlan(run, gpu); err != nil {
		t.Fatalf("%d frames said to fit: %v", n, err)
	}
	run.Frames = 481
	// The host guard holds on a GPU machine too.
	host := Budget{Host: est.Host - 1, Device: 1 << 40, DeviceTotal: 1 << 40}
	memoryErr(t, CheckPlan(run, host), "of memory, the machine has")
	// On the CPU (no device) the plan's device part is host memory.
	cpuB := Budget{Host: est.Host + est.GPU()}
	if err := CheckPlan(run, cpuB); err != nil {
		t.Fatalf("CPU with the plan's memory: %v", err)
	}
	cpuB.Host--
	memoryErr(t, CheckPlan(run, cpuB), "of memory, the machine has")
	// A GPU too small for the weights: nothing fits.
	memoryErr(t, CheckPlan(run, Budget{Host: 1 << 40, Device: 2 << 30, DeviceTotal: 2 << 30}), "no frame count fits")
}

// TestCheckRequestPlans: the server's check on an engine with tiny models
// and a small GPU is at least as strict as Generate's plan once the models
// are loaded, refuses a billion frames without allocating, and the frame
// count it advises passes.
func TestCheckRequestPlans(t *testing.T) {
	fx := newI2VFixture(t)
	files := fx.t2vFiles(t)
	const total = 4 << 30
	newEngine := func(free int64, lim Limits) *Engine {
		g := smallGPU{Backend: cpu.New(), free: free, total: total}
		eng, err := New(g, g, Options{Files: files, DiTOptions: DiTOptions{Attention: backend.Dense}, KeepTextEncoder: true, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		return eng
	}
	req := Request{Prompt: "a fox", Steps: 1, SigmaMax: 80, Size: Size{32, 32}, Frames: 1, Seed: 3, Samples: 1}
	eng := newEngine(total, Limits{})
	if err := eng.CheckRequest(req); err != nil {
		t.Fatalf("a request that fits: %v", err)
	}
	// Checks run beside Generate, as a server's do (go test -race sees
	// any engine state they share). Then Generate's plan with every model
	// loaded (a warm server): the pre-queue check must refuse a device
	// that this plan does not fit.
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if err := eng.CheckRequest(req); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	_, err := eng.Generate(t.Context(), req)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	warm, _, err := eng.MemoryPlan(req)
	if err != nil {
		t.Fatal(err)
	}
	tight := newEngine(warm.GPU()+memplan.Headroom(total)-1, Limits{})
	memoryErr(t, tight.CheckRequest(req), "GPU memory")

	// A billion frames: refused by the limits, and with the limits
	// raised by the memory check, without allocating for the frames.
	big := req
	big.Frames = 1000000001
	var fe *FieldError
	if err := eng.CheckRequest(big); !errors.As(err, &fe) || fe.Code != CodeTooLarge || fe.Field != FieldFrames {
		t.Fatalf("a billion frames under the default limits: %v", err)
	}
	loose := newEngine(total, Limits{MaxFrames: 2000000001})
	// What the check allocates must not grow with the frame count: a
	// billion frames against a hundred million (both refused; the advice's
	// search for the frames that fit costs the same few MB in both).
	allocs := func(frames int) (uint64, error) {
		r := big
		r.Frames = frames
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := loose.CheckRequest(r)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, err
	}
	tenth, err := allocs(100000001)
	memoryErr(t, err, "GPU memory")
	a, err := allocs(big.Frames)
	memoryErr(t, err, "GPU memory")
	t.Logf("the check allocated %d bytes for %d frames, %d for 100000001", a, big.Frames, tenth)
	if a > tenth+1<<20 {
		t.Errorf("the check allocated %d bytes for %d frames against %d for 100000001: it grows with the frames", a, big.Frames, tenth)
	}
	n := fitFrames(t, err)
	big.Frames = n
	if err := loose.CheckRequest(big); err != nil {
		t.Fatalf("%d frames said to fit: %v", n, err)
	}
	big.Frames = n + 4
	memoryErr(t, loose.CheckRequest(big), "GPU memory")
}
