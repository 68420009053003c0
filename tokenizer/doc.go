// Package tokenizer is a pure-Go umT5 (google/umt5-xxl) tokenizer: the text
// encoder's input ids for a prompt, as the reference pipeline
// (Wan `tokenizers.py` / TD `rcm/utils/umt5.py`) computes them with Hugging
// Face transformers.
//
// Use Load on the tokenizer folder, then EncodePrompt(prompt, 512), which is
// Encode(Clean(prompt), 512).
//
// The pipeline reproduced is the one transformers 5 builds for T5 (the
// reference that made the conformance set):
//
//  1. split out literal added tokens (`</s>`, `<pad>`, `<unk>`, sentinels),
//     leftmost-longest, in the raw text;
//  2. normalise each remaining segment with the SentencePiece precompiled
//     charsmap the way the tokenizers `Precompiled` normaliser applies it
//     (one extended grapheme cluster at a time; see normalize.go);
//  3. split on Unicode whitespace, prefix every word with `▁` and split at
//     every `▁` (WhitespaceSplit + Metaspace);
//  4. segment every piece with the unigram Viterbi search (float64 scores,
//     an unknown character scored lowest-score − 10, unknown runs fused into
//     one unk id; byte pieces instead when byte fallback is on);
//  5. keep at most maxLen−1 ids, append `</s>`, pad with `<pad>`.
//
// Model data comes from tokenizer.json (preferred) or spiece.model (a
// protobuf reader for the needed fields); when both are present they must
// agree on pieces, scores, charsmap and unk id. tokenizer_config.json may
// add tokens (added_tokens_decoder, or T5 `extra_ids` sentinels).
//
// Deliberate choices and known differences:
//   - The unk id is the model file's (spiece.model's UNKNOWN piece /
//     tokenizer.json's unk_id), as SentencePiece, transformers 4 and the Hub
//     files do; transformers 5 hard-codes 2, which differs for a vocabulary
//     that puts `<unk>` elsewhere.
//   - byte_fallback is tokenizer.json's when present (transformers'
//     converters do not carry SentencePiece's flag over; Tokenizer.Notes
//     records a mismatch), else spiece.model's.
//   - The stored tokenizer.json pipeline is not interpreted: a "classic"
//     file (Precompiled+Strip+Replace, Metaspace only, as transformers 4
//     loads it) differs from the reference only on a literal `<unk>` in a
//     prompt when it is not listed as an added token, and on raw text with
//     whitespace the charsmap leaves alone (U+0085); Clean removes the latter.
//   - Grapheme clusters come from github.com/rivo/uniseg (Unicode 15.0
//     rules, without the Indic conjunct rule GB9c). Only clusters under 6
//     bytes are looked up whole, and those never depend on GB9c or on the
//     emoji ZWJ rule, so the result matches the tokenizers crate.
//   - Invalid UTF-8 input reads as one U+FFFD per invalid byte.
//
// Clean reproduces the reference's prompt cleaning: ftfy.fix_text (ftfy.go,
// mojibake.go; heuristics and code-page tables generated from ftfy's source
// by gen_ftfy.py), Python's html.unescape twice (HTML5 entity table from
// gen_entities.py), and whitespace collapsing.
//
// SentencePiece's own encoder (longest-match normalisation over the whole
// text, float32 scores) differs from the reference on literal special
// tokens, half-width kana with voiced marks, stacked combining marks and
// U+0085 in raw text; the tests keep an implementation of it to check the
// charsmap and lattice against the reference's sp_ids.
package tokenizer
