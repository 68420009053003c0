package tokenizer

import (
	"strings"
	"unicode"
)

//go:generate sh -c "python3 gen_entities.py > html_entities.go && gofmt -w html_entities.go"
// ftfy_tables.go needs ftfy's source: python3 gen_ftfy.py /path/to/python-ftfy > ftfy_tables.go

// Clean is the reference's prompt cleaning (Wan/TD umT5 tokenizer,
// clean="whitespace"): ftfy.fix_text (see fixText for what is reproduced),
// html.unescape twice, strip, every whitespace run to one space, strip.
// Whitespace is Python's str.isspace set: Unicode White_Space plus the
// information separators U+001C-U+001F.
func Clean(prompt string) string {
	s := fixText(prompt)
	s = htmlUnescape(htmlUnescape(s))
	return collapseSpace(s)
}

// pyIsSpace is Python's str.isspace (what \s and str.strip use).
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1C && r <= 0x1F
}

// collapseSpace strips, replaces each whitespace run by one space, strips.
func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	pending := false
	for _, r := range s {
		if pyIsSpace(r) {
			pending = b.Len() > 0
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		b.WriteRune(r)
	}
	return b.String()
}
