package wan

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/sla"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// goldenRun is one DiT variant of the conformance set.
type goldenRun struct {
	variant string  // tensor prefix in the golden file
	file    string  // golden outputs
	weights string  // checkpoint to load
	opt     Options // how to run it
	tol     float64 // rel-L2 bound for tensors downstream of model-dtype math
}

// SLA runs take top-k and block sizes from the manifest (runGolden).
// Tolerances from the golden README: float32 oracle tensors 1e-4; bf16
// tensors and anything downstream of SLA 2e-2 (with identical block maps).
var goldenRuns = []goldenRun{
	{"fp32_original", "dit_fp32.safetensors", "dit_weights.pth", Options{DType: tensor.F32, Norm: backend.NormDefault}, 1e-4},
	{"fp32_sla", "dit_fp32.safetensors", "dit_weights.safetensors", Options{DType: tensor.F32, Norm: backend.NormDefault, Attention: backend.SLA}, 2e-2},
	{"bf16_original", "dit_bf16.safetensors", "dit_weights.safetensors", Options{DType: tensor.BF16, Norm: backend.NormDefault}, 2e-2},
	{"bf16_sla", "dit_bf16.safetensors", "dit_weights.safetensors", Options{DType: tensor.BF16, Norm: backend.NormDefault, Attention: backend.SLA}, 2e-2},
	{"bf16_original_fastnorm", "dit_bf16.safetensors", "dit_weights.safetensors", Options{DType: tensor.BF16, Norm: backend.NormFast}, 2e-2},
	{"bf16_sla_fastnorm", "dit_bf16.safetensors", "dit_weights.pth", Options{DType: tensor.BF16, Norm: backend.NormFast, Attention: backend.SLA}, 2e-2},
	{"bf16_sla_fastnorm_int8", "dit_int8.safetensors", "dit_int8.pth", Options{DType: tensor.BF16, Norm: backend.NormFast, Attention: backend.SLA, Linear: LinearInt8}, 2e-2},
}

// fp32Always are float32 in every variant (autocast regions), so they get
// the float32 bound even in the bf16 model.
var fp32Always = map[string]bool{"time_embedding": true, "time_projection": true}

func TestGoldenDiT(t *testing.T) {
	for _, run := range goldenRuns {
		t.Run(run.variant, func(t *testing.T) { runGolden(t, run) })
	}
}

// goldenInputs are the DiT inputs shared by every variant.
type goldenInputs struct {
	x     []float32
	shape []int // [C, T, H, W]
	t     float32
	text  []float32
	rows  int
}

func loadInputs(t testing.TB) goldenInputs {
	in := golden.Open(t, "dit_inputs.safetensors")
	x, xs := golden.Tensor(t, in, "x")
	ts, _ := golden.Tensor(t, in, "timestep")
	txt, txs := golden.Tensor(t, in, "text_valid")
	return goldenInputs{x: x, shape: xs[1:], t: ts[0], text: txt, rows: txs[1]}
}

func runGolden(t *testing.T, run goldenRun) {
	if run.opt.Attention != backend.Dense {
		// The SLA geometry is the set's, read from its manifest.
		man := golden.LoadManifest(t)
		run.opt.TopK = man.Number(t, "configs", "dit", "sla_topk")
		run.opt.BlockQ = int(man.Number(t, "configs", "dit", "sla_BLKQ"))
		run.opt.BlockK = int(man.Number(t, "configs", "dit", "sla_BLKK"))
	}
	be := cpuDiT(t)
	ref := golden.Open(t, run.file)
	in := loadInputs(t)
	m, err := Load(be, golden.Open(t, run.weights), run.opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	// The attention geometry is the set's (manifest configs.dit), which the
	// loader must have read from the file (the head width from proj_l).
	man := golden.LoadManifest(t)
	if h, d := man.Int(t, "configs", "dit", "num_heads"), man.Int(t, "configs", "dit", "head_dim"); m.Config.Heads != h || m.Config.HeadDim != d {
		t.Fatalf("%s loaded as %d heads × %d, manifest configs.dit says %d × %d", run.weights, m.Config.Heads, m.Config.HeadDim, h, d)
	}

	// Every golden tensor of this variant except the SLA diagnostics.
	want := map[string]bool{}
	for _, n := range ref.Names() {
		if rest, ok := strings.CutPrefix(n, run.variant+"."); ok && !strings.HasPrefix(rest, "sla.") {
			want[rest] = true
		}
	}
	got := map[string][]float32{}
	var mapErrs []string
	var lastQ []float32 // the query, from its hook to the key hook that follows
	m.Hook = func(name string, x backend.Tensor) {
		if want[name] {
			got[name] = be.Download(x)
		}
		if run.opt.Attention != backend.Dense {
			if layer, ok := strings.CutSuffix(name, ".self_attn.k"); ok {
				var i int
				fmt.Sscanf(layer, "blocks.%d", &i)
				mapErrs = append(mapErrs, checkBlockMap(t, m, ref, run, i, lastQ, be.Download(x))...)
			}
			if strings.HasSuffix(name, ".self_attn.q") {
				lastQ = be.Download(x)
			}
		}
	}
	txt, err := m.EmbedText(in.text, in.rows)
	if err != nil {
		t.Fatal(err)
	}
	defer txt.Free()
	out, err := m.Forward(in.x, in.shape, in.t, txt)
	if err != nil {
		t.Fatal(err)
	}
	got["output"] = out
	for _, e := range mapErrs {
		t.Error(e)
	}

	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g, ok := got[n]
		if !ok {
			t.Errorf("%s.%s: the model exposes no such activation", run.variant, n)
			continue
		}
		w, _ := golden.Tensor(t, ref, run.variant+"."+n)
		tol := run.tol
		if fp32Always[n] {
			tol = 1e-4
		}
		golden.Compare(t, run.variant+"."+n, g, w, tol)
	}
}

// nearTieGap is the relative gap between the k-th and (k+1)-th pooled score
// below which the README lets a row's selection differ from the oracle's.
const nearTieGap = 1e-2

// checkBlockMap computes layer i's SLA block map from the model's q and k,
// compares it with the oracle's, logs every disagreement, and installs the
// map the layer will use: ours, except in near-tie rows, where the oracle's
// row is taken (README: "let the Go code use the oracle's sparse_map in such
// rows"). Disagreements in clear rows are returned as errors.
func checkBlockMap(t *testing.T, m *Model, ref checkpoint.File, run goldenRun, i int, q, k []float32) []string {
	c := m.Config
	g := sla.Geometry{L: len(q) / c.Dim, Heads: c.Heads, D: c.HeadDim, BlockQ: m.Opt.BlockQ, BlockK: m.Opt.BlockK, TopK: m.Opt.TopK}
	ours, err := sla.BlockMap(q, k, g, m.Opt.DType == tensor.BF16)
	if err != nil {
		return []string{err.Error()}
	}
	key := fmt.Sprintf("%s.sla.block.%d.", run.variant, i)
	oracle, _ := golden.Tensor(t, ref, key+"sparse_map")
	scores, _ := golden.Tensor(t, ref, key+"pooled_score")
	if len(oracle) != len(ours) {
		return []string{fmt.Sprintf("block %d: map has %d entries, oracle %d", i, len(ours), len(oracle))}
	}
	kb, kk := g.KBlocks(), g.Selected()
	used := make([]int8, len(ours))
	var errs []string
	differ := 0
	for r := 0; r < len(ours)/kb; r++ {
		row := ours[r*kb : (r+1)*kb]
		same := true
		for j := range row {
			used[r*kb+j] = row[j]
			if row[j] != int8(oracle[r*kb+j]) {
				same = false
			}
		}
		if same {
			continue
		}
		differ++
		gap := relGap(scores[r*kb:(r+1)*kb], kk)
		msg := fmt.Sprintf("%s block %d head %d query block %d: selection differs from the oracle (oracle rel gap k-th vs next %.2e)", run.variant, i, r/g.QBlocks(), r%g.QBlocks(), gap)
		if gap < nearTieGap {
			t.Logf("%s: near tie, using the oracle's row", msg)
			for j := range row {
				used[r*kb+j] = int8(oracle[r*kb+j])
			}
		} else {
			errs = append(errs, msg)
		}
	}
	t.Logf("%s block %d: block map agrees with the oracle in %d of %d rows", run.variant, i, len(ours)/kb-differ, len(ours)/kb)
	if m.BlockMaps == nil {
		m.BlockMaps = map[int][]int8{}
	}
	m.BlockMaps[i] = used
	return errs
}

// relGap is (k-th − (k+1)-th largest score) / max|score| of one row.
func relGap(row []float32, k int) float64 {
	s := append([]float32(nil), row...)
	sort.Slice(s, func(a, b int) bool { return s[a] > s[b] })
	mx := 0.0
	for _, v := range s {
		mx = math.Max(mx, math.Abs(float64(v)))
	}
	if k >= len(s) || mx == 0 {
		return math.Inf(1)
	}
	return float64(s[k-1]-s[k]) / mx
}
