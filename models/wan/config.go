// Package wan is the Wan2.1/2.2 diffusion transformer (DiT) as TurboDiffusion
// runs it (docs/NUMERICS.md §3): configuration, checkpoint detection and
// validation, weight loading and the forward pass, written against the
// backend.DiT op contract so it runs unchanged on the CPU and CUDA backends.
package wan

import (
	"fmt"
	"strings"
)

// ModelType is the conditioning a DiT expects.
type ModelType string

const (
	// T2V takes the 16-channel noisy latent only.
	T2V ModelType = "t2v"
	// I2V takes the noisy latent concatenated with the image condition
	// (mask 4 + latent 16 channels, docs/NUMERICS.md §3.9), 36 input channels.
	I2V ModelType = "i2v"
)

// Config is the architecture of a Wan DiT (docs/NUMERICS.md §3.1).
type Config struct {
	Name    string    // preset name, or "" for a size no preset has (e.g. test models)
	Type    ModelType // t2v or i2v
	Dim     int       // model width D
	FFNDim  int       // feed-forward hidden width
	Heads   int       // attention heads N
	HeadDim int       // D/N; 128 for every released model
	Layers  int       // transformer blocks
	InDim   int       // latent channels in (16; 36 for I2V)
	OutDim  int       // latent channels out (16)
	Patch   [3]int    // (t, h, w) patch size; only (1,2,2) exists
	FreqDim int       // sinusoidal time-embedding width (256)
	TextDim int       // umT5 width (4096)
	TextLen int       // text context rows (512)
	Eps     float32   // norm epsilon (1e-6)
}

// base returns the settings every Wan2.x DiT shares.
func base(name string, typ ModelType, dim, ffn, heads, layers, in int) Config {
	return Config{
		Name: name, Type: typ, Dim: dim, FFNDim: ffn, Heads: heads, HeadDim: dim / heads,
		Layers: layers, InDim: in, OutDim: 16, Patch: [3]int{1, 2, 2},
		FreqDim: 256, TextDim: 4096, TextLen: 512, Eps: 1e-6,
	}
}

// Presets are the models TurboDiffusion ships. Wan2.2-I2V-A14B is one expert
// (the high- and low-noise experts have the same shape).
var Presets = []Config{
	base("Wan2.1-T2V-1.3B", T2V, 1536, 8960, 12, 30, 16),
	base("Wan2.1-T2V-14B", T2V, 5120, 13824, 40, 40, 16),
	base("Wan2.2-I2V-A14B", I2V, 5120, 13824, 40, 40, 36),
}

// presetAliases maps TurboDiffusion's --model names to presets.
var presetAliases = map[string]string{
	"wan2.1-1.3b": "Wan2.1-T2V-1.3B",
	"wan2.1-14b":  "Wan2.1-T2V-14B",
	"wan2.2-a14b": "Wan2.2-I2V-A14B",
}

// Preset returns the named preset; TurboDiffusion's --model names
// (Wan2.1-1.3B, Wan2.1-14B, Wan2.2-A14B) are accepted too.
func Preset(name string) (Config, error) {
	want := strings.ToLower(name)
	if a, ok := presetAliases[want]; ok {
		want = strings.ToLower(a)
	}
	var names []string
	for _, p := range Presets {
		if strings.ToLower(p.Name) == want {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Config{}, fmt.Errorf("unknown Wan model %q (known: %s)", name, strings.Join(names, ", "))
}

// matchPreset names the preset whose shape equals c, or "".
func matchPreset(c Config) string {
	for _, p := range Presets {
		q := c
		q.Name = p.Name
		if q == p {
			return p.Name
		}
	}
	return ""
}

// Validate checks that the configuration is one this implementation can run.
func (c Config) Validate() error {
	switch {
	case c.Type != T2V && c.Type != I2V:
		return fmt.Errorf("wan config: model type %q, want t2v or i2v", c.Type)
	case c.Dim <= 0 || c.Heads <= 0 || c.Layers <= 0 || c.FFNDim <= 0:
		return fmt.Errorf("wan config: dim %d, heads %d, layers %d, ffn %d must be positive", c.Dim, c.Heads, c.Layers, c.FFNDim)
	case c.Dim%c.Heads != 0 || c.HeadDim != c.Dim/c.Heads:
		return fmt.Errorf("wan config: dim %d is not heads %d × head_dim %d", c.Dim, c.Heads, c.HeadDim)
	case c.HeadDim%2 != 0 || c.HeadDim < 6:
		return fmt.Errorf("wan config: head_dim %d must be even and at least 6 (3D RoPE)", c.HeadDim)
	case c.Patch != [3]int{1, 2, 2}:
		return fmt.Errorf("wan config: patch %v, only (1,2,2) is supported", c.Patch)
	case c.InDim <= 0 || c.OutDim <= 0 || c.FreqDim <= 0 || c.FreqDim%2 != 0 || c.TextDim <= 0 || c.TextLen <= 0:
		return fmt.Errorf("wan config: in %d, out %d, freq_dim %d (even), text_dim %d, text_len %d must be positive",
			c.InDim, c.OutDim, c.FreqDim, c.TextDim, c.TextLen)
	case !(c.Eps > 0):
		return fmt.Errorf("wan config: eps %g must be positive", c.Eps)
	}
	return nil
}

// PatchDim is the width of one flattened input patch, InDim·kt·kh·kw.
func (c Config) PatchDim() int { return c.InDim * c.Patch[0] * c.Patch[1] * c.Patch[2] }

// HeadOut is the width of one head output row, OutDim·kt·kh·kw.
func (c Config) HeadOut() int { return c.OutDim * c.Patch[0] * c.Patch[1] * c.Patch[2] }

// String describes the configuration in one line.
func (c Config) String() string {
	name := c.Name
	if name == "" {
		name = "custom Wan DiT"
	}
	return fmt.Sprintf("%s (%s, dim %d, ffn %d, %d heads × %d, %d layers, in %d, out %d)",
		name, c.Type, c.Dim, c.FFNDim, c.Heads, c.HeadDim, c.Layers, c.InDim, c.OutDim)
}
