package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is a token matched literally in the text before the model runs
// (HF AddedVocabulary): the special tokens `<pad>`, `</s>`, `<unk>` and the
// sentinels. Normalized tokens are matched in normalised text, the others in
// the raw text.
type addedToken struct {
	Content    string
	ID         int32
	SingleWord bool
	LStrip     bool
	RStrip     bool
	Normalized bool
	Special    bool
}

// matcher finds added tokens leftmost-longest (as the aho-corasick automaton
// of the tokenizers crate does).
type matcher struct {
	byFirst [256][]*addedToken // by first byte, longest first
}

func newMatcher(toks []*addedToken) *matcher {
	if len(toks) == 0 {
		return nil
	}
	m := &matcher{}
	for _, t := range toks {
		if t.Content == "" {
			continue
		}
		m.byFirst[t.Content[0]] = append(m.byFirst[t.Content[0]], t)
	}
	for _, l := range &m.byFirst {
		sort.SliceStable(l, func(a, b int) bool { return len(l[a].Content) > len(l[b].Content) })
	}
	return m
}

// split calls text(segment) for the text between matches and tok(t) for
// each match, in order, with the lstrip/rstrip/single_word rules of
// AddedVocabulary::find_matches.
func (m *matcher) split(s string, text func(string), tok func(*addedToken)) {
	if m == nil {
		text(s)
		return
	}
	from := 0 // start of the pending text segment
	for i := 0; i < len(s); {
		var hit *addedToken
		for _, t := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], t.Content) {
				hit = t
				break
			}
		}
		if hit == nil {
			i++
			continue
		}
		start, stop := i, i+len(hit.Content)
		i = stop
		if start < from {
			continue
		}
		if hit.SingleWord && (endsWithWord(s[:start]) || startsWithWord(s[stop:])) {
			continue
		}
		if hit.LStrip {
			ns := len(strings.TrimRightFunc(s[:start], unicode.IsSpace))
			start = max(ns, from)
		}
		if hit.RStrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		if from < start {
			text(s[from:start])
		}
		tok(hit)
		from = stop
	}
	if from < len(s) || len(s) == 0 {
		text(s[from:])
	}
}

func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || r == '_' ||
		unicode.Is(unicode.Pc, r)
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}
