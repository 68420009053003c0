package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/video"
)

// chromium finds a Chromium to drive: $TURBODIFFUSION_CHROMIUM, else the
// usual names on PATH (Debian's package is "chromium").
func chromium() string {
	if p := os.Getenv("TURBODIFFUSION_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// movingGen is the fake generator with a clip Chromium can play: 64×64
// frames whose grey level moves, one second at 16 fps.
type movingGen struct{ fakeGen }

func (g *movingGen) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (Output, error) {
	g.mu.Lock()
	g.got = append(g.got, r)
	g.mu.Unlock()
	progress(pipeline.Event{Stage: "encode", Done: 1, Total: 1})
	for i := 0; i < r.Steps; i++ {
		progress(pipeline.Event{Stage: "step", Done: i, Total: r.Steps})
		select {
		case <-time.After(g.stepDelay):
		case <-ctx.Done():
			return Output{}, ctx.Err()
		}
		progress(pipeline.Event{Stage: "step", Done: i + 1, Total: r.Steps})
		fakePreview(r, i+1)
	}
	c := &video.Clip{Width: 64, Height: 64, FPS: 16}
	for f := 0; f < r.Frames; f++ {
		fr := make([]byte, 64*64*3)
		for i := range fr {
			fr[i] = byte(f * 15)
		}
		c.Frames = append(c.Frames, fr)
	}
	written, note, err := pipeline.WriteOutput(r.Output, c)
	return Output{Path: written, Note: note}, err
}

// The web page in headless Chromium on a fake generator: submit with every
// setting, watch the progress, cancel a queued and a running job, and the
// finished video plays and keeps playing while the list refreshes (the
// element is never rebuilt).
func TestWebPageInChromium(t *testing.T) {
	exe := chromium()
	if exe == "" {
		t.Skip("no Chromium found (install Debian's chromium, as scripts/setup-ci.sh does, or set TURBODIFFUSION_CHROMIUM)")
	}
	if _, err := video.FFmpeg(); err != nil {
		t.Skip("no ffmpeg: the page test plays an MP4")
	}
	gen := &movingGen{fakeGen{stepDelay: 300 * time.Millisecond}}
	loras := t.TempDir()
	os.WriteFile(filepath.Join(loras, "style.safetensors"), []byte("x"), 0o644)
	ts := newTestServer(t, gen, Config{Model: "fake", Attention: "sla", TopK: 0.1, Previews: true, LoRADir: loras})

	// Chromium as root (CI) needs --no-sandbox; a fresh profile each run.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("user-data-dir", t.TempDir()),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelC := chromedp.NewContext(actx)
	defer cancelC()
	// Generous: on a loaded 2-core CI machine Chromium itself takes seconds to start.
	ctx, cancelT := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelT()

	// eval runs a JavaScript expression and decodes its value.
	eval := func(expr string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	// waitJS polls a JavaScript condition.
	waitJS := func(what, expr string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for eval("!!("+expr+")") != true {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nmessage: %v\n%v\nserver log:\n%s", what, eval(`document.getElementById("msg").textContent`), eval(`document.getElementById("jobs").outerHTML`), ts.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// submit fills the form (element id → value) and presses Generate.
	submit := func(prompt string, fields map[string]string) {
		t.Helper()
		js := fmt.Sprintf(`document.getElementById("prompt").value = %q;`, prompt)
		for id, v := range fields {
			js += fmt.Sprintf(`document.getElementById(%q).value = %q;`, id, v)
		}
		eval(js + `document.getElementById("submit").click(); true`)
	}
	job := func(n int) string { return fmt.Sprintf(`document.querySelectorAll(".job")[%d]`, n) }

	if err := chromedp.Do(ctx, chromedp.Navigate(ts.url+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS("the page to load", `document.body.dataset.ready == "1"`)

	// Job A with every setting the form has.
	submit("a red fox in the snow", map[string]string{"size": "640x640", "frames": "17", "fps": "16", "steps": "4",
		"seed": "42", "sigma": "70", "attention": "sagesla", "topk": "0.2", "format": "mp4", "lora0": "style.safetensors", "scale0": "0.8"})
	waitJS("job A in the list", `document.querySelectorAll(".job").length == 1`)
	idA := eval(job(0) + ".dataset.id").(string)
	// Live progress from the event stream: a step count and a moving bar.
	waitJS("job A's steps", job(0)+`.querySelector(".meta").textContent.includes("step 2/4")`)
	waitJS("job A's progress bar", `parseFloat(`+job(0)+`.querySelector(".bar > div").style.width) > 5`)
	waitJS("job A's live preview", job(0)+`.querySelector("img.preview") && `+job(0)+`.querySelector("img.preview").naturalWidth == 16`)

	// Job B waits behind A and is cancelled from the page.
	submit("cancel me while I wait", map[string]string{"seed": ""})
	waitJS("job B queued", `document.querySelectorAll(".job").length == 2 && `+job(0)+`.dataset.status == "queued"`)
	eval(job(0) + `.querySelector(".cancel").click(); true`)
	waitJS("job B cancelled", job(0)+`.dataset.status == "cancelled"`)

	// A completes; its video plays.
	jobA := `document.querySelector('.job[data-id="` + idA + `"]')`
	vid := jobA + `.querySelector("video")`
	waitJS("job A completed", jobA+`.dataset.status == "completed"`)
	waitJS("the video plays", vid+` && !`+vid+`.paused && `+vid+`.readyState >= 2 && `+vid+`.currentTime > 0`)
	if w := eval(vid + `.videoWidth`); w != 64.0 {
		t.Errorf("video width %v, want 64", w)
	}
	if eval(jobA+`.querySelector("img.preview") == null`) != true {
		t.Error("the preview stays after the video came")
	}
	// Mark the element; then let a job start and end and the list refresh:
	// the same element is still there, still playing.
	eval(vid + `.dataset.mark = "kept"`)

	// Job C runs and is cancelled while running.
	submit("cancel me while I run", map[string]string{"lora0": ""})
	waitJS("job C running", `document.querySelectorAll(".job").length == 3 && `+job(0)+`.dataset.status == "in_progress"`)
	eval(job(0) + `.querySelector(".cancel").click(); true`)
	waitJS("job C cancelled", job(0)+`.dataset.status == "cancelled"`)
	time.Sleep(4500 * time.Millisecond) // two list refreshes
	kept := eval(vid + `.dataset.mark == "kept" && !` + vid + `.paused`)
	t0 := eval(vid + `.currentTime`)
	time.Sleep(400 * time.Millisecond)
	t1 := eval(vid + `.currentTime`)
	if kept != true || t1 == t0 {
		t.Errorf("the finished video was replaced or stopped: same element and playing %v, currentTime %v → %v", kept, t0, t1)
	}

	// The server got every setting of A; B never ran; C was stopped.
	reqs := gen.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d jobs ran, want A and C", len(reqs))
	}
	a := reqs[0]
	if a.Size != (pipeline.Size{W: 640, H: 640}) || a.Frames != 17 || a.FPS != 16 || a.Steps != 4 || a.Seed != 42 || a.SigmaMax != 70 || a.Attention != "sagesla" || a.TopK != 0.2 || !strings.HasSuffix(a.Output, ".mp4") ||
		len(a.LoRA) != 1 || filepath.Base(a.LoRA[0].Path) != "style.safetensors" || a.LoRA[0].Scale != 0.8 {
		t.Errorf("job A's request: %+v", a)
	}
	if len(reqs[1].LoRA) != 0 {
		t.Errorf("job C chose no LoRA, the server got %v", reqs[1].LoRA)
	}
	// "Use these settings" brings A's LoRA back into the form.
	eval(jobA + `.querySelector(".reuse").click(); true`)
	if v := eval(`document.getElementById("lora0").value + " " + document.getElementById("scale0").value`); v != "style.safetensors 0.8" {
		t.Errorf("A's settings reused: LoRA %v", v)
	}
	// Prompt history: the page remembers the prompts, newest first.
	hist := fmt.Sprint(eval(`[...document.querySelectorAll("#history button")].map(b => b.textContent)`))
	if hist != "[cancel me while I run cancel me while I wait a red fox in the snow]" {
		t.Errorf("prompt history %s", hist)
	}
	// A download link for the finished video.
	if href := eval(jobA + `.querySelector("a.download").getAttribute("href")`); href != "/v1/videos/"+idA+"/content?download=1" {
		t.Errorf("download link %v", href)
	}
}
