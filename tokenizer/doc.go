// Package tokenizer is a pure-Go umT5 (google/umt5-xxl) tokenizer: the text
// encoder's input ids for a prompt, as the reference pipeline
// (Wan `tokenizers.py` / TD `rcm/utils/umt5.py`) computes them with Hugging
// Face transformers.
//
// The pipeline reproduced here is the one the reference's AutoTokenizer runs:
//
//  1. split out literal added tokens (`</s>`, `<pad>`, `<unk>`, sentinels);
//  2. normalise each remaining segment with the SentencePiece precompiled
//     charsmap the way the tokenizers `Precompiled` normaliser applies it
//     (one extended grapheme cluster at a time; see normalize.go);
//  3. split on Unicode whitespace, prefix every word with `▁` and split at
//     every `▁` (WhitespaceSplit + Metaspace);
//  4. segment every piece with the unigram Viterbi search (unknown runs fuse
//     into one unk id; byte fallback when the model has byte pieces);
//  5. append `</s>`, truncate to maxLen, pad with `<pad>`.
//
// Model data comes from tokenizer.json (preferred) or spiece.model; when both
// are present they must agree (vocabulary, scores, charsmap, unk id).
// Clean reproduces the reference's prompt cleaning (ftfy.fix_text, then
// html.unescape twice and whitespace collapsing); clean.go documents where it
// differs from ftfy.
package tokenizer
