package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func init() {
	var listTensors bool
	cmd := &cobra.Command{
		Use:   "inspect FILE [FILE...]",
		Short: "Say what a checkpoint holds (Wan DiT, Wan VAE, umT5, TAEHV tiny VAE) and list its tensors",
		Long: `inspect reads .pth or .safetensors checkpoints without loading their weights and
reports what each is: a Wan DiT (which model, int8-quantised or not, SLA proj_l
present or not, parameter count), a Wan VAE, a umT5 text encoder or the
TAEHV tiny VAE (taew2_1, for --vae tiny; checked completely too).
A DiT is checked completely: missing, unexpected or mis-shaped tensors are
errors. With --tensors every tensor is listed with its dtype and shape.
Given two Wan2.2 I2V experts (and optionally a VAE), it says whether they
make an image-to-video model: the same architecture, which is the high- and
which the low-noise expert (by their file names; the weights do not say),
and whether they fit the VAE.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectFiles(cmd.OutOrStdout(), args, listTensors)
		},
	}
	cmd.Flags().BoolVarP(&listTensors, "tensors", "t", false, "list every tensor with dtype and shape")
	root.AddCommand(cmd)
}

// inspectFiles prints the report of every file, then, for two Wan2.2 I2V
// experts, whether they are a pair that fits the VAE given with them. It
// returns every file's error and the pair's.
func inspectFiles(w io.Writer, paths []string, listTensors bool) error {
	var errs []error
	var experts []string
	var vaes []string
	for i, p := range paths {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := inspect(w, p, listTensors); err != nil {
			errs = append(errs, err)
			continue
		}
		switch kind, _ := fileKind(p); kind {
		case "i2v":
			experts = append(experts, p)
		case "vae":
			vaes = append(vaes, p)
		}
	}
	if len(paths) > 1 {
		if err := describeI2VSet(w, experts, vaes); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fileKind is "i2v" for a Wan2.2 I2V expert, "vae" for a Wan VAE, else "".
func fileKind(path string) (string, error) {
	f, err := checkpoint.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	switch wan.Identify(f.Names()) {
	case wan.FamilyWanDiT:
		if fi, err := wan.DetectConfig(f); err == nil && pipeline.IsI2VExpert(fi.Config) {
			return "i2v", nil
		}
	case wan.FamilyWanVAE:
		return "vae", nil
	}
	return "", nil
}

// describeI2VSet says whether two experts (and a VAE) make an
// image-to-video model, after the files' own reports.
func describeI2VSet(w io.Writer, experts, vaes []string) error {
	if len(experts) != 2 {
		if len(experts) == 1 {
			fmt.Fprintf(w, "\nI2V:      one Wan2.2 I2V expert given (%s); give its partner to check the pair\n", experts[0])
		}
		return nil
	}
	high, low := experts[0], experts[1]
	x0, ok0 := pipeline.ExpertFromName(high)
	x1, ok1 := pipeline.ExpertFromName(low)
	named := ok0 && ok1 && x0 != x1
	if named && x0 == pipeline.LowNoise {
		high, low = low, high
	}
	var err error
	if len(vaes) == 1 {
		_, err = pipeline.CheckI2VFiles(checkpoint.Open, high, low, vaes[0])
	} else {
		cs := [2]wan.Config{}
		for i, p := range []string{high, low} {
			f, oerr := checkpoint.Open(p)
			if oerr != nil {
				return oerr
			}
			fi, derr := wan.DetectConfig(f)
			f.Close()
			if derr != nil {
				return derr
			}
			cs[i] = fi.Config
		}
		err = pipeline.CheckExpertPair(high, cs[0], low, cs[1])
	}
	fmt.Fprintln(w)
	if err != nil {
		fmt.Fprintf(w, "I2V:      not an image-to-video model (see the error below)\n")
		return err
	}
	fmt.Fprintf(w, "I2V:      a Wan2.2 I2V expert pair (same architecture)\n")
	if named {
		fmt.Fprintf(w, "experts:  high-noise %s, low-noise %s (by their file names)\n", high, low)
	} else {
		fmt.Fprintf(w, "experts:  the file names do not say which is the high-noise expert (the weights cannot): pass them as --dit-high and --dit-low\n")
	}
	switch len(vaes) {
	case 0:
		fmt.Fprintf(w, "VAE:      none given (add the VAE file to check that the experts fit it)\n")
	case 1:
		fmt.Fprintf(w, "VAE:      fits %s\n", vaes[0])
	default:
		fmt.Fprintf(w, "VAE:      %d VAE files given; give one to check the fit\n", len(vaes))
	}
	return nil
}

// inspect prints the report for one file; an unreadable file or an invalid
// DiT is an error (after the summary has been printed).
func inspect(w io.Writer, path string, listTensors bool) error {
	f, err := checkpoint.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	names := f.Names()
	fmt.Fprintf(w, "file:     %s\n", path)
	fmt.Fprintf(w, "tensors:  %d (%s)\n", len(names), dtypeCensus(f))
	var verr error
	switch fam := wan.Identify(names); fam {
	case wan.FamilyWanDiT:
		verr = describeDiT(w, f)
	case wan.FamilyWanVAE:
		fmt.Fprintf(w, "model:    Wan VAE%s\n", vaeDetail(f))
		fmt.Fprintf(w, "params:   %s\n", humanCount(paramCount(f)))
	case wan.FamilyUMT5:
		fmt.Fprintf(w, "model:    umT5 text encoder%s\n", umt5Detail(f))
		fmt.Fprintf(w, "params:   %s\n", humanCount(paramCount(f)))
	default:
		if taehv.Detect(f) {
			cfg, enc, err := taehv.Check(f)
			if err != nil {
				fmt.Fprintf(w, "model:    TAEHV tiny video autoencoder (invalid, see the error below)\n")
				verr = err
			} else {
				fmt.Fprintf(w, "model:    %s\n", taehv.Describe(cfg, enc))
			}
			fmt.Fprintf(w, "params:   %s\n", humanCount(paramCount(f)))
			break
		}
		if sum, err := lora.Describe(f); err == nil && sum.Modules > 0 {
			describeLoRA(w, sum)
			fmt.Fprintf(w, "params:   %s\n", humanCount(paramCount(f)))
			break
		}
		fmt.Fprintf(w, "model:    unknown (not a Wan DiT, Wan VAE, umT5 encoder, TAEHV tiny VAE or Wan LoRA by its tensor names)\n")
		fmt.Fprintf(w, "params:   %s\n", humanCount(paramCount(f)))
	}
	if listTensors {
		fmt.Fprintln(w)
		width := 0
		for _, n := range names {
			width = max(width, len(printable(n)))
		}
		for _, n := range names {
			in, _ := f.Info(n)
			fmt.Fprintf(w, "%-*s  %-13s %v\n", width, printable(n), in.DType, in.Shape)
		}
	}
	return verr
}

func describeDiT(w io.Writer, f checkpoint.File) error {
	fi, err := wan.DetectConfig(f)
	if err != nil {
		fmt.Fprintf(w, "model:    Wan DiT (invalid, see the error below)\n")
		return err
	}
	c := fi.Config
	name := c.Name
	if name == "" {
		name = "custom size (no preset matches)"
	}
	if name == "Wan2.1-T2V-14B" {
		name += " (a Wan2.2-T2V-A14B expert has the same shapes)"
	}
	fmt.Fprintf(w, "model:    Wan DiT %s\n", name)
	if pipeline.IsI2VExpert(c) {
		role := "high- or low-noise: the weights do not say, nor does the file name"
		if x, ok := pipeline.ExpertFromName(f.Path()); ok {
			role = x.String() + " by its file name"
		}
		fmt.Fprintf(w, "expert:   Wan2.2 I2V expert (input %d latent + %d mask + %d image-latent channels); %s\n", c.OutDim, c.InDim-2*c.OutDim, c.OutDim, role)
	}
	fmt.Fprintf(w, "config:   %s, dim %d, ffn %d, %d heads × %d, %d layers, in %d, out %d channels\n",
		c.Type, c.Dim, c.FFNDim, c.Heads, c.HeadDim, c.Layers, c.InDim, c.OutDim)
	fmt.Fprintf(w, "heads:    %s\n", fi.HeadDimNote())
	if fi.Quantized {
		fmt.Fprintf(w, "linears:  int8-quantised (TurboDiffusion -quant: Int8Linear int8_weight + scale)\n")
	} else {
		fmt.Fprintf(w, "linears:  float (not quantised)\n")
	}
	if fi.ProjL {
		fmt.Fprintf(w, "SLA:      proj_l present (runs with sla/sagesla or dense attention)\n")
	} else {
		fmt.Fprintf(w, "SLA:      no proj_l (dense attention only)\n")
	}
	if fi.ConvPatch {
		fmt.Fprintf(w, "patch:    original Wan Conv3d form [D, Cin, 1, 2, 2]\n")
	} else {
		fmt.Fprintf(w, "patch:    TurboWan Linear form [D, Cin·4]\n")
	}
	fmt.Fprintf(w, "params:   %s\n", humanCount(fi.Params))
	printMemoryTable(w, fi)
	return nil
}

// printable returns a tensor name as is when it is plain printable text,
// else quoted: names come from the file, and control characters (ANSI
// escapes) must not reach the terminal.
func printable(name string) string {
	for _, r := range name {
		if !unicode.IsPrint(r) || r == '"' {
			return strconv.Quote(name)
		}
	}
	return name
}

// printables is printable of each name.
func printables(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = printable(n)
	}
	return out
}

// describeLoRA prints what a LoRA file changes.
func describeLoRA(w io.Writer, s lora.Summary) {
	fmt.Fprintf(w, "model:    Wan LoRA (%s naming), %d modules", strings.Join(s.Formats, "+"), s.Modules)
	if len(s.Ranks) > 0 {
		fmt.Fprintf(w, ", rank %v", s.Ranks)
	}
	if s.Alpha {
		fmt.Fprintf(w, ", with alpha")
	}
	if s.Full > 0 {
		fmt.Fprintf(w, ", %d full deltas", s.Full)
	}
	fmt.Fprintf(w, " (e.g. %s)\n", strings.Join(printables(s.Examples), ", "))
	if len(s.Unknown) > 0 {
		fmt.Fprintf(w, "unknown:  %d key(s) name no Wan module (generate --lora fails on them unless --lora-lenient): %s\n", len(s.Unknown), strings.Join(printables(s.Unknown[:min(5, len(s.Unknown))]), ", "))
	}
}

// vaeDetail reads z_dim and base width from the VAE's shapes, if present.
func vaeDetail(f checkpoint.File) string {
	z := findShape(f, "conv2.weight")
	c1 := findShape(f, "encoder.conv1.weight")
	var parts []string
	if len(z) > 0 {
		parts = append(parts, fmt.Sprintf("z_dim %d", z[0]))
	}
	if len(c1) > 0 {
		parts = append(parts, fmt.Sprintf("base dim %d", c1[0]))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func umt5Detail(f checkpoint.File) string {
	emb := findShape(f, "token_embedding.weight")
	layers := 0
	for _, n := range f.Names() {
		if i := strings.Index(n, "blocks."); i >= 0 {
			idx, _, _ := strings.Cut(n[i+len("blocks."):], ".")
			if v, err := strconv.Atoi(idx); err == nil {
				layers = max(layers, v+1)
			}
		}
	}
	if len(emb) != 2 {
		return fmt.Sprintf(" (%d layers)", layers)
	}
	return fmt.Sprintf(" (vocab %d, dim %d, %d layers)", emb[0], emb[1], layers)
}

// findShape returns the shape of the tensor whose name is key or ends in
// "."+key (files may carry a prefix), or nil.
func findShape(f checkpoint.File, key string) []int {
	for _, n := range f.Names() {
		if n == key || strings.HasSuffix(n, "."+key) {
			in, _ := f.Info(n)
			return in.Shape
		}
	}
	return nil
}

func paramCount(f checkpoint.File) int64 {
	var n int64
	for _, name := range f.Names() {
		in, _ := f.Info(name)
		n += int64(tensor.NumElements(in.Shape))
	}
	return n
}

// dtypeCensus is e.g. "bfloat16 812, float32 13".
func dtypeCensus(f checkpoint.File) string {
	count := map[tensor.DType]int{}
	for _, n := range f.Names() {
		in, _ := f.Info(n)
		count[in.DType]++
	}
	var parts []string
	for dt, n := range count {
		parts = append(parts, fmt.Sprintf("%v %d", dt, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// humanCount is e.g. "1.42 B (1418996800)".
func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f B (%d)", float64(n)/1e9, n)
	case n >= 1e6:
		return fmt.Sprintf("%.2f M (%d)", float64(n)/1e6, n)
	}
	return strconv.FormatInt(n, 10)
}
