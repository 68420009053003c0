package wan

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The tiny model of these tests: testmodels.WriteWanT2V (dim 128, FFN 256,
// one block, text width 64, SLA proj_l present).
const loraTextDim = 64

func tinyDiTFiles(t *testing.T) (bf16Path, quantPath string) {
	t.Helper()
	dir := t.TempDir()
	bf16Path = filepath.Join(dir, "dit.safetensors")
	if err := testmodels.WriteWanT2V(bf16Path, loraTextDim, 11); err != nil {
		t.Fatal(err)
	}
	f := openFile(t, bf16Path)
	quantPath = filepath.Join(dir, "dit-quant.pth")
	if err := quant.QuantizeCheckpoint(f, quantPath); err != nil {
		t.Fatal(err)
	}
	return bf16Path, quantPath
}

func openFile(t *testing.T, path string) checkpoint.File {
	t.Helper()
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// loraTensor is one tensor of a synthetic LoRA file (float32).
type loraTensor struct {
	name  string
	shape []int
	v     []float32
}

func writeLoRAFile(t *testing.T, name string, ts []loraTensor) string {
	t.Helper()
	var cts []checkpoint.Tensor
	for _, x := range ts {
		b := make([]byte, 0, 4*len(x.v))
		for _, v := range x.v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		cts = append(cts, checkpoint.Tensor{Name: x.name, DType: tensor.F32, Shape: x.shape, Data: b})
	}
	path := filepath.Join(t.TempDir(), name)
	var err error
	if strings.HasSuffix(name, ".pth") {
		err = checkpoint.WritePth(path, cts)
	} else {
		err = checkpoint.WriteSafetensors(path, cts)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func normals(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

// loraCase is one synthetic LoRA: its keys and, per Wan parameter, the
// exact float64 delta (before the strength) it stands for.
type loraCase struct {
	name   string
	file   string
	ts     []loraTensor
	deltas map[string][]float64
}

// lowRankDelta is B·A·k in float64 for A [r, in], B [out, r].
func lowRankDelta(A, B []float32, out, in, r int, k float64) []float64 {
	d := make([]float64, out*in)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			var s float64
			for j := 0; j < r; j++ {
				s += float64(B[o*r+j]) * float64(A[j*in+i])
			}
			d[o*in+i] = s * k
		}
	}
	return d
}

func asF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// loraCases builds one LoRA per naming over the tiny model's modules. The
// deltas are about as large as the weights, so the merge is visible.
func loraCases(seed uint64) []loraCase {
	r := rand.New(rand.NewPCG(seed, 99))
	const D, F, rank = 128, 256, 8
	pair := func(out, in int) (A, B []float32) {
		return normals(r, rank*in, 0.3), normals(r, out*rank, 0.3/math.Sqrt(rank))
	}
	qA, qB := pair(D, D)
	fA, fB := pair(F, D)
	oA, oB := pair(D, D)
	tA, tB := pair(D, loraTextDim)
	hA, hB := pair(64, D)
	f2A, f2B := pair(D, F)
	bias := normals(r, F, 0.05)
	norm := normals(r, D, 0.05)
	mod := normals(r, 6*D, 0.05)
	var cases []loraCase
	cases = append(cases, loraCase{name: "peft", file: "peft.safetensors", ts: []loraTensor{
		{"diffusion_model.blocks.0.self_attn.q.lora_A.weight", []int{rank, D}, qA},
		{"diffusion_model.blocks.0.self_attn.q.lora_B.weight", []int{D, rank}, qB},
		{"diffusion_model.blocks.0.ffn.0.lora_A.weight", []int{rank, D}, fA},
		{"diffusion_model.blocks.0.ffn.0.lora_B.weight", []int{F, rank}, fB},
		{"diffusion_model.blocks.0.ffn.0.diff_b", []int{F}, bias},
		{"diffusion_model.text_embedding.0.lora_A.weight", []int{rank, loraTextDim}, tA},
		{"diffusion_model.text_embedding.0.lora_B.weight", []int{D, rank}, tB},
	}, deltas: map[string][]float64{
		"blocks.0.self_attn.q.weight": lowRankDelta(qA, qB, D, D, rank, 1),
		"blocks.0.ffn.0.weight":       lowRankDelta(fA, fB, F, D, rank, 1),
		"blocks.0.ffn.0.bias":         asF64(bias),
		"text_embedding.0.weight":     lowRankDelta(tA, tB, D, loraTextDim, rank, 1),
	}})
	cases = append(cases, loraCase{name: "kohya", file: "kohya.pth", ts: []loraTensor{
		{"lora_unet_blocks_0_cross_attn_o.lora_down.weight", []int{rank, D}, oA},
		{"lora_unet_blocks_0_cross_attn_o.lora_up.weight", []int{D, rank}, oB},
		{"lora_unet_blocks_0_cross_attn_o.alpha", []int{}, []float32{4}},
		{"lora_unet_blocks_0_ffn_2.lora_down.weight", []int{rank, F}, f2A},
		{"lora_unet_blocks_0_ffn_2.lora_up.weight", []int{D, rank}, f2B},
		{"lora_unet_head_head.lora_down.weight", []int{rank, D}, hA},
		{"lora_unet_head_head.lora_up.weight", []int{64, rank}, hB},
	}, deltas: map[string][]float64{
		"blocks.0.cross_attn.o.weight": lowRankDelta(oA, oB, D, D, rank, 4.0/rank),
		"blocks.0.ffn.2.weight":        lowRankDelta(f2A, f2B, D, F, rank, 1),
		"head.head.weight":             lowRankDelta(hA, hB, 64, D, rank, 1),
	}})
	cases = append(cases, loraCase{name: "diffusers", file: "diffusers.safetensors", ts: []loraTensor{
		{"transformer.blocks.0.attn1.to_q.lora_A.weight", []int{rank, D}, qA},
		{"transformer.blocks.0.attn1.to_q.lora_B.weight", []int{D, rank}, qB},
		{"transformer.blocks.0.attn2.to_out.0.lora_A.weight", []int{rank, D}, oA},
		{"transformer.blocks.0.attn2.to_out.0.lora_B.weight", []int{D, rank}, oB},
		{"transformer.blocks.0.ffn.net.0.proj.lora_A.weight", []int{rank, D}, fA},
		{"transformer.blocks.0.ffn.net.0.proj.lora_B.weight", []int{F, rank}, fB},
		{"transformer.blocks.0.ffn.net.0.proj.lora_B.bias", []int{F}, bias},
		{"transformer.blocks.0.norm2.diff", []int{D}, norm},
		{"transformer.condition_embedder.text_embedder.linear_1.lora_A.weight", []int{rank, loraTextDim}, tA},
		{"transformer.condition_embedder.text_embedder.linear_1.lora_B.weight", []int{D, rank}, tB},
		{"transformer.proj_out.lora_A.weight", []int{rank, D}, hA},
		{"transformer.proj_out.lora_B.weight", []int{64, rank}, hB},
	}, deltas: map[string][]float64{
		"blocks.0.self_attn.q.weight":  lowRankDelta(qA, qB, D, D, rank, 1),
		"blocks.0.cross_attn.o.weight": lowRankDelta(oA, oB, D, D, rank, 1),
		"blocks.0.ffn.0.weight":        lowRankDelta(fA, fB, F, D, rank, 1),
		"blocks.0.ffn.0.bias":          asF64(bias),
		"blocks.0.norm3.weight":        asF64(norm),
		"text_embedding.0.weight":      lowRankDelta(tA, tB, D, loraTextDim, rank, 1),
		"head.head.weight":             lowRankDelta(hA, hB, 64, D, rank, 1),
	}})
	full := normals(r, D*D, 0.02)
	cases = append(cases, loraCase{name: "diff", file: "diff.safetensors", ts: []loraTensor{
		{"diffusion_model.blocks.0.self_attn.k.diff", []int{D, D}, full},
		{"diffusion_model.blocks.0.self_attn.k.diff_b", []int{D}, norm},
		{"diffusion_model.blocks.0.modulation.diff", []int{1, 6, D}, mod},
		{"diffusion_model.blocks.0.self_attn.norm_k.diff", []int{D}, norm},
	}, deltas: map[string][]float64{
		"blocks.0.self_attn.k.weight":      asF64(full),
		"blocks.0.self_attn.k.bias":        asF64(norm),
		"blocks.0.modulation":              asF64(mod),
		"blocks.0.self_attn.norm_k.weight": asF64(norm),
	}})
	return cases
}

// weights downloads every parameter of m by name (int8 codes as floats,
// scales under <name>#scale).
func weights(t *testing.T, m *Model) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range m.params() {
		c := cpu.T(*p.dst)
		if p.scale != nil {
			codes := make([]float32, len(c.I))
			for i, q := range c.I {
				codes[i] = float32(q)
			}
			out[p.name] = codes
			out[p.name+"#scale"] = append([]float32(nil), cpu.T(*p.scale).F...)
			continue
		}
		out[p.name] = append([]float32(nil), c.F...)
	}
	return out
}

func loadWithLoRA(t *testing.T, f checkpoint.File, opt Options, specs ...lora.Spec) *Model {
	t.Helper()
	for _, s := range specs {
		a, err := lora.Open(s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		opt.LoRA = append(opt.LoRA, a)
	}
	m, err := Load(cpu.New(), f, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// checkRounded asserts got (bf16 values) is exact rounded to bf16, except
// where exact lies within float32 rounding of a tie between two bf16
// values; it returns how many such near-ties it met.
func checkRounded(t *testing.T, what string, got []float32, exact []float64) int {
	t.Helper()
	ties := 0
	for i := range got {
		want := tensor.RoundBF16(float32(exact[i]))
		if got[i] == want {
			continue
		}
		mid := (float64(got[i]) + float64(want)) / 2
		// exact rounds to want, so it is within half a bf16 step of it; it
		// can be this close to the midpoint only if got is want's neighbour.
		if math.Abs(exact[i]-mid) > 1e-6*(1+math.Abs(exact[i])) {
			t.Fatalf("%s[%d]: merged %v, float64 %v rounds to %v", what, i, got[i], exact[i], want)
		}
		ties++
	}
	return ties
}

// TestLoRAMergeAtLoad: every naming's LoRA merged at load gives each
// touched weight W + s·ΔW computed in float64 and rounded once to bf16
// (float32 weights: within float32 rounding), leaves every other weight
// untouched, and a LoRA of strength 0 changes nothing.
func TestLoRAMergeAtLoad(t *testing.T) {
	bf16Path, _ := tinyDiTFiles(t)
	f := openFile(t, bf16Path)
	base := weights(t, loadWithLoRA(t, f, Options{Attention: backend.SLA}))
	const strength = 0.8
	for _, c := range loraCases(1) {
		t.Run(c.name, func(t *testing.T) {
			path := writeLoRAFile(t, c.file, c.ts)
			got := weights(t, loadWithLoRA(t, f, Options{Attention: backend.SLA}, lora.Spec{Path: path, Scale: strength}))
			ties, n := 0, 0
			for name, w := range got {
				d, touched := c.deltas[name]
				if !touched {
					if !slices.Equal(w, base[name]) {
						t.Errorf("%s changed but the LoRA does not touch it", name)
					}
					continue
				}
				orig, err := f.Float32(name)
				if err != nil {
					t.Fatal(err)
				}
				exact := make([]float64, len(orig))
				for i := range orig {
					exact[i] = float64(orig[i]) + strength*d[i]
				}
				if strings.Contains(name, "norm") || strings.HasSuffix(name, "modulation") {
					// float32 parameters: no bf16 rounding.
					for i := range w {
						if !(math.Abs(float64(w[i])-exact[i]) <= 1e-6*(1+math.Abs(exact[i]))) { // NaN fails too
							t.Fatalf("%s[%d]: %v, float64 %v", name, i, w[i], exact[i])
						}
					}
				} else {
					ties += checkRounded(t, name, w, exact)
				}
				n += len(w)
				if slices.Equal(w, base[name]) {
					t.Errorf("%s: the merge changed nothing", name)
				}
			}
			if len(c.deltas) != countTouched(got, base) {
				t.Errorf("%d parameters changed, want %d", countTouched(got, base), len(c.deltas))
			}
			t.Logf("%d merged values, %d at float32-level ties of the bf16 rounding", n, ties)
			if ties > n/1000+1 {
				t.Errorf("%d near-ties of %d values: more than rounding explains", ties, n)
			}
			zero := weights(t, loadWithLoRA(t, f, Options{Attention: backend.SLA}, lora.Spec{Path: path, Scale: 0}))
			if countTouched(zero, base) != 0 {
				t.Errorf("strength 0 changed %d parameters", countTouched(zero, base))
			}
		})
	}
}

func countTouched(a, b map[string][]float32) int {
	n := 0
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			n++
		}
	}
	return n
}

// TestLoRAMergeQuantized: on a -quant checkpoint a touched Linear gets
// exactly the codes and scales quant.Quantize gives for the merged bf16
// weight bf16(code·scale + s·ΔW), and that merged weight is W + s·ΔW in
// float64 rounded once to bf16; untouched Linears keep the file's codes.
func TestLoRAMergeQuantized(t *testing.T) {
	_, quantPath := tinyDiTFiles(t)
	f := openFile(t, quantPath)
	const strength = 1.25
	for _, c := range loraCases(2) {
		t.Run(c.name, func(t *testing.T) {
			path := writeLoRAFile(t, c.file, c.ts)
			got := weights(t, loadWithLoRA(t, f, Options{Attention: backend.SageSLA}, lora.Spec{Path: path, Scale: strength}))
			checked := 0
			for _, lin := range blockLinears {
				name := "blocks.0." + lin + ".weight"
				base := "blocks.0." + lin
				codes, err := f.Int8(base + ".int8_weight")
				if err != nil {
					t.Fatal(err)
				}
				scales, _ := f.Float32(base + ".scale")
				info, _ := f.Info(base + ".int8_weight")
				n, k := info.Shape[0], info.Shape[1]
				d, touched := c.deltas[name]
				if !touched {
					for i, q := range codes {
						if got[name][i] != float32(q) {
							t.Fatalf("%s: code %d changed but the LoRA does not touch it", name, i)
						}
					}
					continue
				}
				// code · scale of its 128×128 tile, written out here rather
				// than with Dequantize (the code under test).
				deq := make([]float32, n*k)
				for r := 0; r < n; r++ {
					for col := 0; col < k; col++ {
						deq[r*k+col] = float32(codes[r*k+col]) * scales[(r/128)*((k+127)/128)+col/128]
					}
				}
				exact := make([]float64, len(deq))
				merged := make([]float32, len(deq))
				for i := range deq {
					exact[i] = float64(deq[i]) + strength*d[i]
					merged[i] = tensor.RoundBF16(float32(exact[i]))
				}
				wq, ws, err := quant.Quantize(merged, n, k)
				if err != nil {
					t.Fatal(err)
				}
				// The model quantises its own float32 merge; where that and
				// the float64 merge round to different bf16 values (ties),
				// the codes may differ there: compare the model's codes with
				// quantising its merged weight, recomputed here.
				own := append([]float32(nil), deq...)
				ownDelta, err := deltaOf(t, f, path, strength, name, info.Shape)
				if err != nil {
					t.Fatal(err)
				}
				for i := range own {
					own[i] = tensor.RoundBF16(own[i] + ownDelta[i])
				}
				ties := checkRounded(t, name+" (merged bf16)", own, exact)
				oq, os, _ := quant.Quantize(own, n, k)
				for i := range oq {
					if got[name][i] != float32(oq[i]) {
						t.Fatalf("%s: code %d = %v, quantising the merged weight gives %d", name, i, got[name][i], oq[i])
					}
				}
				if !slices.Equal(got[name+"#scale"], os) {
					t.Fatalf("%s: scales differ from quantising the merged weight", name)
				}
				if ties == 0 && (!slices.Equal(os, ws) || !equalCodes(oq, wq)) {
					t.Errorf("%s: without ties, quantising the float64 merge should give the same codes", name)
				}
				checked++
			}
			if checked == 0 && c.name != "diff" {
				t.Error("no quantised Linear was touched")
			}
		})
	}
}

func equalCodes(a, b []int8) bool { return slices.Equal(a, b) }

// deltaOf is the float32 delta the lora package computes for one param.
func deltaOf(t *testing.T, f checkpoint.File, path string, strength float64, name string, shape []int) ([]float32, error) {
	t.Helper()
	a, err := lora.Open(lora.Spec{Path: path, Scale: strength})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	m := &Model{}
	fi, err := DetectConfig(f)
	if err != nil {
		return nil, err
	}
	m.Config, m.Info, m.Opt = fi.Config, fi, Options{Attention: backend.SageSLA, DType: tensor.BF16}
	m.blocks = make([]block, fi.Config.Layers)
	s, _, err := lora.Bind(loraTarget(f, m.params()), []*lora.Adapter{a}, false)
	if err != nil {
		return nil, err
	}
	return s.Delta(name, shape)
}

// TestSetLoRARestores: merging into a loaded model gives the weights a
// load with that LoRA gives, and removing it gives back the weights Load
// made, bit for bit (bf16 and -quant checkpoints, float32 model too); a
// second SetLoRA replaces the first; the forward output is restored.
func TestSetLoRARestores(t *testing.T) {
	bf16Path, quantPath := tinyDiTFiles(t)
	cases := loraCases(3)
	for _, tc := range []struct {
		name string
		path string
		opt  Options
	}{
		{"bf16", bf16Path, Options{Attention: backend.SLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
		{"f32", bf16Path, Options{DType: tensor.F32}},
		{"quant", quantPath, Options{Attention: backend.SageSLA, TopK: 0.5, BlockQ: 4, BlockK: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := openFile(t, tc.path)
			m := loadWithLoRA(t, f, tc.opt)
			orig := weights(t, m)
			out0 := tinyForward(t, m)
			pA := writeLoRAFile(t, cases[0].file, cases[0].ts)
			pB := writeLoRAFile(t, cases[2].file, cases[2].ts)
			for _, specs := range [][]lora.Spec{{{Path: pA, Scale: 0.5}}, {{Path: pB, Scale: 1}, {Path: pA, Scale: -0.25}}} {
				var as []*lora.Adapter
				for _, s := range specs {
					a, err := lora.Open(s)
					if err != nil {
						t.Fatal(err)
					}
					defer a.Close()
					as = append(as, a)
				}
				if _, err := m.SetLoRA(f, as); err != nil {
					t.Fatal(err)
				}
				want := weights(t, loadWithLoRA(t, f, tc.opt, specs...))
				if n := countTouched(weights(t, m), want); n != 0 {
					t.Fatalf("%v: %d parameters differ from loading with the LoRA", specs, n)
				}
				if len(m.LoRAParams()) == 0 {
					t.Error("LoRAParams is empty after SetLoRA")
				}
			}
			if _, err := m.SetLoRA(f, nil); err != nil {
				t.Fatal(err)
			}
			if n := countTouched(weights(t, m), orig); n != 0 {
				t.Fatalf("%d parameters differ from the original after restoring", n)
			}
			if out := tinyForward(t, m); !slices.Equal(out, out0) {
				t.Error("forward output differs after restoring")
			}
			if len(m.LoRAParams()) != 0 {
				t.Errorf("LoRAParams %v after restoring", m.LoRAParams())
			}
		})
	}
}

// TestSetLoRAKeepsLoadTimeLoRA: a request LoRA stacks on the load-time one
// and removing it leaves the load-time merge.
func TestSetLoRAKeepsLoadTimeLoRA(t *testing.T) {
	bf16Path, _ := tinyDiTFiles(t)
	f := openFile(t, bf16Path)
	cases := loraCases(4)
	// The request LoRA (diffusers) touches modules of the load-time one
	// (kohya: cross_attn.o, head.head) as well as others.
	pA := writeLoRAFile(t, cases[1].file, cases[1].ts)
	pB := writeLoRAFile(t, cases[2].file, cases[2].ts)
	m := loadWithLoRA(t, f, Options{}, lora.Spec{Path: pA, Scale: 1})
	loaded := weights(t, m)
	b, err := lora.Open(lora.Spec{Path: pB, Scale: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := m.SetLoRA(f, []*lora.Adapter{b}); err != nil {
		t.Fatal(err)
	}
	both := weights(t, loadWithLoRA(t, f, Options{}, lora.Spec{Path: pA, Scale: 1}, lora.Spec{Path: pB, Scale: 1}))
	if n := countTouched(weights(t, m), both); n != 0 {
		t.Fatalf("%d parameters differ from loading with both", n)
	}
	if _, err := m.SetLoRA(f, nil); err != nil {
		t.Fatal(err)
	}
	if n := countTouched(weights(t, m), loaded); n != 0 {
		t.Fatalf("%d parameters differ from the load-time merge", n)
	}
	// Another checkpoint layout is refused before anything changes.
	_, quantPath := tinyDiTFiles(t)
	// (The adapter does not bind to the quantised layout either: only the
	// layout error's own words show the layout check refused it.)
	if _, err := m.SetLoRA(openFile(t, quantPath), []*lora.Adapter{b}); err == nil || !strings.Contains(err.Error(), quantPath) || !strings.Contains(err.Error(), "the model was loaded from") {
		t.Errorf("SetLoRA with a checkpoint of another layout: %v, want the layout mismatch named", err)
	}
	if n := countTouched(weights(t, m), loaded); n != 0 {
		t.Errorf("%d parameters changed by the refused SetLoRA", n)
	}
}

func tinyForward(t *testing.T, m *Model) []float32 {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 5))
	txt, err := m.EmbedText(normals(r, 3*loraTextDim, 1), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer txt.Free()
	shape := []int{16, 2, 4, 4}
	out, err := m.Forward(normals(r, 16*2*4*4, 1), shape, 500, txt)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLoRAUnknownKeysAtLoad: Load names every key that matches nothing,
// or, lenient, loads and lists them as warnings.
func TestLoRAUnknownKeysAtLoad(t *testing.T) {
	bf16Path, _ := tinyDiTFiles(t)
	f := openFile(t, bf16Path)
	r := rand.New(rand.NewPCG(6, 6))
	path := writeLoRAFile(t, "other.safetensors", []loraTensor{
		{"diffusion_model.blocks.0.self_attn.q.lora_A.weight", []int{4, 128}, normals(r, 512, 0.1)},
		{"diffusion_model.blocks.0.self_attn.q.lora_B.weight", []int{128, 4}, normals(r, 512, 0.1)},
		{"diffusion_model.blocks.5.ffn.2.lora_A.weight", []int{4, 256}, normals(r, 1024, 0.1)},
		{"diffusion_model.blocks.5.ffn.2.lora_B.weight", []int{128, 4}, normals(r, 512, 0.1)},
		{"diffusion_model.img_emb.proj.1.lora_A.weight", []int{4, 128}, normals(r, 512, 0.1)},
	})
	a, err := lora.Open(lora.Spec{Path: path, Scale: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = Load(cpu.New(), f, Options{LoRA: []*lora.Adapter{a}})
	var uk *lora.UnknownKeysError
	if !errors.As(err, &uk) || len(uk.Keys) != 3 {
		t.Fatalf("want 3 unknown keys, got %v", err)
	}
	for _, k := range []string{"blocks.5.ffn.2.lora_A.weight", "blocks.5.ffn.2.lora_B.weight", "img_emb.proj.1.lora_A.weight"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error does not name %s", k)
		}
	}
	m, err := Load(cpu.New(), f, Options{LoRA: []*lora.Adapter{a}, LoRALenient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if len(m.LoRAWarnings) != 1 || !strings.Contains(m.LoRAWarnings[0], "3 LoRA key(s)") {
		t.Errorf("warnings %v", m.LoRAWarnings)
	}
	if got := m.LoRAParams(); !slices.Equal(got, []string{"blocks.0.self_attn.q.weight"}) {
		t.Errorf("merged %v", got)
	}
	// proj_l exists in the file but a dense model does not load it.
	pl := writeLoRAFile(t, "projl.safetensors", []loraTensor{
		{"blocks.0.self_attn.attn_op.local_attn.proj_l.diff_b", []int{128}, normals(r, 128, 0.1)},
	})
	b, _ := lora.Open(lora.Spec{Path: pl, Scale: 1})
	defer b.Close()
	if _, err := Load(cpu.New(), f, Options{Attention: backend.Dense, LoRA: []*lora.Adapter{b}}); err == nil || !strings.Contains(err.Error(), "proj_l") {
		t.Errorf("a proj_l LoRA on a dense model: %v", err)
	}
	m2, err := Load(cpu.New(), f, Options{Attention: backend.SLA, LoRA: []*lora.Adapter{b}})
	if err != nil {
		t.Fatalf("a proj_l LoRA on an SLA model: %v", err)
	}
	m2.Free()
}
