package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Tokenizer encodes prompts to umT5 input ids. It is safe for concurrent use.
type Tokenizer struct {
	vocab    []string
	scores   []float64
	ids      map[string]int32
	trie     *pieceTrie
	minScore float64

	unkID, eosID, padID int32
	byteFallback        bool
	byteIDs             [256]int32

	cmap   *charsmap // nil: no normalisation
	raw    *matcher  // added tokens matched in raw text
	normed *matcher  // added tokens matched in normalised text
	added  []*addedToken

	// Source names the file the vocabulary was read from.
	Source string
	// Notes lists harmless differences found between the files given
	// (for callers to log).
	Notes []string

	pool sync.Pool // *scratch
}

type scratch struct {
	norm []byte     // normalised segment
	word []byte     // ▁-prefixed word
	best []bestNode // Viterbi lattice
}

// VocabSize returns the number of ids (vocabulary plus added tokens).
func (t *Tokenizer) VocabSize() int {
	n := len(t.vocab)
	for _, a := range t.added {
		n = max(n, int(a.ID)+1)
	}
	return n
}

// UnkID, EOSID and PadID return the special ids in use.
func (t *Tokenizer) UnkID() int32 { return t.unkID }

// EOSID returns the id appended after every prompt (`</s>`).
func (t *Tokenizer) EOSID() int32 { return t.eosID }

// PadID returns the padding id (`<pad>`).
func (t *Tokenizer) PadID() int32 { return t.padID }

// Piece returns the string of an id ("" if out of range).
func (t *Tokenizer) Piece(id int32) string {
	if id >= 0 && int(id) < len(t.vocab) {
		return t.vocab[id]
	}
	for _, a := range t.added {
		if a.ID == id {
			return a.Content
		}
	}
	return ""
}

// Tokenize returns the ids of text without `</s>`, padding or truncation.
// The text is used as given (see Clean for the reference's cleaning).
// Invalid UTF-8 bytes are read as U+FFFD each, as a Python string would hold
// them after a lossy decode.
func (t *Tokenizer) Tokenize(text string) []int32 {
	if !utf8.ValidString(text) {
		text = validUTF8(text)
	}
	sc, _ := t.pool.Get().(*scratch)
	if sc == nil {
		sc = &scratch{}
	}
	var out []int32
	words := func(seg []byte) {
		splitWords(seg, &sc.word, func(piece []byte) {
			out, sc.best = t.viterbi(piece, out, sc.best)
		})
	}
	t.raw.split(text, func(seg string) {
		if t.cmap != nil {
			sc.norm = t.cmap.normalize(seg, sc.norm[:0])
		} else {
			sc.norm = append(sc.norm[:0], seg...)
		}
		if t.normed == nil {
			words(sc.norm)
			return
		}
		t.normed.split(string(sc.norm), func(seg string) { words([]byte(seg)) },
			func(a *addedToken) { out = append(out, a.ID) })
	}, func(a *addedToken) { out = append(out, a.ID) })
	t.pool.Put(sc)
	return out
}

// Encode tokenizes text (used as given; pass Clean(prompt) for the
// reference behaviour) like the reference call tok(text, padding=
// "max_length", truncation=True, max_length=maxLen): at most maxLen-1 ids,
// then `</s>`, then `<pad>` up to maxLen. mask is 1 on the ids and `</s>`, 0
// on padding. maxLen <= 0 means no truncation and no padding.
func (t *Tokenizer) Encode(text string, maxLen int) (ids, mask []int32) {
	tok := t.Tokenize(text)
	if maxLen > 0 && len(tok) > maxLen-1 {
		tok = tok[:maxLen-1]
	}
	n := len(tok) + 1
	size := max(maxLen, n)
	if maxLen == 0 || maxLen < 0 {
		size = n
	}
	ids = make([]int32, size)
	mask = make([]int32, size)
	copy(ids, tok)
	ids[len(tok)] = t.eosID
	for i := range size {
		if i < n {
			mask[i] = 1
		} else {
			ids[i] = t.padID
		}
	}
	return ids, mask
}

// EncodePrompt is Encode(Clean(prompt), maxLen): the reference pipeline.
func (t *Tokenizer) EncodePrompt(prompt string, maxLen int) (ids, mask []int32) {
	return t.Encode(Clean(prompt), maxLen)
}

// validUTF8 replaces every byte of s that is not part of a valid UTF-8
// sequence by U+FFFD (what ranging over the string yields).
func validUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}
