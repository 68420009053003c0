package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TAEHVDir is the subfolder of the set holding the tiny VAE's conformance
// data (manifest.json, cases.safetensors and the weights).
const TAEHVDir = "taehv"

// TAEHVWeights returns the path of the tiny VAE's weights in the set: the
// file named by the first word of taehv/manifest.json's "weights_file" when
// it exists, else the only .pth or .safetensors file of the folder besides
// cases.safetensors (the set may ship the weights in either format).
func TAEHVWeights(t testing.TB) string {
	t.Helper()
	dir := filepath.Dir(Path(t, TAEHVDir+"/manifest.json"))
	m := LoadManifestFile(t, TAEHVDir+"/manifest.json")
	if v, ok := m.Lookup("weights_file"); ok {
		if s, ok := v.(string); ok {
			if f := strings.Fields(s); len(f) > 0 {
				p := filepath.Join(dir, f[0])
				if _, err := os.Stat(p); err == nil {
					return p
				}
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var found []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || n == "cases.safetensors" {
			continue
		}
		if strings.HasSuffix(n, ".pth") || strings.HasSuffix(n, ".safetensors") {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one weights file (.pth or .safetensors besides cases.safetensors), found %v", dir, found)
	}
	return filepath.Join(dir, found[0])
}

// SampleCTHW takes sample n of an NTCHW tensor (the layout taehv.py uses)
// as [C,T,H,W] (the models' layout).
func SampleCTHW(x []float32, shape []int, n int) ([]float32, []int) {
	T, C, H, W := shape[1], shape[2], shape[3], shape[4]
	plane := H * W
	out := make([]float32, C*T*plane)
	for t := 0; t < T; t++ {
		for c := 0; c < C; c++ {
			copy(out[(c*T+t)*plane:(c*T+t+1)*plane], x[((n*T+t)*C+c)*plane:])
		}
	}
	return out, []int{C, T, H, W}
}

// TCHW reorders [C,T,H,W] to [T,C,H,W]: one sample of NTCHW.
func TCHW(x []float32, shape []int) []float32 {
	C, T, plane := shape[0], shape[1], shape[2]*shape[3]
	out := make([]float32, len(x))
	for c := 0; c < C; c++ {
		for t := 0; t < T; t++ {
			copy(out[(t*C+c)*plane:(t*C+c+1)*plane], x[(c*T+t)*plane:(c*T+t+1)*plane])
		}
	}
	return out
}
