package checkpoint_test

import (
	"archive/zip"
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// These tests read the conformance set (files written by torch itself).
// They are an external test package because internal/golden imports
// checkpoint.

func openGolden(t *testing.T, name string) File {
	t.Helper()
	f, err := Open(golden.Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// isFastNormBuffer reports the tensors the README says are float32 in the
// .pth files: the Fast norms' buffers.
func isFastNormBuffer(name string) bool {
	return strings.HasSuffix(name, ".norm_q.weight") || strings.HasSuffix(name, ".norm_k.weight") ||
		strings.Contains(name, ".norm3.")
}

func TestGoldenDitWeightsPthMatchesSafetensors(t *testing.T) {
	pth := openGolden(t, "dit_weights.pth")
	st := openGolden(t, "dit_weights.safetensors")
	if !slices.Equal(pth.Names(), st.Names()) {
		t.Fatalf("key sets differ:\npth %q\nsafetensors %q", pth.Names(), st.Names())
	}
	nF32 := 0
	for _, name := range pth.Names() {
		pi, _ := pth.Info(name)
		si, _ := st.Info(name)
		if !slices.Equal(pi.Shape, si.Shape) {
			t.Errorf("%s: shape %v in pth, %v in safetensors", name, pi.Shape, si.Shape)
		}
		if si.DType != tensor.BF16 {
			t.Errorf("%s: safetensors dtype %v, want bfloat16", name, si.DType)
		}
		want := tensor.BF16
		if isFastNormBuffer(name) {
			want = tensor.F32
			nF32++
		}
		if pi.DType != want {
			t.Errorf("%s: pth dtype %v, want %v", name, pi.DType, want)
		}
		a, err := pth.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := st.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%s: values differ (rel_l2 %.3e)", name, golden.RelL2(a, b))
		}
	}
	// 2 blocks x (self norm_q, norm_k, cross norm_q, norm_k, norm3 weight, bias)
	// Per block: norm_q, norm_k of self- and cross-attention + norm3 weight
	// and bias = 6, times the manifest's layer count.
	if want := 6 * golden.LoadManifest(t).Int(t, "configs", "dit", "num_layers"); nF32 != want {
		t.Errorf("%d float32 norm buffers, want %d", nF32, want)
	}
	t.Logf("%d tensors equal in dit_weights.pth and dit_weights.safetensors (%d float32 norm buffers)", len(pth.Names()), nF32)
}

func TestGoldenDitInt8Pth(t *testing.T) {
	q := openGolden(t, "dit_int8.pth")
	w := openGolden(t, "dit_weights.pth")
	nq, checked, mismatch := 0, 0, 0
	worstGap := 0.0 // distance of a differing code's x*128/amax from a .5 boundary
	for _, name := range w.Names() {
		wi, _ := w.Info(name)
		base, isWeight := strings.CutSuffix(name, ".weight")
		_, hasQ := q.Info(base + ".int8_weight")
		if !isWeight || !hasQ {
			// Everything not quantised is carried over unchanged.
			qi, ok := q.Info(name)
			if !ok {
				t.Errorf("%s: missing from dit_int8.pth", name)
				continue
			}
			if qi.DType != wi.DType || !slices.Equal(qi.Shape, wi.Shape) {
				t.Errorf("%s: %v%v in dit_int8.pth, %v%v in dit_weights.pth", name, qi.DType, qi.Shape, wi.DType, wi.Shape)
			}
			a, _ := q.Float32(name)
			b, _ := w.Float32(name)
			if !slices.Equal(a, b) {
				t.Errorf("%s: values differ between the files", name)
			}
			continue
		}
		nq++
		if !strings.HasPrefix(name, "blocks.") || strings.Contains(name, "proj_l") {
			t.Errorf("%s: quantised, but only Linears inside blocks except proj_l should be", name)
		}
		if _, ok := q.Info(name); ok {
			t.Errorf("%s: still present next to %s.int8_weight", name, base)
		}
		qi, _ := q.Info(base + ".int8_weight")
		if qi.DType != tensor.I8 || !slices.Equal(qi.Shape, wi.Shape) {
			t.Errorf("%s.int8_weight: %v%v, want int8%v", base, qi.DType, qi.Shape, wi.Shape)
		}
		codes, err := q.Int8(base + ".int8_weight")
		if err != nil {
			t.Fatal(err)
		}
		si, ok := q.Info(base + ".scale")
		wantScale := []int{(wi.Shape[0] + 127) / 128, (wi.Shape[1] + 127) / 128}
		if !ok || si.DType != tensor.F32 || !slices.Equal(si.Shape, wantScale) {
			t.Errorf("%s.scale: %v%v (present %v), want float32%v", base, si.DType, si.Shape, ok, wantScale)
			continue
		}
		scale, _ := q.Float32(base + ".scale")
		weight, _ := w.Float32(name)
		_ = weight
		// The codes are the README's quantisation of the weight: per
		// 128x128 tile, q = round_half_even(x * (128/amax)) saturated to
		// [-128, 127], with scale = amax/128.
		cols := wi.Shape[1]
		for i, c := range codes {
			s := scale[(i/cols/128)*wantScale[1]+(i%cols)/128]
			inv := float32(128) / (s * 128)
			want := math.Max(-128, math.Min(127, math.RoundToEven(float64(weight[i]*inv))))
			if d := math.Abs(float64(c) - want); d > 1 {
				t.Fatalf("%s.int8_weight[%d] = %d, quantising %g with scale %g gives %g", base, i, c, weight[i], s, want)
			} else if d != 0 {
				mismatch++
				v := float64(weight[i]) * float64(inv)
				if gap := math.Abs(v - math.Floor(v) - 0.5); gap > worstGap {
					worstGap = gap
				}
			}
		}
		checked += len(codes)
	}
	// The kernel divides approximately (fast math): a code may differ by
	// one where x*128/amax is within rounding of a .5 boundary.
	t.Logf("int8 codes: %d of %d differ by one from exact rounding, all within %.2e of a .5 boundary", mismatch, checked, worstGap)
	if worstGap > 1e-6 { // the manifest's recommended bound for .5-boundary codes
		t.Errorf("an int8 code differs from the quantisation rule %.2e away from a rounding boundary", worstGap)
	}
	// Per block: self q,k,v,o + cross q,k,v,o + ffn.0, ffn.2 = 10, times
	// the manifest's layer count.
	if want := 10 * golden.LoadManifest(t).Int(t, "configs", "dit", "num_layers"); nq != want {
		t.Errorf("%d quantised Linears, want %d", nq, want)
	}
	t.Logf("%d quantised Linears checked, %d tensors in dit_int8.pth", nq, len(q.Names()))
}

// Every safetensors file of the set opens, lists the tensors the manifest
// lists with the same dtype and shape, and every tensor converts.
func TestGoldenSafetensorsMatchManifest(t *testing.T) {
	m := golden.LoadManifest(t)
	files, _ := m["files"].(map[string]any)
	n := 0
	for fname, v := range files {
		entry, _ := v.(map[string]any)
		want, _ := entry["tensors"].(map[string]any)
		if !strings.HasSuffix(fname, ".safetensors") {
			continue
		}
		f := openGolden(t, fname)
		if len(f.Names()) != len(want) {
			t.Errorf("%s: %d tensors, manifest lists %d", fname, len(f.Names()), len(want))
		}
		for name, d := range want {
			desc, _ := d.(map[string]any)
			info, ok := f.Info(name)
			if !ok {
				t.Errorf("%s: no tensor %q", fname, name)
				continue
			}
			if got := info.DType.String(); got != desc["dtype"] {
				t.Errorf("%s: %s: dtype %s, manifest says %v", fname, name, got, desc["dtype"])
			}
			var shape []int
			dims, ok := desc["shape"].([]any)
			if !ok {
				t.Errorf("manifest.json: files.%s.tensors.%s has no shape list", fname, name)
				continue
			}
			for _, s := range dims {
				d, _ := s.(float64)
				shape = append(shape, int(d))
			}
			if !slices.Equal(info.Shape, shape) && !(len(shape) == 0 && len(info.Shape) == 0) {
				t.Errorf("%s: %s: shape %v, manifest says %v", fname, name, info.Shape, shape)
			}
			v, err := f.Float32(name)
			if err != nil {
				t.Errorf("%v", err)
			} else if len(v) != tensor.NumElements(info.Shape) {
				t.Errorf("%s: %s: %d values for shape %v", fname, name, len(v), info.Shape)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("manifest lists no safetensors tensors")
	}
	t.Logf("%d tensors in %d safetensors files match the manifest", n, len(files))
}

// The .pth writer emits, for the same tensors, the pickle torch.save wrote
// for dit_int8.pth, byte for byte, up to where torch appends the
// state_dict's _metadata (which we do not write). Most golden tensors lived
// on cuda:0, so the writer is given torch's location tags.
func TestGoldenPickleMatchesTorch(t *testing.T) {
	for _, name := range []string{"dit_int8.pth", "dit_weights.pth"} {
		t.Run(name, func(t *testing.T) {
			path := golden.Path(t, name)
			f := openGolden(t, name)
			order := Order(f)
			var ts []Tensor
			for _, n := range order {
				info, _ := f.Info(n)
				raw, err := f.Raw(n)
				if err != nil {
					t.Fatal(err)
				}
				ts = append(ts, Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: raw})
			}
			if Format(f) != "torch.save zip (.pth)" {
				t.Skipf("%s is %s in this set, not a file torch.save wrote", name, Format(f))
			}
			theirs := zipEntry(t, path, "/data.pkl")
			locs, err := StorageLocations(theirs)
			if err != nil || len(locs) != len(ts) {
				t.Fatalf("locations of torch's pickle: %d for %d tensors, %v", len(locs), len(ts), err)
			}
			mine := EncodeStateDictAt(ts, locs)
			// torch: ... SETITEMS, then the _metadata BUILD; ours: ... SETITEMS STOP.
			body := mine[:len(mine)-1]
			if !bytes.HasPrefix(theirs, body) {
				i := 0
				for i < len(body) && i < len(theirs) && body[i] == theirs[i] {
					i++
				}
				t.Fatalf("pickles differ at byte %d of %d: ours %q, torch %q", i, len(body), body[i:min(i+32, len(body))], theirs[i:min(i+32, len(theirs))])
			}
			rest := theirs[len(body):]
			if len(rest) == 0 || rest[0] != '}' || rest[len(rest)-2] != 'b' || rest[len(rest)-1] != '.' {
				t.Errorf("torch's pickle continues %q...%q, expected the _metadata BUILD", rest[:min(8, len(rest))], rest[max(0, len(rest)-8):])
			}
			t.Logf("%s: our %d-byte pickle equals the first %d bytes of torch's (%d more bytes are _metadata)", name, len(mine), len(body), len(rest))

			// And the whole archive reads back to the same tensors.
			out := filepath.Join(t.TempDir(), name)
			if err := WritePth(out, ts); err != nil {
				t.Fatal(err)
			}
			g, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if !slices.Equal(Order(g), order) {
				t.Errorf("order not preserved")
			}
			for _, tt := range ts {
				raw, err := g.Raw(tt.Name)
				if err != nil || !bytes.Equal(raw, tt.Data) {
					t.Errorf("%s: bytes differ after rewrite (%v)", tt.Name, err)
				}
			}
		})
	}
}

// zipEntry returns the stored bytes of the archive member whose name ends in
// suffix (torch names the top folder after the file it saved to, which
// need not be the set's file name).
func zipEntry(t *testing.T, path, suffix string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, suffix) {
			off, err := f.DataOffset()
			if err != nil {
				t.Fatal(err)
			}
			return data[off : off+int64(f.UncompressedSize64)]
		}
	}
	t.Fatalf("%s: no entry *%s", path, suffix)
	return nil
}

// TestPickleBudget: real state-dict pickles stay far inside the budget
// (torch's own and ours; the largest release, 14B, has 1,200 tensors).
func TestPickleBudget(t *testing.T) {
	for _, name := range []string{"dit_weights.pth", "dit_int8.pth"} {
		path := golden.Path(t, name)
		f := openGolden(t, name)
		if Format(f) != "torch.save zip (.pth)" {
			t.Skipf("%s is %s in this set", name, Format(f))
		}
		pkl := zipEntry(t, path, "/data.pkl")
		cost, err := PickleCost(pkl)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d-byte pickle uses %d bytes of budget (%.2f per byte, limit %d)", name, len(pkl), cost, float64(cost)/float64(len(pkl)), PickleBudgetPerByte)
		if float64(cost) > PickleBudgetPerByte/4*float64(len(pkl)) {
			t.Errorf("%s: a real pickle uses %.2f bytes of budget per byte, more than a quarter of the %d allowed", name, float64(cost)/float64(len(pkl)), PickleBudgetPerByte)
		}
	}
}
