package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/memplan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// memoryRun is the planner's run for a DiT file with generate's defaults:
// bf16, the text encoder loading and freed before the DiT, one sample, the
// DiT freed before the VAE decode.
func memoryRun(fi wan.FileInfo, attn backend.AttentionKind, size pipeline.Size, frames int) memplan.Run {
	if attn != backend.Dense && !fi.ProjL {
		attn = backend.Dense // what the checkpoint can run
	}
	return memplan.Run{DiT: fi, Opt: wan.Options{DType: tensor.BF16, Attention: attn},
		Width: size.W, Height: size.H, Frames: frames, Texts: 1, TextEncoder: true, ReleaseDiT: true}
}

// printMemoryTable prints a DiT file's estimated peak GPU memory at 480p
// and 720p (16:9, 81 frames) with SLA attention (dense without proj_l).
func printMemoryTable(w io.Writer, fi wan.FileInfo) {
	attn := backend.SLA
	if !fi.ProjL {
		attn = backend.Dense
	}
	weights, err := memplan.DiTWeights(fi, wan.Options{DType: tensor.BF16, Attention: attn})
	if err != nil {
		return
	}
	what := ""
	if fi.Config.Type == wan.I2V {
		what = ", one expert resident"
	}
	fmt.Fprintf(w, "memory:   weights %s on the GPU (bf16%s); estimated peak GPU memory of a run (81 frames, 16:9, %s attention):\n",
		memplan.FormatGiB(weights), what, attn)
	for _, res := range []string{"480p", "720p"} {
		size, _ := pipeline.Resolution(res, "16:9")
		est, err := memplan.Plan(memoryRun(fi, attn, size, 81))
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "          %-5s %s at the %s\n", res, memplan.FormatGiB(est.GPU()), stageSummary(est.Peak))
	}
}

// stageSummary is e.g. "DiT forward (DiT weights 26.6 GiB, activations 7.2 GiB, ...)".
func stageSummary(s memplan.Stage) string {
	var parts []string
	for _, p := range s.Parts {
		name := p.Name
		if i := strings.Index(name, " ("); i > 0 {
			name = name[:i]
		}
		parts = append(parts, fmt.Sprintf("%s %s", name, memplan.FormatGiB(p.Bytes)))
	}
	return fmt.Sprintf("%s (%s)", s.Name, strings.Join(parts, ", "))
}
