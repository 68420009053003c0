package golden

import (
	"fmt"
	"math"
	"sort"
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
	var n Numerics
	str := func(k string) string { return m.String(t, "configs", kind, name, k) }
	switch dt := str("dtype"); dt {
	case "float32":
		n.DType = tensor.F32
	case "bfloat16":
		n.DType = tensor.BF16
	default:
		t.Fatalf("manifest configs.%s.%s.dtype %q: want float32 or bfloat16", kind, name, dt)
	}
	switch a := str("attention"); a {
	case "original":
		n.Attention = backend.Dense
	case "sla":
		n.Attention = backend.SLA
	default:
		t.Fatalf("manifest configs.%s.%s.attention %q: want original or sla", kind, name, a)
	}
	switch nm := str("norms"); nm {
	case "default":
		n.Norm = backend.NormDefault
	case "fast":
		n.Norm = backend.NormFast
	default:
		t.Fatalf("manifest configs.%s.%s.norms %q: want default or fast", kind, name, nm)
	}
	return n
}
