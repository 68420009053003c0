// Package golden locates and opens the conformance set produced by the
// official reference code (../shared/golden, or $TURBODIFFUSION_GOLDEN), so
// every conformance test reads it the same way and runs on any directory of
// the same layout.
package golden

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
)

// EnvVar names the directory of the conformance set.
const EnvVar = "TURBODIFFUSION_GOLDEN"

// Dir returns the conformance directory: $TURBODIFFUSION_GOLDEN, else
// ../shared/golden beside the repository root.
func Dir() string {
	if d := os.Getenv(EnvVar); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	return filepath.Join(root, "..", "shared", "golden")
}

// Path returns the path of a file in the set, skipping the test if the set is
// absent (and failing if the variable was set explicitly but is wrong).
func Path(t testing.TB, name string) string {
	t.Helper()
	return pathIn(t, Dir(), os.Getenv(EnvVar) != "", name)
}

// pathIn is Path for the set in dir; explicit says whether the user named
// dir (then a missing file is an error, not a reason to skip).
func pathIn(t testing.TB, dir string, explicit bool, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if explicit {
			t.Fatalf("conformance set %s (from $%s): %v", dir, EnvVar, err)
		}
		t.Skipf("conformance set not found at %s (set $%s): %v", dir, EnvVar, err)
	}
	return p
}

// Open opens a checkpoint of the set (safetensors or .pth) and closes it
// with the test.
func Open(t testing.TB, name string) checkpoint.File {
	t.Helper()
	f, err := checkpoint.Open(Path(t, name))
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Tensor reads one tensor as float32 with its shape, failing the test if absent.
func Tensor(t testing.TB, f checkpoint.File, name string) ([]float32, []int) {
	t.Helper()
	info, ok := f.Info(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", f.Path(), name)
	}
	v, err := f.Float32(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return v, info.Shape
}

// Manifest is manifest.json, decoded loosely: each test reads what it needs.
type Manifest map[string]any

// LoadManifest reads manifest.json of the set.
func LoadManifest(t testing.TB) Manifest {
	t.Helper()
	b, err := os.ReadFile(Path(t, "manifest.json"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", manifestPath(), err)
	}
	return m
}

// LoadManifestFile reads the manifest at name inside the set, for a part of
// it kept in a subfolder with its own manifest (e.g. "taehv/manifest.json").
func LoadManifestFile(t testing.TB, name string) Manifest {
	t.Helper()
	p := Path(t, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return m
}

// manifestPath names the manifest in messages.
func manifestPath() string { return filepath.Join(Dir(), "manifest.json") }

// RelL2 is ||a-b|| / ||b|| computed in float64.
func RelL2(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// MaxAbs is max |a-b|.
func MaxAbs(a, b []float32) float64 {
	m := 0.0
	for i := range b {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// Cosine is the cosine similarity of a and b, computed in float64.
func Cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// Compare fails the test if rel-L2(got, want) exceeds tol and always logs
// the measured error, so every run documents its distance to the reference.
func Compare(t testing.TB, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference has %d", what, len(got), len(want))
	}
	r := RelL2(got, want)
	t.Logf("%s: rel_l2 %.3e (max abs %.3e, tolerance %.0e)", what, r, MaxAbs(got, want), tol)
	if r > tol || math.IsNaN(r) {
		t.Errorf("%s: rel_l2 %.3e exceeds %.0e", what, r, tol)
	}
}

// Lookup walks nested objects of the manifest, e.g. Lookup("configs",
// "dit", "sla_topk"); ok is false if any step is missing.
func (m Manifest) Lookup(path ...string) (any, bool) {
	var cur any = map[string]any(m)
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Number returns a numeric manifest entry, failing the test if it is absent:
// tests take the set's configuration from the manifest, never from code, so
// they run unchanged on another set of the same layout.
func (m Manifest) Number(t testing.TB, path ...string) float64 {
	t.Helper()
	v, ok := m.Lookup(path...)
	f, isNum := v.(float64)
	if !ok || !isNum {
		t.Fatalf("%s: no number at %v", manifestPath(), path)
	}
	return f
}
