package tokenizer

import (
	"bytes"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// metaspace is U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space symbol.
const metaspace = "\u2581"

// normalize applies the charsmap as the tokenizers Precompiled normaliser
// does (the reference path): text is cut into extended grapheme clusters; a
// cluster shorter than 6 bytes is replaced whole by the replacement of the
// shortest charsmap key that prefixes it, if any; otherwise (or when the
// cluster is 6 bytes or longer) each character is looked up alone.
// SentencePiece itself takes the longest match anywhere instead; the two
// differ on long clusters such as half-width katakana with a voiced mark or
// stacked combining marks.
func (c *charsmap) normalize(s string, out []byte) []byte {
	state := -1
	for len(s) > 0 {
		var g string
		g, s, _, state = uniseg.FirstGraphemeClusterInString(s, state)
		if len(g) < 6 {
			if r, ok := c.lookup(g); ok {
				out = append(out, r...)
				continue
			}
		}
		for len(g) > 0 {
			_, n := utf8.DecodeRuneInString(g)
			ch := g[:n]
			g = g[n:]
			if r, ok := c.lookup(ch); ok {
				out = append(out, r...)
			} else {
				out = append(out, ch...)
			}
		}
	}
	return out
}

// splitWords is WhitespaceSplit followed by Metaspace(▁, prepend always,
// split): words are cut at Unicode whitespace, each word not starting with ▁
// gets one, and every ▁ starts a new pre-token. fn receives each pre-token;
// buf is scratch space for the prefixed word and fn must not keep it.
func splitWords(s []byte, buf *[]byte, fn func(piece []byte)) {
	for len(s) > 0 {
		i := bytes.IndexFunc(s, unicode.IsSpace)
		var w []byte
		if i < 0 {
			w, s = s, nil
		} else {
			w = s[:i]
			_, n := utf8.DecodeRune(s[i:])
			s = s[i+n:]
		}
		if len(w) == 0 {
			continue
		}
		if !bytes.HasPrefix(w, []byte(metaspace)) {
			*buf = append(append((*buf)[:0], metaspace...), w...)
			w = *buf
		}
		for len(w) > 0 {
			j := bytes.Index(w[len(metaspace):], []byte(metaspace))
			if j < 0 {
				fn(w)
				break
			}
			fn(w[:len(metaspace)+j])
			w = w[len(metaspace)+j:]
		}
	}
}
