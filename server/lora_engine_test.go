package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
	"github.com/turbodiffusion-go/turbodiffusion/tokenizer"
)

// tinyEngine is a CPU engine on the conformance set's DiT, VAE and
// tokenizer with a random umT5 that fits them (as the serve tests run).
func tinyEngine(t *testing.T) (*pipeline.Engine, string) {
	t.Helper()
	return tinyEngineOffload(t, false)
}

// tinyEngineOffload is tinyEngine, with the DiT's block weights streamed
// from host memory when offload is set (the CPU backend's Streamer).
func tinyEngineOffload(t *testing.T, offload bool) (*pipeline.Engine, string) {
	t.Helper()
	dir := t.TempDir()
	tk, err := tokenizer.Load(golden.Path(t, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "enc.safetensors")
	if err := testmodels.WriteUMT5(enc, tk.VocabSize(), golden.LoadManifest(t).Int(t, "configs", "dit", "text_dim"), 7); err != nil {
		t.Fatal(err)
	}
	dit := golden.Path(t, "dit_weights.pth")
	be := cpu.New()
	eng, err := pipeline.New(be, be, pipeline.Options{
		Files: pipeline.Files{DiT: dit, VAE: golden.Path(t, "vae.safetensors"),
			TextEncoder: enc, Tokenizer: golden.Path(t, "tokenizer")},
		DiTOptions:      pipeline.DiTOptions{Attention: backend.Dense, Offload: offload},
		KeepTextEncoder: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng, dit
}

// writeLoRA writes a kohya-named LoRA of the given rank for modules of the
// DiT at dit, its A and B shaped from the DiT's header ([out, in] of each
// module's weight) unless shapes overrides them; values are random, large
// enough to change the video visibly.
func writeLoRA(t *testing.T, path, dit string, rank int, modules []string, shapes map[string][2]int) {
	t.Helper()
	f, err := checkpoint.Open(dit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewSource(9))
	var ts []checkpoint.Tensor
	add := func(name string, shape ...int) {
		n := tensor.NumElements(shape)
		b := make([]byte, 0, 4*n)
		for i := 0; i < n; i++ {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(r.NormFloat64()*0.5)))
		}
		ts = append(ts, checkpoint.Tensor{Name: name, DType: tensor.F32, Shape: shape, Data: b})
	}
	for _, m := range modules {
		oi, ok := shapes[m]
		if !ok {
			info, ok := f.Info(m + ".weight")
			if !ok {
				t.Fatalf("%s has no %s.weight", dit, m)
			}
			oi = [2]int{info.Shape[0], tensor.NumElements(info.Shape[1:])}
		}
		k := "lora_unet_" + strings.ReplaceAll(m, ".", "_")
		add(k+".lora_down.weight", rank, oi[1])
		add(k+".lora_up.weight", oi[0], rank)
	}
	if err := checkpoint.WriteSafetensors(path, ts); err != nil {
		t.Fatal(err)
	}
}

// gatedGen is the engine's generator; a job waits for gate (when set)
// before it runs, and onStep sees every progress event.
type gatedGen struct {
	EngineGenerator
	gate   chan struct{}
	onStep func(pipeline.Event)
}

func (g *gatedGen) Generate(ctx context.Context, r pipeline.Request, progress func(pipeline.Event)) (Output, error) {
	if g.gate != nil {
		<-g.gate
	}
	return g.EngineGenerator.Generate(ctx, r, func(ev pipeline.Event) {
		progress(ev)
		if g.onStep != nil {
			g.onStep(ev)
		}
	})
}

// TestLoRAPerRequestEngine: LoRAs per request on the tiny CPU engine behind
// the server. The folder is listed with what each file is and whether it
// fits; bad names, paths out of the folder, files that are no LoRA or do
// not fit the DiT are refused before queueing (400, param "loras", the
// message naming the key and shapes); a job with a LoRA gives another
// video, and the jobs after it without one give the baseline's video bit
// for bit, whether the LoRA job completed or was cancelled; back-to-back
// jobs with the same LoRA merge once.
func TestLoRAPerRequestEngine(t *testing.T) {
	eng, dit := tinyEngine(t)
	loras := t.TempDir()
	mods := []string{"blocks.0.self_attn.v", "blocks.0.ffn.2", "head.head"}
	writeLoRA(t, filepath.Join(loras, "style.safetensors"), dit, 4, mods, nil)
	writeLoRA(t, filepath.Join(loras, "unknown.safetensors"), dit, 2, []string{"blocks.0.ffn.2", "blocks.999.ffn.0"}, map[string][2]int{"blocks.999.ffn.0": {8, 8}})
	writeLoRA(t, filepath.Join(loras, "shape.safetensors"), dit, 2, []string{"blocks.0.ffn.2"}, map[string][2]int{"blocks.0.ffn.2": {24, 40}})
	if err := checkpoint.WriteSafetensors(filepath.Join(loras, "notlora.safetensors"), []checkpoint.Tensor{
		{Name: "blocks.0.self_attn.q.weight", DType: tensor.F32, Shape: []int{2, 2}, Data: make([]byte, 16)}}); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	writeLoRA(t, filepath.Join(outside, "x.safetensors"), dit, 4, mods, nil)
	if err := os.Symlink(filepath.Join(outside, "x.safetensors"), filepath.Join(loras, "escape.safetensors")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(loras, "sub.safetensors"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(loras, "readme.txt"), []byte("not listed"), 0o644)
	// A link inside the folder is fine.
	if err := os.Symlink("style.safetensors", filepath.Join(loras, "alias.safetensors")); err != nil {
		t.Fatal(err)
	}

	g := &gatedGen{EngineGenerator: EngineGenerator{Engine: eng}}
	ts := newTestServer(t, g, Config{LoRADir: loras, Attention: "dense"})

	// The listing.
	code, m, _ := ts.call(t, "GET", "/v1/loras", "", "")
	if code != 200 || m["folder"] != true {
		t.Fatalf("GET /v1/loras: %d %v", code, m)
	}
	got := map[string]map[string]any{}
	for _, e := range m["data"].([]any) {
		e := e.(map[string]any)
		got[e["name"].(string)] = e
	}
	if len(got) != 5 || got["escape.safetensors"] != nil || got["sub.safetensors"] != nil || got["readme.txt"] != nil {
		t.Errorf("listed %v, want alias, notlora, shape, style and unknown", keys(got))
	}
	if s := got["style.safetensors"]; s == nil || s["fits"] != true || s["rank"] != 4.0 || s["target_modules"] != 3.0 || s["unknown_keys"] != 0.0 ||
		strings.Join(strs(s["naming"]), ",") != "kohya" || s["object"] != "lora" || s["size"].(float64) < 100 {
		t.Errorf("style.safetensors listed as %v", s)
	}
	if s := got["alias.safetensors"]; s == nil || s["fits"] != true {
		t.Errorf("alias.safetensors (a link inside the folder) listed as %v", s)
	}
	for name, want := range map[string]string{"unknown.safetensors": "blocks.999.ffn.0", "shape.safetensors": "A [2 40] and B [24 2]", "notlora.safetensors": "not a LoRA"} {
		s := got[name]
		if msg := fmt.Sprint(s["error"]); s == nil || s["fits"] == true || !strings.Contains(msg, want) || strings.Contains(msg, loras) {
			t.Errorf("%s listed as %v, want an error saying %q (without the folder's path)", name, s, want)
		}
	}

	// Refused before queueing (param "loras", or "loras.scale" for a JSON
	// type error).
	for _, c := range []struct {
		what, loras string
		want        []string
	}{
		{"a name not in the folder", `[{"name":"nope.safetensors"}]`, []string{"no LoRA", "nope.safetensors"}},
		{"a path out of the folder", `[{"name":"../x.safetensors"}]`, []string{"not a file name"}},
		{"an absolute path", `[{"name":"` + filepath.Join(outside, "x.safetensors") + `"}]`, []string{"not a file name"}},
		{"a symlink out of the folder", `[{"name":"escape.safetensors"}]`, []string{"links outside"}},
		{"a folder", `[{"name":"sub.safetensors"}]`, []string{"not a regular file"}},
		{"a file that is no LoRA", `[{"name":"notlora.safetensors"}]`, []string{"not a LoRA"}},
		{"a key the DiT lacks", `[{"name":"style.safetensors"},{"name":"unknown.safetensors","scale":0.5}]`, []string{"unknown.safetensors", "lora_unet_blocks_999_ffn_0.lora_down.weight", "blocks.999.ffn.0"}},
		{"a shape that does not fit", `[{"name":"shape.safetensors"}]`, []string{"blocks.0.ffn.2", "[2 40]", "[24 2]"}},
		{"a scale that is no number", `[{"name":"style.safetensors","scale":"x"}]`, nil},
	} {
		code, m := ts.post(t, `{"prompt":"a fox","size":"64x64","num_frames":1,"num_inference_steps":1,"format":"gif","loras":`+c.loras+`}`)
		if code != 400 {
			t.Errorf("%s: %d %v, want 400", c.what, code, m)
			continue
		}
		e, _ := m["error"].(map[string]any)
		if p, _ := e["param"].(string); e == nil || !strings.HasPrefix(p, "loras") {
			t.Errorf("%s: %v, want an error of param loras", c.what, m)
			continue
		}
		msg := e["message"].(string)
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", c.what, msg, w)
			}
		}
		if strings.Contains(msg, loras) {
			t.Errorf("%s: %q shows the folder's path", c.what, msg)
		}
	}
	if _, m, _ := ts.call(t, "GET", "/v1/videos", "", ""); len(m["data"].([]any)) != 0 {
		t.Fatalf("refused requests were queued: %v", m["data"])
	}

	// Jobs: baseline, with the LoRA, without again.
	job := func(lora string) string {
		t.Helper()
		body := `{"prompt":"a fox","size":"64x64","num_frames":1,"num_inference_steps":2,"seed":5,"format":"gif"` + lora + `}`
		code, m := ts.post(t, body)
		if code != 202 {
			t.Fatalf("POST %s: %d %v", body, code, m)
		}
		return m["id"].(string)
	}
	const style = `,"loras":[{"name":"style.safetensors","scale":0.8}]`
	result := func(id string) (video []byte, merged bool) {
		t.Helper()
		v := waitLong(t, ts, id)
		if v["status"] != "completed" {
			t.Fatalf("job %s: %v", id, v)
		}
		for _, tm := range v["timings"].([]any) {
			merged = merged || tm.(map[string]any)["stage"] == "merge LoRA"
		}
		resp, err := http.Get(ts.url + "/v1/videos/" + id + "/content")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b, merged
	}
	base, _ := result(job(""))
	idStyle := job(style)
	withLoRA, merged := result(idStyle)
	if string(withLoRA) == string(base) || !merged {
		t.Fatalf("the job with a LoRA: same video as without %v, merged %v", string(withLoRA) == string(base), merged)
	}
	if _, m, _ := ts.call(t, "GET", "/v1/videos/"+idStyle, "", ""); strs2(m["loras"]) != "style.safetensors 0.8" {
		t.Errorf("the job's settings show loras %v", m["loras"])
	}
	if again, _ := result(job("")); string(again) != string(base) {
		t.Fatal("the job after the LoRA job gives another video than the baseline: weights not restored")
	}

	// Two jobs with the same LoRA back to back (the second queued before
	// the first ends): merged once, the same video twice; then a job
	// without LoRA gives the baseline.
	g.gate = make(chan struct{}, 2)
	a, b := job(style), job(style)
	g.gate <- struct{}{}
	g.gate <- struct{}{}
	va, mergedA := result(a)
	vb, mergedB := result(b)
	g.gate = nil
	if !mergedA || mergedB {
		t.Errorf("back-to-back jobs with the same LoRA: merged %v then %v, want true then false", mergedA, mergedB)
	}
	if string(va) != string(withLoRA) || string(vb) != string(withLoRA) {
		t.Errorf("back-to-back LoRA jobs give other videos: %v %v", string(va) == string(withLoRA), string(vb) == string(withLoRA))
	}
	if again, _ := result(job("")); string(again) != string(base) {
		t.Fatal("after back-to-back LoRA jobs: weights not restored")
	}

	// A LoRA job cancelled after its first step: the next job is the baseline.
	var cancelID string
	g.onStep = func(ev pipeline.Event) {
		if ev.Stage == "step" && ev.Done == 1 && cancelID != "" {
			ts.call(t, "DELETE", "/v1/videos/"+cancelID, "", "")
		}
	}
	cancelID = job(style)
	if v := waitLong(t, ts, cancelID); v["status"] != "cancelled" {
		t.Fatalf("cancelled LoRA job: %v", v)
	}
	g.onStep = nil
	if again, _ := result(job("")); string(again) != string(base) {
		t.Fatal("after a cancelled LoRA job: weights not restored")
	}
}

// TestLoRAPerRequestOffload: a server whose engine streams the DiT from
// host memory (--offload) takes request LoRAs: the job with a LoRA gives the
// video a resident engine gives with it, bit for bit, and the job after it
// the baseline again (the host copies restored).
func TestLoRAPerRequestOffload(t *testing.T) {
	loras := t.TempDir()
	writeLoRA(t, filepath.Join(loras, "style.safetensors"), golden.Path(t, "dit_weights.pth"), 4,
		[]string{"blocks.0.self_attn.v", "blocks.1.ffn.0", "blocks.1.cross_attn.k", "head.head"}, nil)
	videos := map[bool][3]string{}
	for _, offload := range []bool{false, true} {
		eng, _ := tinyEngineOffload(t, offload)
		ts := newTestServer(t, &gatedGen{EngineGenerator: EngineGenerator{Engine: eng}}, Config{LoRADir: loras, Attention: "dense"})
		var got [3]string
		for i, l := range []string{"", `,"loras":[{"name":"style.safetensors","scale":0.8}]`, ""} {
			code, m := ts.post(t, `{"prompt":"a fox","size":"64x64","num_frames":1,"num_inference_steps":2,"seed":5,"format":"gif"`+l+`}`)
			if code != 202 {
				t.Fatalf("offload %v: POST with %q: %d %v", offload, l, code, m)
			}
			id := m["id"].(string)
			if v := waitLong(t, ts, id); v["status"] != "completed" {
				t.Fatalf("offload %v: job %d: %v", offload, i, v)
			}
			resp, err := http.Get(ts.url + "/v1/videos/" + id + "/content")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got[i] = string(b)
		}
		videos[offload] = got
	}
	res, off := videos[false], videos[true]
	if res[1] == res[0] {
		t.Fatal("the LoRA changes nothing")
	}
	if off[0] != res[0] {
		t.Error("the offloaded engine's baseline differs from the resident one's")
	}
	if off[1] != res[1] {
		t.Error("the offloaded engine's job with the LoRA differs from the resident engine's with it")
	}
	if off[2] != res[0] {
		t.Error("the offloaded engine's job after the LoRA job is not the baseline: weights not restored")
	}
}

// waitLong waits for a job to end (CPU jobs on a loaded machine).
func waitLong(t *testing.T, ts *testServer, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		_, m, _ := ts.call(t, "GET", "/v1/videos/"+id, "", "")
		if s, _ := m["status"].(string); terminal(s) {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s did not end", id)
	return nil
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// strs2 shows a loras setting as "name scale, ...".
func strs2(v any) string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		e := x.(map[string]any)
		out = append(out, fmt.Sprintf("%s %v", e["name"], e["scale"]))
	}
	return strings.Join(out, ", ")
}
