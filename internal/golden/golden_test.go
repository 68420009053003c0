package golden

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recTB records what a helper reports; Fatalf and Skipf stop the helper
// (by panicking, recovered in call) as the testing package's do.
type recTB struct {
	testing.TB
	fatal, skip string
	errs, logs  []string
}

type stop struct{}

func (r *recTB) Helper()                   {}
func (r *recTB) Logf(f string, a ...any)   { r.logs = append(r.logs, fmt.Sprintf(f, a...)) }
func (r *recTB) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recTB) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...); panic(stop{}) }
func (r *recTB) Skipf(f string, a ...any)  { r.skip = fmt.Sprintf(f, a...); panic(stop{}) }

// call runs f with r, stopping where a Fatalf or Skipf does.
func (r *recTB) call(f func(t testing.TB)) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(stop); !ok {
				panic(p)
			}
		}
	}()
	f(r)
}

// TestPathMissingFile: a file missing from a set the user named fails the
// test, naming the directory and the variable; a missing default set skips.
func TestPathMissingFile(t *testing.T) {
	dir := t.TempDir()
	r := &recTB{}
	r.call(func(t testing.TB) { pathIn(t, dir, true, "vae.safetensors") })
	if r.fatal == "" || r.skip != "" || !strings.Contains(r.fatal, dir) || !strings.Contains(r.fatal, EnvVar) || !strings.Contains(r.fatal, "vae.safetensors") {
		t.Errorf("named set: fatal %q, skip %q; want a failure naming %s, $%s and the file", r.fatal, r.skip, dir, EnvVar)
	}
	r = &recTB{}
	r.call(func(t testing.TB) { pathIn(t, dir, false, "vae.safetensors") })
	if r.skip == "" || r.fatal != "" || !strings.Contains(r.skip, EnvVar) {
		t.Errorf("default set: fatal %q, skip %q; want a skip that mentions $%s", r.fatal, r.skip, EnvVar)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = &recTB{}
	var got string
	r.call(func(t testing.TB) { got = pathIn(t, dir, true, "x.json") })
	if got != filepath.Join(dir, "x.json") || r.fatal != "" || r.skip != "" {
		t.Errorf("present file: %q, fatal %q, skip %q", got, r.fatal, r.skip)
	}
}

func TestManifestValues(t *testing.T) {
	m := Manifest{"configs": map[string]any{
		"dit": map[string]any{"num_heads": 2.0, "eps": 1e-6, "model_type": "t2v", "patch_size": []any{1.0, 2.0, 2.0}},
		"rcm": map[string]any{"b": map[string]any{"argv": []any{"--steps", "4", "--sigma_max", "80"}}, "a": map[string]any{}},
	}}
	if got := m.Int(t, "configs", "dit", "num_heads"); got != 2 {
		t.Errorf("Int = %d", got)
	}
	if got := m.String(t, "configs", "dit", "model_type"); got != "t2v" {
		t.Errorf("String = %q", got)
	}
	if got := m.Ints(t, "configs", "dit", "patch_size"); !slices.Equal(got, []int{1, 2, 2}) {
		t.Errorf("Ints = %v", got)
	}
	if got := m.Keys(t, "configs", "rcm"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Keys = %v, want sorted [a b]", got)
	}
	if got := m.ArgvNumber(t, "b", "--sigma_max"); got != 80 {
		t.Errorf("ArgvNumber = %v", got)
	}
	if !m.ArgvHas("b", "--steps") || m.ArgvHas("b", "--ode") {
		t.Error("ArgvHas")
	}
	for name, f := range map[string]func(testing.TB){
		"Int of a fraction": func(tb testing.TB) { m.Int(tb, "configs", "dit", "eps") },
		"missing number":    func(tb testing.TB) { m.Number(tb, "configs", "dit", "dim") },
		"String of number":  func(tb testing.TB) { m.String(tb, "configs", "dit", "num_heads") },
		"missing flag":      func(tb testing.TB) { m.ArgvNumber(tb, "b", "--sla_topk") },
	} {
		r := &recTB{}
		r.call(f)
		if r.fatal == "" || !strings.Contains(r.fatal, "manifest.json") {
			t.Errorf("%s: fatal %q, want a failure naming manifest.json", name, r.fatal)
		}
	}
}

func TestRelGap(t *testing.T) {
	if g := RelGap([]float32{4, -8, 2, 3}, 2); g != 1.0/8 {
		t.Errorf("gap %v, want (3-2)/8", g)
	}
	if g := RelGap([]float32{1, 1, 0}, 1); g != 0 {
		t.Errorf("tie: gap %v, want 0", g)
	}
	if g := RelGap([]float32{1, 2}, 2); !math.IsInf(g, 1) {
		t.Errorf("k = all blocks: gap %v, want +Inf", g)
	}
}

func TestCosine(t *testing.T) {
	if c := Cosine([]float32{1, 2, 3}, []float32{2, 4, 6}); math.Abs(c-1) > 1e-15 {
		t.Errorf("parallel vectors: cosine %v, want 1", c)
	}
	if c := Cosine([]float32{1, 0}, []float32{0, 3}); c != 0 {
		t.Errorf("orthogonal vectors: cosine %v, want 0", c)
	}
	if c := Cosine([]float32{1, 1}, []float32{-1, -1}); math.Abs(c+1) > 1e-15 {
		t.Errorf("opposite vectors: cosine %v, want -1", c)
	}
}

// TestCheckBlockMap: a row differing in a near tie takes the oracle's
// selection and passes; a row differing with a clear gap fails, as does a
// row selecting the wrong number of blocks.
func TestCheckBlockMap(t *testing.T) {
	want := []int8{1, 0, 0 /**/, 1, 0, 0 /**/, 0, 1, 0}
	scores := []float32{10, 9.999, 0 /**/, 10, 5, 0 /**/, 1, 9, 2}
	got := []int8{0, 1, 0 /**/, 0, 1, 0 /**/, 1, 1, 0}
	r := &recTB{}
	var used []int8
	r.call(func(tb testing.TB) { used = CheckBlockMap(tb, "map", got, want, scores, 3, 1, MapGap) })
	if !slices.Equal(used[:3], want[:3]) || !slices.Equal(used[3:], got[3:]) {
		t.Errorf("used map %v: want the oracle's row 0 and ours elsewhere", used)
	}
	if len(r.errs) != 3 || !strings.Contains(r.errs[0], "row 1: selection differs") ||
		!strings.Contains(r.errs[1], "row 2: 2 key blocks selected") || !strings.Contains(r.errs[2], "row 2: selection differs") {
		t.Errorf("errors %q: want row 1 (clear gap) and row 2 (2 selected, clear gap)", r.errs)
	}
	r = &recTB{}
	r.call(func(tb testing.TB) { CheckBlockMap(tb, "map", want, want, scores, 3, 1, MapGap) })
	if len(r.errs) != 0 || r.fatal != "" {
		t.Errorf("identical maps: errors %q fatal %q", r.errs, r.fatal)
	}
	r = &recTB{}
	r.call(func(tb testing.TB) { CheckBlockMap(tb, "map", want[:6], want, scores, 3, 1, MapGap) })
	if r.fatal == "" {
		t.Error("maps of different lengths: want a failure")
	}
}
