package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/models/taehv"
)

// Files are the checkpoint paths one generation needs.
type Files struct {
	DiT         string // TurboWan DiT (.pth or .safetensors)
	DiTHigh     string // Wan2.2 I2V high-noise expert (image-to-video)
	DiTLow      string // Wan2.2 I2V low-noise expert (image-to-video)
	VAE         string // Wan2.1_VAE.pth
	TextEncoder string // models_t5_umt5-xxl-enc-bf16.pth
	Tokenizer   string // folder (or file) of the google/umt5-xxl tokenizer
	// TinyVAE, when set, decodes with the tiny VAE (TAEHV, taew2_1) instead
	// of the Wan VAE: the weights' path, or TinyVAEFromFolder in the
	// override given to FindModels to find them in the models folder.
	// Text-to-video then needs no Wan VAE; image-to-video still encodes the
	// image with it.
	TinyVAE string
}

// Released file names and where users get them.
const (
	VAEFile         = "Wan2.1_VAE.pth"
	TextEncoderFile = "models_t5_umt5-xxl-enc-bf16.pth"
	TokenizerDir    = "google/umt5-xxl"
	wanRepo         = "https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B"
)

// The tiny VAE (--vae tiny): madebyollin/taehv's TAEW2.1 weights, either
// format.
var TinyVAEFiles = []string{taehv.WeightsFileSafetensors, taehv.WeightsFile}

// TinyVAEFromFolder as Files.TinyVAE asks FindModels for the tiny VAE from
// the models folder.
const TinyVAEFromFolder = "tiny"

// Variants are the TurboWan text-to-video DiTs by the name their files carry.
var Variants = map[string]string{
	"TurboWan2.1-T2V-1.3B-480P": "https://huggingface.co/TurboDiffusion/TurboWan2.1-T2V-1.3B-480P",
	"TurboWan2.1-T2V-14B-480P":  "https://huggingface.co/TurboDiffusion/TurboWan2.1-T2V-14B-480P",
	"TurboWan2.1-T2V-14B-720P":  "https://huggingface.co/TurboDiffusion/TurboWan2.1-T2V-14B-720P",
}

// DefaultVariant is the model generate uses unless told otherwise.
const DefaultVariant = "TurboWan2.1-T2V-1.3B-480P"

// MissingError lists every file a models folder lacks and where to get it.
type MissingError struct {
	Dir     string
	NoDir   bool     // Dir itself does not exist (or is not a folder)
	Missing []string // "name (from URL)"
}

func newMissingError(dir string, missing []string) *MissingError {
	fi, err := os.Stat(dir)
	return &MissingError{Dir: dir, NoDir: dir != "" && (err != nil || !fi.IsDir()), Missing: missing}
}

func (e *MissingError) Error() string {
	list := strings.Join(e.Missing, "\n  ")
	switch {
	case e.Dir == "":
		return fmt.Sprintf("missing %d file(s):\n  %s", len(e.Missing), list)
	case e.NoDir:
		return fmt.Sprintf("models folder %s does not exist (or is not a folder); it should hold %d file(s):\n  %s", e.Dir, len(e.Missing), list)
	}
	return fmt.Sprintf("models folder %s is missing %d file(s):\n  %s", e.Dir, len(e.Missing), list)
}

// FindModels resolves the files of a variant in a models folder holding the
// released files under their released names. For the DiT it takes
// <variant>.pth, else <variant>-quant.pth (also .safetensors). Explicit
// paths in override win over the folder. Every missing file is named at
// once, with where to download it.
func FindModels(dir, variant string, override Files) (Files, error) {
	if variant == "" {
		variant = DefaultVariant
	}
	out := override
	var missing []string
	if out.DiT == "" {
		url, ok := Variants[variant]
		if !ok {
			var names []string
			for n := range Variants {
				names = append(names, n)
			}
			return Files{}, fmt.Errorf("unknown model variant %q (choose one of %s, or pass --dit)", variant, strings.Join(sortedStrings(names), ", "))
		}
		for _, name := range []string{variant + ".pth", variant + "-quant.pth", variant + ".safetensors", variant + "-quant.safetensors"} {
			if p := filepath.Join(dir, name); exists(p) {
				out.DiT = p
				break
			}
		}
		if out.DiT == "" {
			missing = append(missing, fmt.Sprintf("%s.pth or %s-quant.pth (from %s)", variant, variant, url))
		}
	}
	// Text-to-video decodes with the tiny VAE or the Wan VAE, not both.
	missing = append(missing, findShared(dir, &out, out.TinyVAE == "")...)
	missing = append(missing, findTiny(dir, &out)...)
	for _, p := range []string{override.DiT, override.VAE, override.TextEncoder, override.Tokenizer, tinyOverride(override)} {
		if p != "" && !exists(p) {
			missing = append(missing, p+" (given on the command line)")
		}
	}
	if len(missing) > 0 {
		return out, newMissingError(dir, missing)
	}
	return out, nil
}

// findTiny resolves Files.TinyVAE = TinyVAEFromFolder to the folder's
// taew2_1.safetensors or taew2_1.pth, or names it as missing with where to
// download it.
func findTiny(dir string, out *Files) []string {
	if out.TinyVAE != TinyVAEFromFolder {
		return nil
	}
	for _, name := range TinyVAEFiles {
		if p := filepath.Join(dir, name); exists(p) {
			out.TinyVAE = p
			return nil
		}
	}
	return []string{fmt.Sprintf("%s or %s (the tiny VAE of --vae tiny, from %s)", TinyVAEFiles[0], TinyVAEFiles[1], taehv.Source)}
}

// tinyOverride is the tiny VAE path given on the command line, if any.
func tinyOverride(f Files) string {
	if f.TinyVAE == TinyVAEFromFolder {
		return ""
	}
	return f.TinyVAE
}

// findShared fills the files text-to-video and image-to-video share (VAE,
// text encoder, tokenizer) from the folder unless already set, and returns
// the missing ones with where to download them. needVAE false (text-to-video
// decoding with the tiny VAE) takes the Wan VAE if present without asking
// for it.
func findShared(dir string, out *Files, needVAE bool) []string {
	var missing []string
	if out.VAE == "" {
		if p := filepath.Join(dir, VAEFile); exists(p) {
			out.VAE = p
		} else if needVAE {
			missing = append(missing, fmt.Sprintf("%s (from %s)", VAEFile, wanRepo))
		}
	}
	if out.TextEncoder == "" {
		if p := filepath.Join(dir, TextEncoderFile); exists(p) {
			out.TextEncoder = p
		} else {
			missing = append(missing, fmt.Sprintf("%s (from %s)", TextEncoderFile, wanRepo))
		}
	}
	if out.Tokenizer == "" {
		found := false
		for _, sub := range []string{TokenizerDir, "umt5-xxl", "tokenizer"} {
			d := filepath.Join(dir, sub)
			if exists(filepath.Join(d, "spiece.model")) || exists(filepath.Join(d, "tokenizer.json")) {
				out.Tokenizer, found = d, true
				break
			}
		}
		if !found {
			missing = append(missing, fmt.Sprintf("%s/ with spiece.model and tokenizer.json (from %s, folder google/umt5-xxl)", TokenizerDir, wanRepo))
		}
	}
	return missing
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func sortedStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
