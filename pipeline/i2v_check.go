package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
)

// Header checks of an image-to-video model: the two experts and the VAE
// are judged from their tensor shapes alone, so a wrong or mismatched file
// fails before any weight is read.

// ExpertFromName says which expert a file is by its name: the released
// files carry the word "high" or "low" (TurboWan2.2-I2V-A14B-high-720P.pth);
// the weights themselves do not say. ok is false when the base name holds
// neither word, or both (words are separated by anything but letters and
// digits, so "yellow" or "highres" say nothing).
func ExpertFromName(path string) (x Expert, ok bool) {
	var high, low bool
	for _, w := range strings.FieldsFunc(strings.ToLower(filepath.Base(path)), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		high = high || w == "high"
		low = low || w == "low"
	}
	switch {
	case high && !low:
		return HighNoise, true
	case low && !high:
		return LowNoise, true
	}
	return HighNoise, false
}

// IsI2VExpert reports whether a DiT configuration has the Wan2.2 I2V expert
// layout: input = latent + mask + image latent (out + 4 + out channels).
func IsI2VExpert(c wan.Config) bool {
	return c.Type == wan.I2V && c.InDim == i2vInDim(c.OutDim)
}

// checkExpert checks that the file given as expert x is a Wan2.2 I2V expert.
func checkExpert(path string, x Expert, c wan.Config) error {
	if !IsI2VExpert(c) {
		return fmt.Errorf("%s (given as the %s expert) is a %s DiT with %d input channels; image-to-video needs a Wan2.2 I2V A14B expert with %d (%d latent + %d mask + %d image latent)",
			path, x, c.Type, c.InDim, i2vInDim(c.OutDim), c.OutDim, maskChannels, c.OutDim)
	}
	return nil
}

// CheckExpertPair checks that two DiT configurations are a Wan2.2 I2V
// expert pair: each has the expert layout and both have the same
// architecture (the high- and low-noise experts differ only in their
// weights). Quantisation may differ: each file loads on its own.
func CheckExpertPair(highPath string, high wan.Config, lowPath string, low wan.Config) error {
	if err := checkExpert(highPath, HighNoise, high); err != nil {
		return err
	}
	if err := checkExpert(lowPath, LowNoise, low); err != nil {
		return err
	}
	if diff := configDiff(high, low); diff != "" {
		return fmt.Errorf("%s and %s are not a Wan2.2 I2V expert pair: they differ in %s (high-noise: %s; low-noise: %s)",
			highPath, lowPath, diff, high, low)
	}
	return nil
}

// CheckExpertsFitVAE checks that experts of configuration c work with a
// VAE of configuration v: they predict v.ZDim latent channels and take
// v.ZDim + 4 + v.ZDim (noisy latent, mask, image latent).
func CheckExpertsFitVAE(c wan.Config, vaePath string, v wanvae.Config) error {
	if c.OutDim != v.ZDim || c.InDim != i2vInDim(v.ZDim) {
		return fmt.Errorf("the experts (in %d, out %d channels) do not fit the VAE %s (z_dim %d): image-to-video with it needs experts with in %d (%d latent + %d mask + %d image latent) and out %d",
			c.InDim, c.OutDim, vaePath, v.ZDim, i2vInDim(v.ZDim), v.ZDim, maskChannels, v.ZDim, v.ZDim)
	}
	return nil
}

// CheckI2VFiles reads the headers of both experts and the VAE (no
// weights) with open and checks that they make one image-to-video model
// (CheckExpertPair, CheckExpertsFitVAE). It returns the experts'
// configuration.
func CheckI2VFiles(open func(string) (checkpoint.File, error), high, low, vae string) (wan.Config, error) {
	var cs [2]wan.Config
	for i, p := range []string{high, low} {
		x := Expert(i)
		f, err := open(p)
		if err != nil {
			return wan.Config{}, fmt.Errorf("%s expert: %w", x, err)
		}
		fi, err := wan.DetectConfig(f)
		f.Close()
		if err != nil {
			return wan.Config{}, fmt.Errorf("%s expert: %w", x, err)
		}
		cs[i] = fi.Config
		if err := checkExpert(p, x, fi.Config); err != nil {
			return wan.Config{}, err
		}
	}
	if err := CheckExpertPair(high, cs[0], low, cs[1]); err != nil {
		return wan.Config{}, err
	}
	f, err := open(vae)
	if err != nil {
		return wan.Config{}, fmt.Errorf("VAE: %w", err)
	}
	v, err := wanvae.ReadConfig(f)
	f.Close()
	if err != nil {
		return wan.Config{}, fmt.Errorf("VAE: %w", err)
	}
	if err := CheckExpertsFitVAE(cs[0], vae, v); err != nil {
		return wan.Config{}, err
	}
	return cs[0], nil
}

// configDiff names the architecture fields in which a and b differ
// ("" if none).
func configDiff(a, b wan.Config) string {
	var d []string
	add := func(name string, x, y any) {
		if x != y {
			d = append(d, fmt.Sprintf("%s %v vs %v", name, x, y))
		}
	}
	add("type", a.Type, b.Type)
	add("dim", a.Dim, b.Dim)
	add("ffn_dim", a.FFNDim, b.FFNDim)
	add("heads", a.Heads, b.Heads)
	add("head_dim", a.HeadDim, b.HeadDim)
	add("layers", a.Layers, b.Layers)
	add("in_dim", a.InDim, b.InDim)
	add("out_dim", a.OutDim, b.OutDim)
	add("patch", a.Patch, b.Patch)
	add("freq_dim", a.FreqDim, b.FreqDim)
	add("text_dim", a.TextDim, b.TextDim)
	add("text_len", a.TextLen, b.TextLen)
	add("eps", a.Eps, b.Eps)
	return strings.Join(d, ", ")
}
