package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/quant"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

type benchMemFlags struct {
	models, resolutions, attentions string
	frames                          int
	quant, vae, text                bool
	jsonOut                         string
}

// `bench memory` measures the pool peaks the memory planner estimates.
func init() {
	f := &benchMemFlags{}
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Measure peak GPU memory (DiT weights and forward, VAE decode/encode, umT5) against the planner's estimate",
		Long: `Loads random weights at the real shapes and measures the CUDA pool's high-water
mark of each part the memory planner (package memplan) estimates: DiT weights,
a text context, one forward per resolution and attention kind (int8 Linears
with --quant), the VAE decode and encode per resolution, and with --text the
umT5-XXL encoder. Each line prints the measured bytes, the estimate and their
difference; the totals are what 'bench' reports as a forward's peak.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBenchMemory(cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.models, "model", "Wan2.1-T2V-1.3B,Wan2.1-T2V-14B", "comma-separated DiT presets")
	fl.StringVar(&f.resolutions, "resolutions", "480p,720p", "comma-separated resolutions (16:9)")
	fl.StringVar(&f.attentions, "attention", "dense,sla,sagesla", "comma-separated attention kinds")
	fl.IntVar(&f.frames, "frames", 81, "frames (4k+1)")
	fl.BoolVar(&f.quant, "quant", false, "also measure int8-quantised DiTs (quantising a random 14B takes a minute)")
	fl.BoolVar(&f.vae, "vae", true, "measure the VAE decode and encode")
	fl.BoolVar(&f.text, "text", false, "measure the umT5-XXL encoder (generating its random weights takes a while)")
	fl.StringVar(&f.jsonOut, "json", "", "also write the lines as JSON to this file")
	for _, c := range root.Commands() {
		if c.Name() == "bench" {
			c.AddCommand(cmd)
			return
		}
	}
	root.AddCommand(cmd)
}

// memLine is one measured part.
type memLine struct {
	What      string  `json:"what"`
	Measured  float64 `json:"measured_gib"`
	Estimate  float64 `json:"estimate_gib"`
	Deviation float64 `json:"deviation_pct"`
}

func runBenchMemory(w io.Writer, f *benchMemFlags) (err error) {
	b, err := cuda.Open()
	if err != nil {
		return err
	}
	defer backend.Recover(&err)
	inf := b.Info()
	free, total := b.MemInfo()
	fmt.Fprintf(w, "device: %s (%s), %.1f GiB, %.1f GiB free; %s\n", inf.Name, inf.Arch, float64(total)/memplan.GiB, float64(free)/memplan.GiB, time.Now().UTC().Format(time.RFC3339))
	if _, _, err := b.Preload(); err != nil {
		return err
	}
	var lines []memLine
	report := func(what string, measured, estimate int64) {
		l := memLine{What: what, Measured: float64(measured) / memplan.GiB, Estimate: float64(estimate) / memplan.GiB}
		if measured > 0 {
			l.Deviation = 100 * (float64(estimate)/float64(measured) - 1)
		}
		lines = append(lines, l)
		fmt.Fprintf(w, "%-72s measured %8.3f GiB  estimate %8.3f GiB  %+6.1f%%\n", what, l.Measured, l.Estimate, l.Deviation)
	}
	inUse := func() int64 { n, _, _ := b.MemStats(); return n }
	peak := func() int64 { _, p, _ := b.MemStats(); return p }
	split := func(s string) []string {
		var out []string
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
		return out
	}
	var sizes []pipeline.Size
	for _, r := range split(f.resolutions) {
		s, err := pipeline.Resolution(r, "16:9")
		if err != nil {
			return err
		}
		sizes = append(sizes, s)
	}
	var kinds []backend.AttentionKind
	for _, a := range split(f.attentions) {
		k, err := pipeline.ParseAttention(a)
		if err != nil {
			return err
		}
		kinds = append(kinds, k)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	normal := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rnd.NormFloat64())
		}
		return v
	}

	for _, name := range split(f.models) {
		cfg, err := wan.Preset(name)
		if err != nil {
			return err
		}
		variants := []bool{false}
		if f.quant {
			variants = append(variants, true)
		}
		for _, quantized := range variants {
			ck := randomDiT(cfg)
			label := cfg.Name
			if quantized {
				dir, err := os.MkdirTemp("", "td-bench-mem")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				path := filepath.Join(dir, "random-quant.safetensors")
				if err := quant.QuantizeCheckpoint(ck, path); err != nil {
					return err
				}
				if ck, err = checkpoint.Open(path); err != nil {
					return err
				}
				label += " int8"
			}
			// Loaded once with the SLA weights (proj_l); each forward then runs
			// the attention kind under test (Opt changed between forwards).
			opt := wan.Options{DType: tensor.BF16, Attention: backend.SLA}
			fi, err := wan.DetectConfig(ck)
			if err != nil {
				return err
			}
			before := inUse()
			m, err := wan.Load(b, ck, opt)
			if err != nil {
				return err
			}
			wEst, _ := memplan.DiTWeights(fi, opt)
			report(label+" weights", inUse()-before, wEst)
			before = inUse()
			txt, err := m.EmbedText(normal(cfg.TextLen*cfg.TextDim), cfg.TextLen)
			if err != nil {
				m.Free()
				return err
			}
			report(label+" text context", inUse()-before, memplan.DiTText(cfg, tensor.BF16))
			for _, s := range sizes {
				for _, k := range kinds {
					m.Opt.Attention = k
					m.Opt.BlockQ, m.Opt.BlockK = 128, 64
					if k == backend.SageSLA {
						m.Opt.BlockQ, m.Opt.BlockK = 64, 128
					}
					lat, _ := pipeline.LatentShape(f.frames, s)
					shape := []int{cfg.InDim, lat[1], lat[2], lat[3]}
					base := inUse()
					b.ResetPeak()
					if _, err := m.Forward(normal(tensor.NumElements(shape)), shape, 999, txt); err != nil {
						txt.Free()
						m.Free()
						return err
					}
					fw := memplan.DiTForward(cfg, m.Opt, quantized, memplan.Tokens(s.W, s.H, f.frames))
					rope := fw.RoPE
					if inUse() == base { // the table of this grid was cached already
						rope = 0
					}
					what := fmt.Sprintf("%s forward %dx%dx%d %s (peak in the %s)", label, s.W, s.H, f.frames, k, fw.Where)
					report(what, peak()-base, fw.Activations+rope)
					total := wEst + memplan.DiTText(cfg, tensor.BF16) + memplan.CublasWorkspace + fw.RoPE + fw.Activations
					report(fmt.Sprintf("%s forward %dx%dx%d %s: pool peak as bench reports it", label, s.W, s.H, f.frames, k), peak(), total)
				}
			}
			txt.Free()
			m.Free()
			if c, ok := ck.(interface{ Close() error }); ok {
				c.Close()
			}
			b.ResetPeak()
		}
	}

	if f.vae {
		vf := testmodels.NewRandom("random:wan2.1-vae", wanvae.Tensors(wanvae.Config{Dim: 96, ZDim: 16}), 3)
		before := inUse()
		v, err := wanvae.Load(b, vf, wanvae.Options{DType: tensor.BF16})
		if err != nil {
			return err
		}
		report("VAE weights", inUse()-before, memplan.VAEWeights(memplan.Wan21VAE))
		for _, s := range sizes {
			// Three latent frames: the causal caches are full from the third
			// chunk on, so later chunks hold no more.
			shape := []int{16, 3, s.H / 8, s.W / 8}
			base := inUse()
			b.ResetPeak()
			if _, _, err := v.Decode(normal(tensor.NumElements(shape)), shape); err != nil {
				v.Free()
				return err
			}
			report(fmt.Sprintf("VAE decode %dx%d", s.W, s.H), peak()-base, memplan.VAEDecode(memplan.Wan21VAE, s.W, s.H))
			vshape := []int{3, 9, s.H, s.W}
			base = inUse()
			b.ResetPeak()
			if _, _, err := v.Encode(normal(tensor.NumElements(vshape)), vshape); err != nil {
				v.Free()
				return err
			}
			report(fmt.Sprintf("VAE encode %dx%d", s.W, s.H), peak()-base, memplan.VAEEncode(memplan.Wan21VAE, s.W, s.H))
		}
		v.Free()
	}

	if f.text {
		tf := testmodels.NewRandom("random:umt5-xxl", umt5.Tensors(umt5.XXL), 1)
		before := inUse()
		enc, err := umt5.Load(b, tf, umt5.Options{DType: tensor.BF16})
		if err != nil {
			return err
		}
		report("umT5-XXL weights", inUse()-before, memplan.TextEncoderWeights(umt5.XXL))
		ids := make([]int32, 512)
		for i := range ids {
			ids[i] = int32(1 + i)
		}
		base := inUse()
		b.ResetPeak()
		if _, err := enc.Encode(ids, 512); err != nil {
			enc.Close()
			return err
		}
		report("umT5-XXL encode, 512 tokens", peak()-base, memplan.TextEncode(umt5.XXL))
		enc.Close()
	}
	if f.jsonOut != "" {
		out, _ := json.MarshalIndent(map[string]any{"device": inf.Name, "time": time.Now().UTC().Format(time.RFC3339), "lines": lines}, "", "  ")
		return os.WriteFile(f.jsonOut, out, 0o644)
	}
	return nil
}
