package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// cp1252C1 is windows-1252's mapping of bytes 0x80-0x9F; the five bytes the
// code page leaves undefined map to the C1 control of the same value (the
// "sloppy" reading ftfy and Python's html module both use).
var cp1252C1 = [32]rune{
	0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
	0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
}

// htmlUnescape is Python's html.unescape: numeric references (decimal or
// hex, ';' optional) with the HTML5 replacements for NUL, CR, C1 and
// invalid code points, and named references (longest known prefix for
// names the standard allows without ';').
func htmlUnescape(s string) string {
	i := strings.IndexByte(s, '&')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i:] // starts with '&'
		n, rep := charref(s)
		if n == 0 {
			b.WriteByte('&')
			s = s[1:]
		} else {
			b.WriteString(rep)
			s = s[n:]
		}
		i = strings.IndexByte(s, '&')
	}
	b.WriteString(s)
	return b.String()
}

// charref matches Python's _charref at the '&' starting s and returns the
// bytes consumed and the replacement (n == 0: no match).
func charref(s string) (n int, rep string) {
	if len(s) < 2 {
		return 0, ""
	}
	if s[1] == '#' {
		j, base := 2, 10
		if len(s) > 2 && (s[2] == 'x' || s[2] == 'X') {
			j, base = 3, 16
		}
		start := j
		var num uint64
		big := false
		for j < len(s) && digitVal(s[j], base) >= 0 {
			num = num*uint64(base) + uint64(digitVal(s[j], base))
			if num > 0x10FFFF {
				big = true
				num = 0x110000
			}
			j++
		}
		if j == start {
			return 0, "" // "&#" or "&#x" alone: no match
		}
		if j < len(s) && s[j] == ';' {
			j++
		}
		if big {
			return j, "\uFFFD"
		}
		return j, numericRef(rune(num))
	}
	// Named: [^\t\n\f <&#;]{1,32};? counted in characters.
	j, chars := 1, 0
	for j < len(s) && chars < 32 {
		c := s[j]
		if c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';' {
			break
		}
		_, w := utf8.DecodeRuneInString(s[j:])
		j += w
		chars++
	}
	if chars == 0 {
		return 0, ""
	}
	if j < len(s) && s[j] == ';' {
		j++
	}
	name := s[1:j]
	if v, ok := html5Entities[name]; ok {
		return j, v
	}
	// Longest known prefix of at least 2 characters (x > 1 in Python counts
	// characters; entity names are ASCII, so bytes suffice for a match).
	for x := len(name) - 1; x > 1; x-- {
		if !utf8.RuneStart(name[x]) {
			continue
		}
		if v, ok := html5Entities[name[:x]]; ok {
			return j, v + name[x:]
		}
	}
	return j, "&" + name
}

func digitVal(c byte, base int) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case base == 16 && c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case base == 16 && c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// numericRef applies Python's rules for a numeric reference below 0x110000.
func numericRef(r rune) string {
	switch {
	case r == 0:
		return "\uFFFD"
	case r == 0x0D:
		return "\r"
	case r >= 0x80 && r <= 0x9F:
		return string(cp1252C1[r-0x80])
	case r >= 0xD800 && r <= 0xDFFF:
		return "\uFFFD"
	case r >= 0x1 && r <= 0x8, r == 0xB, r >= 0xE && r <= 0x1F, r == 0x7F,
		r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE:
		return ""
	}
	return string(r)
}

// ftfyUnescapeHTML is ftfy's unescape_html: only complete references
// "&#?[0-9A-Za-z]{1,24};" are decoded — named ones from the HTML5 table
// (plus ftfy's upper-cased names), numeric ones through htmlUnescape.
func ftfyUnescapeHTML(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		s = s[i:]
		j := 1
		if len(s) > 1 && s[1] == '#' {
			j = 2
		}
		k := j
		for k < len(s) && k-j < 25 && isASCIIAlnum(s[k]) {
			k++
		}
		if k == j || k-j > 24 || k >= len(s) || s[k] != ';' {
			b.WriteByte('&')
			s = s[1:]
			continue
		}
		ref := s[:k+1]
		s = s[k+1:]
		switch {
		case html5Entities[ref[1:]] != "" && j == 1:
			b.WriteString(html5Entities[ref[1:]])
		case ftfyUpperEntities[ref] != "":
			b.WriteString(ftfyUpperEntities[ref])
		case j == 2:
			if u := htmlUnescape(ref); strings.Contains(u, ";") {
				b.WriteString(ref)
			} else {
				b.WriteString(u)
			}
		default:
			b.WriteString(ref)
		}
	}
}

func isASCIIAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
