package wan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/bind"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// FileInfo is what DetectConfig learns from a DiT checkpoint.
type FileInfo struct {
	Config    Config
	Quantized bool  // block Linears stored as int8_weight + scale (a TurboDiffusion -quant file)
	ProjL     bool  // SLA proj_l weights present (TurboWan releases have them)
	ConvPatch bool  // patch_embedding.weight is the original Wan Conv3d [D, Cin, 1, 2, 2]
	Params    int64 // parameter count (int8 codes count one each, scales not at all)
	// HeadDimFrom says where Config.HeadDim came from: a checkpoint's tensor
	// shapes do not say how the width D splits into heads, except through
	// the SLA proj_l weights, which are [head_dim, head_dim].
	HeadDimFrom HeadDimSource
}

// HeadDimSource is where DetectConfig took the attention head width from.
type HeadDimSource string

const (
	// HeadDimFromProjL: read from the shape of the SLA proj_l weights.
	HeadDimFromProjL HeadDimSource = "proj_l"
	// HeadDimDefault: no proj_l in the file, so DefaultHeadDim was assumed.
	HeadDimDefault HeadDimSource = "default"
	// HeadDimFromOption: no proj_l in the file; the caller named it
	// (DetectOptions.HeadDim, Options.HeadDim).
	HeadDimFromOption HeadDimSource = "option"
)

// DefaultHeadDim is the head width assumed for a checkpoint without proj_l
// weights (an original Wan file): every released Wan2.1/2.2 DiT has 128.
const DefaultHeadDim = 128

// DetectOptions are what a caller may tell DetectConfig that the tensor
// shapes cannot.
type DetectOptions struct {
	// HeadDim is the attention head width of a checkpoint without proj_l
	// weights (0: DefaultHeadDim). A file with proj_l says its head width
	// itself; a different HeadDim is then an error.
	HeadDim int
}

// HeadDimNote explains in one line where the head width came from (inspect
// shows it).
func (fi FileInfo) HeadDimNote() string {
	hd := fi.Config.HeadDim
	switch fi.HeadDimFrom {
	case HeadDimFromProjL:
		return fmt.Sprintf("head dim %d, read from the SLA proj_l weights [%d %d]", hd, hd, hd)
	case HeadDimFromOption:
		return fmt.Sprintf("head dim %d, as the caller set it (the file has no proj_l weights to read it from)", hd)
	}
	return fmt.Sprintf("head dim %d assumed (no proj_l weights to read it from; every released Wan DiT uses %d)", hd, DefaultHeadDim)
}

// Family is the kind of model a checkpoint holds, judged by its key names.
type Family string

const (
	FamilyWanDiT  Family = "Wan DiT"
	FamilyWanVAE  Family = "Wan VAE"
	FamilyUMT5    Family = "umT5 text encoder"
	FamilyUnknown Family = "unknown"
)

// Identify judges what a checkpoint holds from its tensor names alone
// (docs/NUMERICS.md §4.2, §4.4). Names may carry a common prefix (e.g.
// "net." of training checkpoints); it is ignored here.
func Identify(names []string) Family {
	has := func(pred func(string) bool) bool {
		for _, n := range names {
			if pred(n) {
				return true
			}
		}
		return false
	}
	switch {
	case has(func(n string) bool {
		return n == "patch_embedding.weight" || strings.HasSuffix(n, ".patch_embedding.weight")
	}):
		return FamilyWanDiT
	case has(func(n string) bool {
		return strings.Contains(n, "encoder.downsamples.") || strings.Contains(n, "decoder.upsamples.")
	}):
		return FamilyWanVAE
	case has(func(n string) bool {
		return n == "token_embedding.weight" || strings.HasSuffix(n, ".token_embedding.weight") ||
			strings.Contains(n, "pos_embedding.embedding.weight")
	}):
		return FamilyUMT5
	}
	return FamilyUnknown
}

// DetectConfig reads a DiT checkpoint's architecture from its tensor shapes
// and checks that every tensor the model needs is there with the right shape
// and dtype, and nothing else is. SLA proj_l weights are optional; the head
// width comes from them, or is DefaultHeadDim without them.
func DetectConfig(f checkpoint.File) (FileInfo, error) {
	return DetectConfigWith(f, DetectOptions{})
}

// DetectConfigWith is DetectConfig with what the caller knows beyond the
// tensor shapes (the head width of a file without proj_l).
func DetectConfigWith(f checkpoint.File, opt DetectOptions) (FileInfo, error) {
	path := f.Path()
	names := f.Names()
	info, ok := f.Info("patch_embedding.weight")
	if !ok {
		return FileInfo{}, notADiT(path, names)
	}
	if _, ok := f.Info("img_emb.proj.1.weight"); ok {
		return FileInfo{}, fmt.Errorf("%s: a Wan2.1 I2V checkpoint with CLIP image embedding (img_emb.*): not supported (TurboDiffusion ships Wan2.1 T2V and Wan2.2 I2V A14B)", path)
	}
	var fi FileInfo
	c := Config{Patch: [3]int{1, 2, 2}, TextLen: 512, Eps: 1e-6}

	// Width and input channels from the patch embedding, in either form.
	pe := info.Shape
	switch {
	case len(pe) == 2 && pe[1]%4 == 0 && pe[1] > 0:
		c.Dim, c.InDim = pe[0], pe[1]/4
	case len(pe) == 5 && pe[2] == 1 && pe[3] == 2 && pe[4] == 2:
		c.Dim, c.InDim, fi.ConvPatch = pe[0], pe[1], true
	default:
		return FileInfo{}, fmt.Errorf("%s: tensor %q: want shape [dim, in_dim·4] or [dim, in_dim, 1, 2, 2], got %v", path, "patch_embedding.weight", pe)
	}
	headDim, from, err := detectHeadDim(f, opt)
	if err != nil {
		return FileInfo{}, err
	}
	if c.Dim <= 0 || c.Dim%headDim != 0 {
		return FileInfo{}, fmt.Errorf("%s: model dim %d (from patch_embedding.weight %v) is not a positive multiple of the head dim %d (%s)", path, c.Dim, pe, headDim, from)
	}
	c.HeadDim, c.Heads = headDim, c.Dim/headDim
	fi.HeadDimFrom = from

	layers, err := countBlocks(path, names)
	if err != nil {
		return FileInfo{}, err
	}
	c.Layers = layers
	_, fi.Quantized = f.Info("blocks.0.self_attn.q.int8_weight")
	_, fi.ProjL = f.Info("blocks.0." + projLPrefix + ".weight")

	ffnKey := "blocks.0.ffn.0.weight"
	if fi.Quantized {
		ffnKey = "blocks.0.ffn.0.int8_weight"
	}
	dims := []struct {
		key  string
		axis int
		dst  *int
	}{
		{ffnKey, 0, &c.FFNDim},
		{"head.head.weight", 0, &c.OutDim},
		{"time_embedding.0.weight", 1, &c.FreqDim},
		{"text_embedding.0.weight", 1, &c.TextDim},
	}
	var errs []error
	for _, d := range dims {
		in, ok := f.Info(d.key)
		if !ok || len(in.Shape) != 2 {
			if ok {
				errs = append(errs, fmt.Errorf("tensor %q: want a 2-D shape, got %v", d.key, in.Shape))
			} else {
				errs = append(errs, fmt.Errorf("missing tensor %q", d.key))
			}
			continue
		}
		*d.dst = in.Shape[d.axis]
	}
	if len(errs) > 0 {
		return FileInfo{}, fmt.Errorf("%s: cannot read the Wan DiT architecture: %w", path, errors.Join(errs...))
	}
	if c.OutDim%4 != 0 {
		return FileInfo{}, fmt.Errorf("%s: tensor %q: want out_dim·4 rows (a multiple of 4), got %d", path, "head.head.weight", c.OutDim)
	}
	c.OutDim /= 4
	c.Type = T2V
	if c.InDim != c.OutDim {
		c.Type = I2V
	}
	c.Name = matchPreset(c)
	if err := c.Validate(); err != nil {
		return FileInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	fi.Config = c
	if err := checkTensors(f, c, layout{quantized: fi.Quantized, projL: fi.ProjL, convPatch: fi.ConvPatch}); err != nil {
		return FileInfo{}, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".scale") && fi.Quantized {
			continue
		}
		in, _ := f.Info(n)
		fi.Params += int64(tensor.NumElements(in.Shape))
	}
	return fi, nil
}

// detectHeadDim reads the head width from block 0's proj_l weight
// ([head_dim, head_dim]) when the file has it, else takes opt.HeadDim or
// DefaultHeadDim. The other blocks' proj_l shapes are checked with every
// other tensor afterwards (checkTensors).
func detectHeadDim(f checkpoint.File, opt DetectOptions) (int, HeadDimSource, error) {
	path := f.Path()
	if opt.HeadDim < 0 {
		return 0, "", fmt.Errorf("%s: head dim %d must be positive", path, opt.HeadDim)
	}
	name := "blocks.0." + projLPrefix + ".weight"
	in, ok := f.Info(name)
	if !ok {
		if opt.HeadDim > 0 {
			return opt.HeadDim, HeadDimFromOption, nil
		}
		return DefaultHeadDim, HeadDimDefault, nil
	}
	if len(in.Shape) != 2 || in.Shape[0] != in.Shape[1] || in.Shape[0] <= 0 {
		return 0, "", fmt.Errorf("%s: tensor %q: want shape [head_dim, head_dim], got %v", path, name, in.Shape)
	}
	hd := in.Shape[0]
	if opt.HeadDim > 0 && opt.HeadDim != hd {
		return 0, "", fmt.Errorf("%s: head dim %d requested, but the SLA proj_l weights (%q %v) say %d", path, opt.HeadDim, name, in.Shape, hd)
	}
	return hd, HeadDimFromProjL, nil
}

// notADiT explains what a file without patch_embedding.weight is instead.
func notADiT(path string, names []string) error {
	switch Identify(names) {
	case FamilyWanVAE:
		return fmt.Errorf("%s looks like a Wan VAE checkpoint, not a DiT (it has encoder.downsamples/decoder.upsamples tensors)", path)
	case FamilyUMT5:
		return fmt.Errorf("%s looks like a umT5 text encoder checkpoint, not a DiT (it has token_embedding/pos_embedding tensors)", path)
	case FamilyWanDiT:
		for _, n := range names {
			if strings.HasSuffix(n, ".patch_embedding.weight") {
				prefix := strings.TrimSuffix(n, "patch_embedding.weight")
				return fmt.Errorf("%s: the Wan DiT keys carry the prefix %q (a training checkpoint?); want bare keys such as %q", path, prefix, "patch_embedding.weight")
			}
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%s is not a Wan DiT checkpoint: it holds no tensors", path)
	}
	return fmt.Errorf("%s is not a Wan DiT checkpoint: no tensor %q (%d tensors, e.g. %q)", path, "patch_embedding.weight", len(names), names[0])
}

// countBlocks returns 1 + the largest N of the blocks.N.* tensors.
func countBlocks(path string, names []string) (int, error) {
	n := 0
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, "blocks.")
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 {
			return 0, fmt.Errorf("%s: tensor %q: block index %q is not a number", path, name, idx)
		}
		n = max(n, i+1)
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: no transformer blocks (no blocks.N.* tensors)", path)
	}
	return n, nil
}

// checkTensors compares the file with the expected tensor list and reports
// every missing, unexpected, mis-shaped or mis-typed tensor at once.
func checkTensors(f checkpoint.File, c Config, l layout) error {
	return bind.Check(f, describeLayout(c, l), specs(expectedTensors(c, l)), true)
}

func describeLayout(c Config, l layout) string {
	s := c.String()
	if l.quantized {
		s += " int8-quantised"
	}
	return s
}
