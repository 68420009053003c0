package golden

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Int returns an integer manifest entry, failing the test if it is absent
// or not a whole number.
func (m Manifest) Int(t testing.TB, path ...string) int {
	t.Helper()
	f := m.Number(t, path...)
	if f != math.Trunc(f) {
		t.Fatalf("%s: %v = %v, want an integer", manifestPath(), path, f)
	}
	return int(f)
}

// String returns a string manifest entry, failing the test if it is absent.
func (m Manifest) String(t testing.TB, path ...string) string {
	t.Helper()
	v, ok := m.Lookup(path...)
	s, isStr := v.(string)
	if !ok || !isStr {
		t.Fatalf("%s: no string at %v", manifestPath(), path)
	}
	return s
}

// Ints returns a list of integers (e.g. configs.dit.patch_size), failing the
// test if it is absent or holds anything else.
func (m Manifest) Ints(t testing.TB, path ...string) []int {
	t.Helper()
	v, ok := m.Lookup(path...)
	list, isList := v.([]any)
	if !ok || !isList {
		t.Fatalf("%s: no list at %v", manifestPath(), path)
	}
	out := make([]int, len(list))
	for i, e := range list {
		f, isNum := e.(float64)
		if !isNum || f != math.Trunc(f) {
			t.Fatalf("%s: %v[%d] = %v, want an integer", manifestPath(), path, i, e)
		}
		out[i] = int(f)
	}
	return out
}

// Keys returns the sorted keys of an object (e.g. the rCM runs under
// configs.rcm), so tests iterate over what the set holds.
func (m Manifest) Keys(t testing.TB, path ...string) []string {
	t.Helper()
	v, ok := m.Lookup(path...)
	obj, isObj := v.(map[string]any)
	if !ok || !isObj {
		t.Fatalf("%s: no object at %v", manifestPath(), path)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ArgvNumber reads the numeric value of flag in the recorded command line
// configs.rcm.<run>.argv (e.g. --sigma_max, --sla_topk).
func (m Manifest) ArgvNumber(t testing.TB, run, flag string) float64 {
	t.Helper()
	v, _ := m.Lookup("configs", "rcm", run, "argv")
	argv, _ := v.([]any)
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			var f float64
			if _, err := fmt.Sscan(fmt.Sprint(argv[i+1]), &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("%s: configs.rcm.%s.argv has no numeric %s", manifestPath(), run, flag)
	return 0
}

// ArgvHas reports whether the recorded command line of an rCM run holds flag.
func (m Manifest) ArgvHas(run, flag string) bool {
	v, _ := m.Lookup("configs", "rcm", run, "argv")
	argv, _ := v.([]any)
	for _, a := range argv {
		if a == flag {
			return true
		}
	}
	return false
}

// Numerics are a reference run's settings (configs.<kind>.<run>.dtype,
// attention and norms in the manifest), as the engine's types.
type Numerics struct {
	DType     tensor.DType
	Attention backend.AttentionKind // Dense ("original") or SLA
	Norm      backend.NormMode
}

// RunNumerics reads the numerics of run name of configs.<kind> (rcm, i2v),
// failing the test on a value the engine has no counterpart for.
func (m Manifest) RunNumerics(t testing.TB, kind, name string) Numerics {
	t.Helper()
	return Numerics{
		DType:     runChoice(t, m, kind, name, "dtype", map[string]tensor.DType{"float32": tensor.F32, "bfloat16": tensor.BF16}),
		Attention: runChoice(t, m, kind, name, "attention", map[string]backend.AttentionKind{"original": backend.Dense, "sla": backend.SLA}),
		Norm:      runChoice(t, m, kind, name, "norms", map[string]backend.NormMode{"default": backend.NormDefault, "fast": backend.NormFast}),
	}
}

// runChoice maps the string at configs.<kind>.<name>.<key> through opts,
// failing the test (naming the choices) on any other value.
func runChoice[T any](t testing.TB, m Manifest, kind, name, key string, opts map[string]T) T {
	t.Helper()
	v := m.String(t, "configs", kind, name, key)
	c, ok := opts[v]
	if !ok {
		want := make([]string, 0, len(opts))
		for k := range opts {
			want = append(want, k)
		}
		sort.Strings(want)
		t.Fatalf("manifest configs.%s.%s.%s %q: want one of %s", kind, name, key, v, strings.Join(want, ", "))
	}
	return c
}
