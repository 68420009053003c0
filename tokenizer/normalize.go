package tokenizer

import (
	"bytes"
	"strings"
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
// stacked combining marks (see normalizeSP).
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

// normalizeSP is SentencePiece's Normalizer::Normalize for a model without
// user-defined symbols: longest charsmap match at each position, leading,
// trailing and repeated spaces dropped, spaces escaped to ▁ and a dummy ▁
// prefix, as the spec's flags say. The encoder uses the tokenizers pipeline
// instead; this is kept to check the charsmap against SentencePiece's own
// normalised text.
func normalizeSP(c *charsmap, spec spNormalizerSpec, suffix bool, s string) string {
	prefix := func(in string) (string, int) {
		if c != nil {
			if v, n, ok := c.prefix(in, true); ok {
				if r, ok := c.replacement(v); ok {
					return r, n
				}
			}
		}
		r, n := utf8.DecodeRuneInString(in)
		if r == utf8.RuneError && n <= 1 {
			return "\uFFFD", 1
		}
		return in[:n], n
	}
	if spec.RemoveExtraWhitespaces {
		for len(s) > 0 {
			r, n := prefix(s)
			if r != " " {
				break
			}
			s = s[n:]
		}
	}
	if s == "" {
		return ""
	}
	space := " "
	if spec.EscapeWhitespaces {
		space = metaspace
	}
	var b strings.Builder
	if !suffix && spec.AddDummyPrefix {
		b.WriteString(space)
	}
	prevSpace := spec.RemoveExtraWhitespaces
	for len(s) > 0 {
		r, n := prefix(s)
		s = s[n:]
		if prevSpace {
			r = strings.TrimLeft(r, " ")
		}
		if r != "" {
			b.WriteString(strings.ReplaceAll(r, " ", space))
			prevSpace = strings.HasSuffix(r, " ")
		}
		if !spec.RemoveExtraWhitespaces {
			prevSpace = false
		}
	}
	out := b.String()
	if spec.RemoveExtraWhitespaces {
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	if suffix && spec.AddDummyPrefix {
		out += space
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
