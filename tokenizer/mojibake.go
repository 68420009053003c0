package tokenizer

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// fixEncoding is ftfy's fix_encoding (ftfy 6.3): while the text changes,
// take one step of _fix_encoding_one_step_and_explain:
//
//  1. ASCII text, or text ftfy's badness heuristic (is_bad) finds clean, is
//     left alone;
//  2. for each single-byte encoding ftfy tries, in its order, that can
//     encode the whole text: encode it, repair the bytes (restore_byte_a0,
//     and for the "sloppy" code pages replace_lossy_sequences) and decode
//     them as UTF-8 (ftfy's utf-8-variants when 0xED or 0xC0 occur); the
//     first that decodes wins;
//  3. otherwise decode_inconsistent_utf8 fixes embedded UTF-8 mojibake;
//  4. otherwise Latin-1 text is re-read as Windows-1252, and C1 controls
//     are replaced by their Windows-1252 characters.
//
// The heuristic and tables are generated from ftfy's source (gen_ftfy.py).
func fixEncoding(s string) string {
	for range maxFixPasses {
		t := fixEncodingStep(s)
		if t == s {
			break
		}
		s = t
	}
	return s
}

var badnessRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(badnessPattern) })

// isBad is ftfy's is_bad: the text holds a sequence typical of mojibake.
func isBad(s string) bool { return badnessRE().MatchString(s) }

// charmapEnc is one single-byte encoding as ftfy uses it.
type charmapEnc struct {
	name   string
	sloppy bool
	dec    [256]rune
	enc    map[rune]byte
}

var charmaps = sync.OnceValue(func() []*charmapEnc {
	var out []*charmapEnc
	for _, e := range charmapEncodings {
		c := &charmapEnc{name: e.name, sloppy: e.sloppy, enc: map[rune]byte{}}
		i := 0
		for _, r := range e.bytes {
			c.dec[i] = r
			if _, dup := c.enc[r]; !dup {
				c.enc[r] = byte(i)
			}
			i++
		}
		if i != 256 {
			panic("tokenizer: charmap table " + e.name + " is not 256 characters")
		}
		out = append(out, c)
	}
	return out
})

// possible is ftfy's possible_encoding: every character is ASCII other
// than U+001A, or is what one of the bytes 0x80-0xFF or 0x1A decodes to.
func (c *charmapEnc) possible(s string) bool {
	for _, r := range s {
		if r <= 0x19 || r >= 0x1b && r <= 0x7f || r == c.dec[0x1a] {
			continue
		}
		if b, ok := c.enc[r]; !ok || b < 0x80 {
			return false
		}
	}
	return true
}

func (c *charmapEnc) encode(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		out = append(out, c.enc[r])
	}
	return out
}

func fixEncodingStep(s string) string {
	if isASCII(s) || !isBad(s) {
		return s
	}
	latin1 := false
	for _, c := range charmaps() {
		if !c.possible(s) {
			continue
		}
		if c.name == "latin-1" {
			latin1 = true
		}
		b := c.encode(s)
		if c.name != "macroman" && hasAlteredUTF8(b) {
			b = restoreByteA0(b)
		}
		if c.sloppy {
			b = replaceLossySequences(b)
		}
		if t, ok := decodeUTF8Variants(b); ok {
			return t
		}
	}
	if t := decodeInconsistentUTF8(s); t != s {
		return t
	}
	if latin1 {
		// Latin-1 read as strict Windows-1252 (the five undefined bytes fail).
		ok := true
		t := strings.Map(func(r rune) rune {
			if r >= 0x80 && r <= 0x9f {
				if c := cp1252C1[r-0x80]; c != r {
					return c
				}
				ok = false
			}
			return r
		}, s)
		if ok && t != s {
			return t
		}
	}
	return fixC1Controls(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// bytePattern is a fixed-length byte pattern: one set per position.
type bytePattern []func(byte) bool

func (p bytePattern) at(b []byte, i int) bool {
	if i+len(p) > len(b) {
		return false
	}
	for k, f := range p {
		if !f(b[i+k]) {
			return false
		}
	}
	return true
}

func in(lo, hi byte) func(byte) bool { return func(c byte) bool { return c >= lo && c <= hi } }
func is(set ...byte) func(byte) bool {
	return func(c byte) bool { return bytes.IndexByte(set, c) >= 0 }
}
func or(fs ...func(byte) bool) func(byte) bool {
	return func(c byte) bool {
		for _, f := range fs {
			if f(c) {
				return true
			}
		}
		return false
	}
}

var (
	contNo85A0 = or(in(0x80, 0x84), in(0x86, 0x9f), in(0xa1, 0xbf))
	cont       = in(0x80, 0xbf)
	space      = is(' ')
	// ftfy's ALTERED_UTF8_RE: UTF-8 sequences whose 0xA0 byte became a space.
	alteredUTF8 = []bytePattern{
		{is(0xc2, 0xc3, 0xc5, 0xce, 0xd0, 0xd9), space},
		{is(0xe2, 0xe3), space, contNo85A0},
		{in(0xe0, 0xe3), contNo85A0, space},
		{is(0xf0), space, cont, cont},
		{is(0xf0), cont, space, cont},
		{is(0xf0), cont, cont, space},
	}
	// A CESU-8 surrogate pair (ftfy's CESU8_RE).
	cesu8Pair = bytePattern{is(0xed), in(0xa0, 0xaf), cont, is(0xed), in(0xb0, 0xbf), cont}
	sub       = is(0x1a)
	subQ      = is(0x1a, '?')
	subCont   = or(is(0x1a), cont)
	subQCont  = or(is(0x1a, '?'), cont)
	// ftfy's LOSSY_UTF8_RE: UTF-8 sequences with bytes lost to '?' or SUB.
	lossyUTF8 = []bytePattern{
		{in(0xc2, 0xdf), sub},
		{in(0xc2, 0xc3), is('?')},
		{is(0xed), in(0xa0, 0xaf), subQ, is(0xed), in(0xb0, 0xbf), subQCont},
		{is(0xed), in(0xa0, 0xaf), subQCont, is(0xed), in(0xb0, 0xbf), subQ},
		{in(0xe0, 0xef), subQ, subCont},
		{in(0xe0, 0xef), subCont, subQ},
		{in(0xf0, 0xf4), subQ, subCont, subCont},
		{in(0xf0, 0xf4), subCont, subQ, subCont},
		{in(0xf0, 0xf4), subCont, subCont, subQ},
		{sub},
	}
)

// firstMatch returns the length of the first alternative matching at i.
func firstMatch(alts []bytePattern, b []byte, i int) int {
	for _, p := range alts {
		if p.at(b, i) {
			return len(p)
		}
	}
	return 0
}

func hasAlteredUTF8(b []byte) bool {
	for i := range b {
		if firstMatch(alteredUTF8, b, i) > 0 {
			return true
		}
	}
	return false
}

// restoreByteA0 is ftfy's restore_byte_a0: "Ã " not starting a Portuguese
// word becomes "à ", then every altered sequence gets its 0xA0 back.
func restoreByteA0(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == 0xc3 && i+1 < len(b) && b[i+1] == ' ' {
			rest := b[i+2:]
			keep := false
			for _, w := range []string{" ", "quele", "quela", "quilo", "s "} {
				if bytes.HasPrefix(rest, []byte(w)) {
					keep = true
				}
			}
			if !keep {
				out = append(out, 0xc3, 0xa0, ' ')
				i++
				continue
			}
		}
		out = append(out, b[i])
	}
	b, out = out, nil
	for i := 0; i < len(b); {
		if n := firstMatch(alteredUTF8, b, i); n > 0 {
			for _, c := range b[i : i+n] {
				if c == ' ' {
					c = 0xa0
				}
				out = append(out, c)
			}
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// replaceLossySequences is ftfy's replace_lossy_sequences: each lossy
// sequence becomes the UTF-8 bytes of U+FFFD.
func replaceLossySequences(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		if n := firstMatch(lossyUTF8, b, i); n > 0 {
			out = append(out, "\uFFFD"...)
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// decodeUTF8Variants decodes strict UTF-8 plus, like ftfy's utf-8-variants
// codec, CESU-8 surrogate pairs and the Java-style NUL C0 80; ok is false
// on anything else that is not UTF-8.
func decodeUTF8Variants(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), true
	}
	var sb strings.Builder
	for i := 0; i < len(b); {
		if b[i] == 0xc0 && i+1 < len(b) && b[i+1] == 0x80 {
			sb.WriteByte(0)
			i += 2
			continue
		}
		if cesu8Pair.at(b, i) {
			r := rune(b[i+1]&0x0f)<<16 + rune(b[i+2]&0x3f)<<10 + rune(b[i+4]&0x0f)<<6 + rune(b[i+5]&0x3f) + 0x10000
			sb.WriteRune(r)
			i += 6
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return "", false
		}
		sb.WriteRune(r)
		i += n
	}
	return sb.String(), true
}

var clueSets = sync.OnceValue(func() [5]map[rune]bool {
	var out [5]map[rune]bool
	for k, s := range []string{clueFirstOf2, clueFirstOf3, clueFirstOf4, clueContinuation, clueContinuationStrict} {
		out[k] = map[rune]bool{}
		for _, r := range s {
			out[k][r] = true
		}
	}
	return out
})

// utf8Run matches ftfy's UTF8_DETECTOR_RE body at the start of s: one or
// more characters spelling a UTF-8 lead byte followed by its continuation
// bytes. It returns the matched length in bytes.
func utf8Run(s string) int {
	sets := clueSets()
	n := 0
	for {
		r, w := utf8.DecodeRuneInString(s[n:])
		if w == 0 {
			return n
		}
		need := 0
		switch {
		case sets[0][r]:
			need = 1
		case sets[1][r]:
			need = 2
		case sets[2][r]:
			need = 3
		default:
			return n
		}
		m := n + w
		for range need {
			c, cw := utf8.DecodeRuneInString(s[m:])
			if cw == 0 || !sets[3][c] {
				return n
			}
			m += cw
		}
		n = m
	}
}

// decodeInconsistentUTF8 is ftfy's decode_inconsistent_utf8: each run of
// UTF8_DETECTOR_RE (not preceded by a strict continuation character) that
// is shorter than the text and looks bad is replaced by its fix_encoding.
func decodeInconsistentUTF8(s string) string {
	sets := clueSets()
	var b strings.Builder
	prev := rune(-1)
	for i := 0; i < len(s); {
		if !sets[4][prev] {
			if n := utf8Run(s[i:]); n > 0 {
				sub := s[i : i+n]
				if n < len(s) && isBad(sub) {
					b.WriteString(fixEncoding(sub))
				} else {
					b.WriteString(sub)
				}
				prev, _ = utf8.DecodeLastRuneInString(sub)
				i += n
				continue
			}
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		b.WriteString(s[i : i+w])
		prev = r
		i += w
	}
	return b.String()
}

// fixC1Controls is ftfy's fix_c1_controls: U+0080-U+009F become the
// characters sloppy Windows-1252 gives those bytes.
func fixC1Controls(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 && r <= 0x9F }) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9F {
			return cp1252C1[r-0x80]
		}
		return r
	}, s)
}
