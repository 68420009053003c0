package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

type benchFlags struct {
	parts               string
	model               string
	frames, h, w, iters int
	jsonOut             string
	profile             bool
	exactRounding       bool
	quant               bool
	attnKernels         string
	attnWarmMS          float64
	offload             bool
	attention           string
	topk                float64
	device              string
}

func init() {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the CUDA backend: attention, GEMM, fused ops and a DiT forward on random weights",
		Long: "Times on the GPU with CUDA events (median of several runs after warm-up), on random inputs and\n" +
			"random weights of a real model configuration. Compare with PyTorch via scripts/bench_torch.py.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.OutOrStdout(), f) },
	}
	cmd.Flags().StringVar(&f.device, "device", "auto", "auto or cuda (the microbenchmarks time CUDA kernels; for the CPU backend use `bench e2e --device cpu` or `go test -bench`)")
	cmd.Flags().StringVar(&f.parts, "parts", "attention,gemm,ops,dit", "comma-separated: attention, gemm, ops, dit")
	cmd.Flags().StringVar(&f.model, "model", "Wan2.1-T2V-1.3B", "DiT configuration for the forward benchmark")
	cmd.Flags().IntVar(&f.frames, "frames", 81, "video frames (latent frames = (frames-1)/4+1)")
	cmd.Flags().IntVar(&f.h, "height", 480, "video height in pixels")
	cmd.Flags().IntVar(&f.w, "width", 832, "video width in pixels")
	cmd.Flags().IntVar(&f.iters, "iters", 10, "timed runs per microbenchmark")
	cmd.Flags().StringVar(&f.jsonOut, "json", "", "also write the results as JSON to this file")
	cmd.Flags().BoolVar(&f.profile, "profile", false, "print the GPU time of every kernel of one DiT forward")
	cmd.Flags().BoolVar(&f.quant, "quant", false, "DiT forward with W8A8 int8 block Linears (the random weights quantised as `quantize` does, via a temporary file)")
	cmd.Flags().BoolVar(&f.exactRounding, "exact-rounding", false, "DiT forward without fusions that skip a bf16 rounding (the baseline of those fusions)")
	cmd.Flags().BoolVar(&f.offload, "offload", false, "DiT forward with the blocks' Linear weights streamed from host memory (--offload)")
	cmd.Flags().StringVar(&f.attnKernels, "attention-kernels", "", "comma-separated attention kernels to time (mma, wgmma:<variant>); empty: mma and every wgmma variant")
	cmd.Flags().StringVar(&f.attention, "attention", "dense", "self-attention of the DiT forward: dense, sla or sagesla")
	cmd.Flags().Float64Var(&f.topk, "topk", 0.1, "SLA/SageSLA fraction of key blocks kept in the DiT forward")
	cmd.Flags().Float64Var(&f.attnWarmMS, "attention-warmup-ms", 0, "run each attention kernel about this long before timing it, so every kernel is timed at the card's power-capped steady clock (0: two warm-up runs)")
	root.AddCommand(cmd)
}

// benchResult is one measured line.
type benchResult struct {
	Name    string  `json:"name"`
	MS      float64 `json:"ms_median"`
	MSMin   float64 `json:"ms_min"`
	TFLOPS  float64 `json:"tflops,omitempty"`
	GBs     float64 `json:"gb_s,omitempty"`
	PeakGiB float64 `json:"peak_gib,omitempty"`
	// EstGiB is the memory planner's estimate of PeakGiB (memplan).
	EstGiB float64 `json:"estimate_gib,omitempty"`
	Note   string  `json:"note,omitempty"`
}

func runBench(w io.Writer, f *benchFlags) (err error) {
	switch f.device {
	case "", "auto", "cuda":
	case "cpu":
		return fmt.Errorf("--device cpu: the microbenchmarks time CUDA kernels; time the CPU backend with `bench e2e --device cpu` or `go test -bench . ./backend/cpu ./models/wan`")
	default:
		return fmt.Errorf("--device %q: choose auto or cuda", f.device)
	}
	attn, err := pipeline.ParseAttention(f.attention)
	if err != nil {
		return flagError(err)
	}
	if attn != backend.Dense {
		if err := pipeline.CheckTopK(f.topk); err != nil {
			return pipeline.Rename(err, func(string) string { return "--topk" })
		}
	}
	b, err := cuda.Open()
	if err != nil {
		// auto picks the GPU when there is one; without one there is
		// nothing this command can time.
		return fmt.Errorf("--device %s: no usable GPU (%w); the microbenchmarks time CUDA kernels: time the CPU backend with `bench e2e --device cpu` or `go test -bench`", f.device, err)
	}
	defer backend.Recover(&err)
	inf := b.Info()
	fmt.Fprintf(w, "device: %s (%s, %d SMs), driver %d, NVRTC %s, cuBLASLt %d, %s\n", inf.Name, inf.Arch, inf.SMs,
		inf.DriverVersion, inf.NVRTCVersion, inf.CublasLtVer, time.Now().UTC().Format(time.RFC3339))
	if _, _, err := b.Preload(); err != nil {
		return err
	}
	fmt.Fprintf(w, "attention kernel: %s\n", b.AttentionKernel())
	fmt.Fprintf(w, "SLA linear branch: %s\n", b.SLALinearKernel())
	latT := (f.frames-1)/4 + 1
	Hp, Wp := f.h/16, f.w/16
	L := latT * Hp * Wp
	cfg, err := wan.Preset(f.model)
	if err != nil {
		return err
	}
	var res []benchResult
	add := func(r benchResult) {
		res = append(res, r)
		extra := ""
		if r.TFLOPS > 0 {
			extra = fmt.Sprintf("%8.1f TFLOP/s", r.TFLOPS)
		}
		if r.GBs > 0 {
			extra = fmt.Sprintf("%8.0f GB/s", r.GBs)
		}
		if r.PeakGiB > 0 {
			extra += fmt.Sprintf("  peak %.2f GiB", r.PeakGiB)
			if r.EstGiB > 0 {
				extra += fmt.Sprintf(" (estimate %.2f GiB, %+.1f%%)", r.EstGiB, 100*(r.EstGiB/r.PeakGiB-1))
			}
		}
		fmt.Fprintf(w, "%-44s %9.3f ms (min %8.3f) %s %s\n", r.Name, r.MS, r.MSMin, extra, r.Note)
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(f.parts, ",") {
		parts[strings.TrimSpace(p)] = true
	}
	rnd := newFastRand(1)
	time1 := func(name string, flops, bytes float64, fn func()) {
		ms, err := b.TimeGPU(2, f.iters, fn)
		if err != nil {
			backend.FailErr(fmt.Errorf("%s: %w", name, err))
		}
		r := benchResult{Name: name, MS: cuda.Median(ms), MSMin: ms[0]}
		if flops > 0 {
			r.TFLOPS = flops / (r.MS * 1e-3) / 1e12
		}
		if bytes > 0 {
			r.GBs = bytes / (r.MS * 1e-3) / 1e9
		}
		add(r)
	}
	D, heads, hd := cfg.Dim, cfg.Heads, cfg.HeadDim
	if parts["attention"] {
		for _, a := range []struct {
			lq, lk, heads, d int
			what             string
		}{
			{L, L, heads, hd, "self"}, {L, 512, heads, hd, "cross"}, {L, L, heads * 2, 64, "self"},
		} {
			W := a.heads * a.d
			q := b.Upload(tensor.BF16, []int{a.lq, W}, rnd.normal(a.lq*W))
			k := b.Upload(tensor.BF16, []int{a.lk, W}, rnd.normal(a.lk*W))
			v := b.Upload(tensor.BF16, []int{a.lk, W}, rnd.normal(a.lk*W))
			s := float32(1 / math.Sqrt(float64(a.d)))
			kerns := []string{"mma"}
			for _, v := range cuda.WGMMAVariants {
				kerns = append(kerns, "wgmma:"+v)
			}
			if f.attnKernels != "" {
				kerns = strings.Split(f.attnKernels, ",")
				for i := range kerns {
					kerns[i] = strings.TrimSpace(kerns[i])
				}
			}
			for _, kern := range kerns {
				b.SetAttentionKernel(kern)
				if got := b.AttentionKernel(); !strings.HasPrefix(got, strings.Split(kern, ":")[0]) {
					fmt.Fprintf(w, "attention kernel %s unavailable: %s\n", kern, got)
					continue
				}
				name := fmt.Sprintf("attention[%s] %s Lq=%d Lk=%d h=%d d=%d", kern, a.what, a.lq, a.lk, a.heads, a.d)
				flops := 4 * float64(a.lq) * float64(a.lk) * float64(a.d) * float64(a.heads)
				fn := func() { b.Free(b.Attention(q, k, v, a.heads, s)) }
				if f.attnWarmMS <= 0 {
					time1(name, flops, 0, fn)
					continue
				}
				// Under full tensor load the card hits its power cap about a
				// second into a burst and its clock swings (1.2-1.98 GHz on
				// H100, docs/PERF.md): warm up past that, then time.
				one, err := b.TimeGPU(1, 1, fn)
				if err != nil {
					backend.FailErr(fmt.Errorf("%s: %w", name, err))
				}
				ms, err := b.TimeGPU(int(math.Ceil(f.attnWarmMS/max(one[0], 1e-3))), f.iters, fn)
				if err != nil {
					backend.FailErr(fmt.Errorf("%s: %w", name, err))
				}
				med := cuda.Median(ms)
				add(benchResult{Name: name, MS: med, MSMin: ms[0], TFLOPS: flops / (med * 1e-3) / 1e12,
					Note: fmt.Sprintf("(after %.0f ms of warm-up)", f.attnWarmMS)})
			}
			b.SetAttentionKernel("")
			if a.what == "self" && a.d == hd {
				benchSLA(b, q, k, v, a.lq, a.heads, a.d, time1)
			}
			b.Free(q)
			b.Free(k)
			b.Free(v)
		}
	}
	if parts["gemm"] {
		for _, g := range [][3]int{{L, D, D}, {L, cfg.FFNDim, D}, {L, D, cfg.FFNDim}} {
			M, N, K := g[0], g[1], g[2]
			x := b.Upload(tensor.BF16, []int{M, K}, rnd.normal(M*K))
			wt := b.Upload(tensor.BF16, []int{N, K}, rnd.normal(N*K))
			bias := b.Upload(tensor.BF16, []int{N}, rnd.normal(N))
			time1(fmt.Sprintf("linear bf16+bias M=%d N=%d K=%d", M, N, K), 2*float64(M)*float64(N)*float64(K), 0,
				func() { b.Free(b.Linear(x, wt, bias)) })
			b.Free(x)
			b.Free(wt)
			b.Free(bias)
		}
	}
	if parts["ops"] {
		n := L * D
		x := b.Upload(tensor.BF16, []int{L, D}, rnd.normal(n))
		y := b.Upload(tensor.BF16, []int{L, D}, rnd.normal(n))
		vec := func() backend.Tensor { return b.Upload(tensor.F32, []int{D}, rnd.normal(D)) }
		sh, sc, wv := vec(), vec(), vec()
		ang := b.Upload(tensor.F32, []int{L, hd / 2}, rnd.normal(L*hd/2))
		bb := 2 * float64(n) * 2 // read + write bf16
		time1("layernorm+modulate (fused) [L,D]", 0, bb, func() { b.Free(b.LayerNormModulate(x, sh, sc, 1e-6)) })
		time1("layernorm [L,D]", 0, bb, func() { b.Free(b.LayerNorm(x, nil, nil, 1e-6, tensor.BF16)) })
		time1("modulate [L,D]", 0, bb, func() { b.Free(b.Modulate(x, sh, sc)) })
		time1("rmsnorm [L,D]", 0, bb, func() { b.Free(b.RMSNorm(x, wv, 1e-6, backend.NormFast)) })
		time1("rope [L,D]", 0, bb, func() { b.Free(b.RoPE(x, ang, heads)) })
		time1("gated add [L,D]", 0, 1.5*bb, func() { b.Free(b.GatedAdd(x, y, sh)) })
		h := b.Upload(tensor.BF16, []int{L, cfg.FFNDim}, rnd.normal(L*cfg.FFNDim))
		time1("gelu_tanh [L,ffn]", 0, 4*float64(L*cfg.FFNDim), func() { b.Free(b.GELUTanh(h)) })
		for _, t := range []backend.Tensor{x, y, sh, sc, wv, ang, h} {
			b.Free(t)
		}
	}
	if parts["dit"] {
		r, err := benchDiT(w, b, cfg, latT, f.h/8, f.w/8, max(3, f.iters/3), f, attn)
		if err != nil {
			fmt.Fprintf(w, "DiT forward: FAILED: %v\n", err)
		} else {
			add(r)
		}
	}
	if f.jsonOut != "" {
		out, _ := json.MarshalIndent(map[string]any{"device": inf.Name, "arch": inf.Arch, "driver": inf.DriverVersion,
			"nvrtc": inf.NVRTCVersion, "time": time.Now().UTC().Format(time.RFC3339), "results": res}, "", "  ")
		if err := os.WriteFile(f.jsonOut, out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchDiT loads cfg with random bf16 weights and times Forward on a random
// latent [16, T, H, W] (wall clock: Forward returns host data, so it is
// synchronous), text embedded once as a sampler does.
func benchDiT(out io.Writer, b *cuda.Backend, cfg wan.Config, T, H, W, iters int, f *benchFlags, attn backend.AttentionKind) (r benchResult, err error) {
	ck := randomDiT(cfg)
	t0 := time.Now()
	if f.quant {
		// The -quant layout users download: int8 codes and scales, written and
		// memory-mapped like a real file.
		dir, err := os.MkdirTemp("", "td-bench-quant")
		if err != nil {
			return r, err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "random-quant.safetensors")
		if err := quant.QuantizeCheckpoint(ck, path); err != nil {
			return r, fmt.Errorf("quantising random %s: %w", cfg.Name, err)
		}
		if ck, err = checkpoint.Open(path); err != nil {
			return r, err
		}
		defer ck.Close()
	}
	opt := wan.Options{DType: tensor.BF16, Attention: attn, ExactRounding: f.exactRounding, Offload: f.offload}
	if attn != backend.Dense {
		opt.TopK = f.topk
	}
	m, err := wan.Load(b, ck, opt)
	if err != nil {
		return r, fmt.Errorf("loading random %s: %w", cfg.Name, err)
	}
	// What the memory planner expects the pool peak to be, and of it what
	// stays between forwards (weights, text, RoPE, workspace).
	var est, estKept int64
	var fw memplan.Forward
	if wts, err := memplan.DiTWeights(m.Info, opt); err == nil {
		fw = memplan.DiTForward(cfg, m.Opt, m.Info.Quantized, T*(H/2)*(W/2))
		estKept = wts + memplan.DiTText(cfg, tensor.BF16) + memplan.CublasWorkspace + fw.RoPE
		est = estKept + fw.Activations
	}
	defer m.Free()
	load := time.Since(t0)
	rnd := newFastRand(2)
	txt, err := m.EmbedText(rnd.normal(cfg.TextLen*cfg.TextDim), cfg.TextLen)
	if err != nil {
		return r, err
	}
	defer txt.Free()
	shape := []int{cfg.InDim, T, H, W}
	x := rnd.normal(tensor.NumElements(shape))
	if _, err := m.Forward(x, shape, 999, txt); err != nil {
		return r, err
	}
	// Each timed forward's pool peak and what is in use after it, so a
	// peak above the plan shows whether it is held between forwards (and
	// grows: a leak) or lives only inside one.
	kept, _, _ := b.MemStats()
	var ms []float64
	var peak int64
	var peaks, after []string
	var blocks map[int64]int
	for i := 0; i < iters; i++ {
		b.ResetPeak()
		t := time.Now()
		if _, err := m.Forward(x, shape, 999, txt); err != nil {
			return r, err
		}
		ms = append(ms, float64(time.Since(t).Microseconds())/1e3)
		inUse, p, _ := b.MemStats()
		if p > peak {
			peak, blocks = p, b.PeakBlocks()
		}
		peaks = append(peaks, fmt.Sprintf("%.3f", float64(p)/(1<<30)))
		after = append(after, fmt.Sprintf("%.3f", float64(inUse)/(1<<30)))
	}
	sort.Float64s(ms)
	fmt.Fprintf(out, "%s memory: held between forwards %.3f GiB (planned %.3f: weights, text, RoPE, workspace); forward peaks %s GiB (planned %.3f, activations %.3f in the %s); in use after each %s GiB\n",
		cfg.Name, float64(kept)/(1<<30), float64(estKept)/(1<<30), strings.Join(peaks, " "), float64(est)/(1<<30), float64(fw.Activations)/(1<<30), fw.Where, strings.Join(after, " "))
	if blocks != nil {
		fmt.Fprintf(out, "%s pool blocks live at the peak (%s):\n%s", cfg.Name, cuda.MemTraceEnv, formatBlocks(blocks))
	}
	if err := benchPhases(out, b, m, cfg, x, shape, txt, estKept, fw); err != nil {
		return r, err
	}
	// Host overhead: one more forward with every kernel timed by CUDA events;
	// the median wall time minus the summed kernel time is what the host
	// (launches, latent upload and download) adds to a step.
	b.StartProfile()
	if _, err := m.Forward(x, shape, 999, txt); err != nil {
		b.StopProfile()
		return r, err
	}
	var gpuMS float64
	prof := b.StopProfile()
	for _, e := range prof {
		gpuMS += e.MS
	}
	med := ms[len(ms)/2]
	if f.profile {
		fmt.Fprintf(out, "GPU time per kernel, one %s forward (CUDA events per launch):\n%s", cfg.Name, cuda.FormatProfile(prof, gpuMS))
	}
	L := T * (H / 2) * (W / 2)
	what := attn.String()
	if attn != backend.Dense {
		what += fmt.Sprintf(" top-k %g", f.topk)
	}
	name := fmt.Sprintf("DiT forward %s L=%d (%s, bf16)", cfg.Name, L, what)
	if f.exactRounding {
		name = strings.TrimSuffix(name, ")") + ", exact rounding)"
	}
	if f.quant {
		name = strings.TrimSuffix(name, ")") + ", W8A8 int8 Linears)"
	}
	if f.offload {
		name = strings.TrimSuffix(name, ")") + ", offload)"
	}
	return benchResult{Name: name, MS: med, MSMin: ms[0],
		PeakGiB: float64(peak) / (1 << 30), EstGiB: float64(est) / (1 << 30), Note: fmt.Sprintf("(weights generated+loaded in %.1fs; kernels %.1f ms, host overhead %.1f%% of the step)",
			load.Seconds(), gpuMS, 100*(med-gpuMS)/med)}, nil
}

// benchPhases runs one more forward and reports the pool peak of block 1's
// self-attention (from its k projection to its output projection: v, the
// attention op, o) and of the rest of the block (cross-attention and FFN)
// against the planner's, so the phase the planner misses shows even when
// the other one is the forward's peak; with the pool traced, the live
// blocks at each.
func benchPhases(out io.Writer, b *cuda.Backend, m *wan.Model, cfg wan.Config, x []float32, shape []int, txt *wan.Text, kept int64, fw memplan.Forward) error {
	if cfg.Layers < 2 {
		return nil
	}
	type phase struct {
		peak   int64
		blocks map[int64]int
	}
	var attn, ffn phase
	take := func(p *phase) {
		_, p.peak, _ = b.MemStats()
		p.blocks = b.PeakBlocks()
		b.ResetPeak()
	}
	m.Hook = func(name string, _ backend.Tensor) {
		switch name {
		case "blocks.1.self_attn.k":
			b.ResetPeak()
		case "blocks.1.self_attn":
			take(&attn)
		case "blocks.1":
			take(&ffn)
		}
	}
	defer func() { m.Hook = nil }()
	if _, err := m.Forward(x, shape, 999, txt); err != nil {
		return err
	}
	g := func(n int64) float64 { return float64(n) / (1 << 30) }
	fmt.Fprintf(out, "%s block 1 peaks: self-attention %.3f GiB (planned %.3f), cross-attention + FFN %.3f GiB (planned %.3f)\n",
		cfg.Name, g(attn.peak), g(kept+fw.Attention), g(ffn.peak), g(kept+fw.FFN))
	for _, p := range []struct {
		name string
		ph   phase
	}{{"self-attention", attn}, {"cross-attention + FFN", ffn}} {
		if p.ph.blocks != nil {
			fmt.Fprintf(out, "%s pool blocks live at block 1's %s peak:\n%s", cfg.Name, p.name, formatBlocks(p.ph.blocks))
		}
	}
	return nil
}

// formatBlocks lists live pool blocks by size class, largest total first.
func formatBlocks(blocks map[int64]int) string {
	type cls struct {
		size int64
		n    int
	}
	var cs []cls
	var total int64
	for c, n := range blocks {
		cs = append(cs, cls{c, n})
		total += c * int64(n)
	}
	sort.Slice(cs, func(i, j int) bool {
		ti, tj := cs[i].size*int64(cs[i].n), cs[j].size*int64(cs[j].n)
		if ti != tj {
			return ti > tj
		}
		return cs[i].size > cs[j].size
	})
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %5d × %10.3f MiB = %9.3f GiB\n", c.n, float64(c.size)/(1<<20), float64(c.size*int64(c.n))/(1<<30))
	}
	fmt.Fprintf(&b, "  total %.3f GiB\n", float64(total)/(1<<30))
	return b.String()
}

// benchSLA times SLA and SageSLA self-attention on q, k, v [L, heads·d]
// at top-k 0.05, 0.1 and 0.2, each call the whole op (block map,
// quantisation, linear branch with proj_l, sparse branch and the add); both
// kinds at top-k 0.1 also with the other block map + quantisation path
// (cuda.SLAPrepEnv) and with the Hopper sparse kernel's other grid
// (cuda.SparseGridEnv); both at top-k 0.1 also with the mma.sync sparse
// kernel where the Hopper one is the default. TFLOP/s count the dense
// attention the op replaces.
func benchSLA(b *cuda.Backend, q, k, v backend.Tensor, L, heads, d int, time1 func(string, float64, float64, func())) {
	rnd := newFastRand(3)
	pw := b.Upload(tensor.BF16, []int{d, d}, scaled(rnd.normal(d*d), float32(1/math.Sqrt(float64(d)))))
	pb := b.Upload(tensor.BF16, []int{d}, scaled(rnd.normal(d), 0.1))
	defer b.Free(pw)
	defer b.Free(pb)
	dense := 4 * float64(L) * float64(L) * float64(d) * float64(heads)
	run := func(kind backend.AttentionKind, topk float64) {
		cfg := backend.SLAConfig{Kind: kind, TopK: topk}
		name := fmt.Sprintf("%s top-k %.2f L=%d h=%d d=%d", kind, topk, L, heads, d)
		kern := b.SLASparseKernel()
		if kind == backend.SageSLA {
			kern = b.SageSparseKernel()
		}
		name += " [" + strings.Fields(kern)[0] + ", prep " + strings.Fields(b.SLAPrepKernel())[0] + "]"
		time1(name, dense, 0, func() { b.Free(b.SparseLinearAttention(q, k, v, heads, cfg, pw, pb)) })
	}
	for _, kind := range []backend.AttentionKind{backend.SLA, backend.SageSLA} {
		for _, topk := range []float64{0.05, 0.1, 0.2} {
			run(kind, topk)
		}
	}
	// The other SLA linear branch (fused or unfused) at top-k 0.1.
	other := "fused"
	if strings.HasPrefix(b.SLALinearKernel(), "fused") {
		other = "unfused"
	}
	b.SetSLALinear(other)
	if strings.HasPrefix(b.SLALinearKernel(), other) {
		for _, kind := range []backend.AttentionKind{backend.SLA, backend.SageSLA} {
			cfg := backend.SLAConfig{Kind: kind, TopK: 0.1}
			time1(fmt.Sprintf("%s top-k 0.10 L=%d h=%d d=%d [linear branch %s]", kind, L, heads, d, other), dense, 0,
				func() { b.Free(b.SparseLinearAttention(q, k, v, heads, cfg, pw, pb)) })
		}
	} else {
		fmt.Fprintf(os.Stderr, "SLA linear branch %s unavailable: %s\n", other, b.SLALinearKernel())
	}
	b.SetSLALinear("")
	// The other block map + quantisation path (cuda.SLAPrepEnv) at top-k 0.1.
	otherPrep := "fused"
	if strings.HasPrefix(b.SLAPrepKernel(), "fused") {
		otherPrep = "unfused"
	}
	b.SetSLAPrep(otherPrep)
	if strings.HasPrefix(b.SLAPrepKernel(), otherPrep) {
		run(backend.SLA, 0.1)
		run(backend.SageSLA, 0.1)
	} else {
		fmt.Fprintf(os.Stderr, "SLA block map + quantisation %s unavailable: %s\n", otherPrep, b.SLAPrepKernel())
	}
	b.SetSLAPrep("")
	// The other grid of the Hopper sparse kernels (cuda.SparseGridEnv) at
	// top-k 0.1.
	for _, kind := range []backend.AttentionKind{backend.SLA, backend.SageSLA} {
		desc, setGrid := b.SLASparseKernel, b.SetSLAGrid
		if kind == backend.SageSLA {
			desc, setGrid = b.SageSparseKernel, b.SetSageGrid
		}
		if !strings.HasPrefix(desc(), "wgmma") {
			continue
		}
		other, want := "persist", "wgmma-persist ("
		if strings.HasPrefix(desc(), "wgmma-persist") {
			other, want = "tile", "wgmma ("
		}
		setGrid(other)
		if strings.HasPrefix(desc(), want) {
			run(kind, 0.1)
		} else {
			fmt.Fprintf(os.Stderr, "%s sparse kernel on the %s grid unavailable: %s\n", kind, other, desc())
		}
		setGrid("")
	}
	if strings.HasPrefix(b.SLASparseKernel(), "wgmma") {
		b.SetSLASparse("mma")
		run(backend.SLA, 0.1)
		b.SetSLASparse("")
	}
	if strings.HasPrefix(b.SageSparseKernel(), "wgmma") {
		b.SetSageSparse("mma")
		run(backend.SageSLA, 0.1)
		b.SetSageSparse("")
	}
}

func scaled(x []float32, s float32) []float32 {
	for i := range x {
		x[i] *= s
	}
	return x
}

// fastRand is a xorshift generator: benchmark inputs need to be random
// (never zeros) but not statistically perfect.
type fastRand struct{ s uint64 }

func newFastRand(seed uint64) *fastRand { return &fastRand{s: seed*0x9E3779B97F4A7C15 + 1} }

func (r *fastRand) next() uint64 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return r.s
}

// normal returns n values with unit variance (sum of two uniforms, scaled).
func (r *fastRand) normal(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		u := r.next()
		a := float32(u&0xffffff)/(1<<24) + float32((u>>32)&0xffffff)/(1<<24) - 1
		out[i] = a * 2.449 // var of the sum of two U(0,1) is 1/6
	}
	return out
}

// randomDiT is a Wan DiT checkpoint of configuration c with deterministic
// random bf16 weights at the real shapes, generated on read.
func randomDiT(c wan.Config) checkpoint.File {
	return testmodels.NewRandom("random:"+c.Name, wan.Tensors(c), 1)
}
