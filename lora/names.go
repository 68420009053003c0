package lora

import (
	"strconv"
	"strings"
)

// Module names. Every key of a LoRA file names a module of the model; the
// files people share spell those names in one of three ways:
//
//   - Wan's own module paths, as in the released checkpoints
//     ("blocks.3.self_attn.q", "ffn.0", "text_embedding.2"): PEFT/ComfyUI
//     exports (lora_A/lora_B, diff, diff_b) and musubi-tuner;
//   - diffusers' WanTransformer3DModel paths ("blocks.3.attn1.to_q",
//     "ffn.net.0.proj", "condition_embedder.time_proj", "proj_out"), where
//     norm2 is Wan's norm3 (diffusers swapped the names) and
//     scale_shift_table is a modulation;
//   - either of those with the dots turned into underscores, after kohya's
//     "lora_unet_" ("lora_unet_blocks_3_self_attn_q").
//
// resolveModule maps all three onto Wan's paths, which is what the
// checkpoints this program loads use.

// blockModules are the Wan modules inside a block that can carry a delta;
// the value is the diffusers spelling ("" when diffusers has no such module).
var blockModules = []struct{ wan, diffusers string }{
	{"modulation", "scale_shift_table"},
	{"self_attn.q", "attn1.to_q"},
	{"self_attn.k", "attn1.to_k"},
	{"self_attn.v", "attn1.to_v"},
	{"self_attn.o", "attn1.to_out.0"},
	{"self_attn.norm_q", "attn1.norm_q"},
	{"self_attn.norm_k", "attn1.norm_k"},
	{"cross_attn.q", "attn2.to_q"},
	{"cross_attn.k", "attn2.to_k"},
	{"cross_attn.v", "attn2.to_v"},
	{"cross_attn.o", "attn2.to_out.0"},
	{"cross_attn.norm_q", "attn2.norm_q"},
	{"cross_attn.norm_k", "attn2.norm_k"},
	{"norm3", "norm2"},
	{"ffn.0", "ffn.net.0.proj"},
	{"ffn.2", "ffn.net.2"},
	// TurboDiffusion's SLA linear-branch projection (no diffusers name).
	{"self_attn.attn_op.local_attn.proj_l", ""},
}

// topModules are the Wan modules outside the blocks, with their diffusers
// spelling.
var topModules = []struct{ wan, diffusers string }{
	{"patch_embedding", "patch_embedding"},
	{"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
	{"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
	{"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
	{"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
	{"time_projection.1", "condition_embedder.time_proj"},
	{"head.head", "proj_out"},
	{"head.modulation", "scale_shift_table"},
}

// prefixes are stripped from the front of a key (repeatedly, in any
// order): trainers and converters wrap the model in these.
var prefixes = []string{
	"base_model.model.",
	"model.diffusion_model.",
	"diffusion_model.",
	"transformer.",
	"model.",
	"unet.",
}

// kohyaPrefixes start kohya-style keys, whose module path uses underscores.
var kohyaPrefixes = []string{"lora_unet_", "lora_transformer_", "lycoris_"}

// moduleTable maps module spellings (Wan, diffusers, and both with
// underscores) to Wan paths, for blocks 0..blocks-1.
type moduleTable struct {
	dotted     map[string]string
	underscore map[string]string
}

func newModuleTable(blocks int) *moduleTable {
	t := &moduleTable{dotted: map[string]string{}, underscore: map[string]string{}}
	add := func(spelling, wan string) {
		if spelling == "" {
			return
		}
		if _, ok := t.dotted[spelling]; !ok {
			t.dotted[spelling] = wan
		}
		u := strings.ReplaceAll(spelling, ".", "_")
		if _, ok := t.underscore[u]; !ok {
			t.underscore[u] = wan
		}
	}
	// Wan spellings first, so they win where a diffusers spelling of one
	// module is a Wan spelling of another (norm2/norm3 are not: Wan blocks
	// have no norm2 parameters; scale_shift_table is only diffusers').
	for _, m := range topModules {
		add(m.wan, m.wan)
	}
	for i := 0; i < blocks; i++ {
		p := "blocks." + strconv.Itoa(i) + "."
		for _, m := range blockModules {
			add(p+m.wan, p+m.wan)
		}
	}
	for _, m := range topModules {
		add(m.diffusers, m.wan)
	}
	for i := 0; i < blocks; i++ {
		p := "blocks." + strconv.Itoa(i) + "."
		for _, m := range blockModules {
			if m.diffusers != "" {
				add(p+m.diffusers, p+m.wan)
			}
		}
	}
	return t
}

// resolve returns the Wan path of a module spelling, given whether the key
// was kohya-style (underscores).
func (t *moduleTable) resolve(module string, kohya bool) (string, bool) {
	if kohya {
		w, ok := t.underscore[module]
		return w, ok
	}
	w, ok := t.dotted[module]
	return w, ok
}

// maxBlockIndex finds the largest N of "blocks.N." or "blocks_N_" in keys,
// so the module table covers every block a file names (-1 if none).
func maxBlockIndex(keys []string) int {
	m := -1
	for _, k := range keys {
		for _, sep := range []string{"blocks.", "blocks_"} {
			rest := k
			for {
				i := strings.Index(rest, sep)
				if i < 0 {
					break
				}
				rest = rest[i+len(sep):]
				j := 0
				for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
					j++
				}
				if j > 0 && j <= 6 {
					if n, err := strconv.Atoi(rest[:j]); err == nil {
						m = max(m, n)
					}
				}
			}
		}
	}
	return m
}

// role is what a key holds for its module.
type role int

const (
	roleDown  role = iota // lora_A / lora_down: [rank, in]
	roleUp                // lora_B / lora_up: [out, rank]
	roleAlpha             // scalar alpha (kohya; some PEFT exports)
	roleDiff              // full delta of the module's weight
	roleDiffB             // full delta of the module's bias
)

// suffixes name each role; the longest match wins.
var suffixes = []struct {
	s string
	r role
}{
	{".lora_A.default.weight", roleDown},
	{".lora_B.default.weight", roleUp},
	{".lora_A.weight", roleDown},
	{".lora_B.weight", roleUp},
	{".lora_down.weight", roleDown},
	{".lora_up.weight", roleUp},
	{".lora.down.weight", roleDown},
	{".lora.up.weight", roleUp},
	{".lora_B.bias", roleDiffB}, // diffusers' spelling of diff_b
	{".alpha", roleAlpha},
	{".diff_b", roleDiffB},
	{".diff", roleDiff},
}

// unsupportedSuffixes are parts of other adapter kinds, named in errors.
var unsupportedSuffixes = map[string]string{
	".dora_scale":      "DoRA",
	".hada_w1_a":       "LoHa",
	".hada_w1_b":       "LoHa",
	".hada_w2_a":       "LoHa",
	".hada_w2_b":       "LoHa",
	".lokr_w1":         "LoKr",
	".lokr_w2":         "LoKr",
	".lokr_w1_a":       "LoKr",
	".lokr_w1_b":       "LoKr",
	".lokr_w2_a":       "LoKr",
	".lokr_w2_b":       "LoKr",
	".lora_mid.weight": "LoCon (Tucker)",
}

// splitKey splits a file key into the module spelling, its role, and
// whether the spelling is kohya's (underscores). ok is false when the key
// has no known role suffix.
func splitKey(key string) (module string, r role, kohya bool, ok bool) {
	best := -1
	for i, s := range suffixes {
		if strings.HasSuffix(key, s.s) && (best < 0 || len(s.s) > len(suffixes[best].s)) {
			best = i
		}
	}
	if best < 0 {
		return "", 0, false, false
	}
	module = strings.TrimSuffix(key, suffixes[best].s)
	r = suffixes[best].r
	for changed := true; changed; {
		changed = false
		for _, p := range kohyaPrefixes {
			if rest, found := strings.CutPrefix(module, p); found {
				module, kohya, changed = rest, true, true
			}
		}
		for _, p := range prefixes {
			if rest, found := strings.CutPrefix(module, p); found {
				module, changed = rest, true
			}
		}
	}
	return module, r, kohya, true
}

// unsupportedKind names the adapter kind a key belongs to when it is one
// this package does not merge (DoRA, LoHa, LoKr, ...), else "".
func unsupportedKind(key string) string {
	for s, kind := range unsupportedSuffixes {
		if strings.HasSuffix(key, s) {
			return kind
		}
	}
	return ""
}
