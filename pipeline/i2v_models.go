package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"
)

// I2VVariants are the TurboWan image-to-video releases by the name of their
// repository; each ships a high-noise and a low-noise expert.
var I2VVariants = map[string]string{
	"TurboWan2.2-I2V-A14B-720P": "https://huggingface.co/TurboDiffusion/TurboWan2.2-I2V-A14B-720P",
}

// DefaultI2VVariant is the image-to-video model generate uses unless told
// otherwise.
const DefaultI2VVariant = "TurboWan2.2-I2V-A14B-720P"

// ExpertFile is the released file name (without extension) of one expert
// of an I2V variant: the expert ("high" or "low") goes before the
// resolution, TurboWan2.2-I2V-A14B-720P → TurboWan2.2-I2V-A14B-high-720P.
func ExpertFile(variant, expert string) string {
	i := strings.LastIndex(variant, "-")
	if i < 0 {
		return variant + "-" + expert
	}
	return variant[:i] + "-" + expert + variant[i:]
}

// FindI2VModels is FindModels for image-to-video: it resolves both experts
// of a variant (<expert file>.pth, else -quant.pth, also .safetensors) and
// the shared VAE, text encoder and tokenizer. Explicit paths in override
// (DiTHigh, DiTLow, ...) win over the folder; every missing file is named at
// once, with where to download it.
func FindI2VModels(dir, variant string, override Files) (Files, error) {
	if variant == "" {
		variant = DefaultI2VVariant
	}
	out := override
	var missing []string
	if out.DiTHigh == "" || out.DiTLow == "" {
		url, ok := I2VVariants[variant]
		if !ok {
			var names []string
			for n := range I2VVariants {
				names = append(names, n)
			}
			return Files{}, fmt.Errorf("unknown image-to-video variant %q (choose one of %s, or pass --dit-high and --dit-low)", variant, strings.Join(sortedStrings(names), ", "))
		}
		for _, ex := range []struct {
			dst  *string
			name string
		}{{&out.DiTHigh, "high"}, {&out.DiTLow, "low"}} {
			if *ex.dst != "" {
				continue
			}
			base := ExpertFile(variant, ex.name)
			for _, name := range []string{base + ".pth", base + "-quant.pth", base + ".safetensors", base + "-quant.safetensors"} {
				if p := filepath.Join(dir, name); exists(p) {
					*ex.dst = p
					break
				}
			}
			if *ex.dst == "" {
				missing = append(missing, fmt.Sprintf("%s.pth or %s-quant.pth (%s-noise expert, from %s)", base, base, ex.name, url))
			}
		}
	}
	missing = append(missing, findShared(dir, &out, true)...) // the image is encoded with the Wan VAE
	missing = append(missing, findTiny(dir, &out)...)
	for _, p := range []string{override.DiTHigh, override.DiTLow, override.VAE, override.TextEncoder, override.Tokenizer, tinyOverride(override)} {
		if p != "" && !exists(p) {
			missing = append(missing, p+" (given on the command line)")
		}
	}
	if len(missing) > 0 {
		return out, newMissingError(dir, missing)
	}
	return out, nil
}
