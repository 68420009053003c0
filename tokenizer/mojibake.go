package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// fixEncoding is a reduced ftfy fix_encoding for the mojibake prompts
// realistically carry: UTF-8 text that was decoded as Latin-1 or
// Windows-1252 ("cafÃ©", "â€œquotedâ€\x9d"). Each step, repeated until
// the text stops changing:
//
//  1. text that is ASCII or does not look like mojibake is left alone;
//  2. if the whole text encodes to Latin-1, or else to sloppy Windows-1252,
//     and those bytes are valid UTF-8, the decoded text replaces it;
//  3. otherwise runs of characters that spell UTF-8 sequences in
//     Windows-1252 are decoded in place (ftfy's decode_inconsistent_utf8);
//  4. otherwise C1 controls become their Windows-1252 characters.
//
// Differences from ftfy, all on text that is not realistic prompt input:
// "looks like mojibake" is a C1 control, or a Windows-1252 spelling of a
// UTF-8 lead byte followed by one of a continuation byte — not ftfy's full
// badness heuristic; the other single-byte code pages ftfy tries (1250, 1251,
// 1253, 1254, 1257, ISO-8859-2, MacRoman, CP437) are not tried; the byte
// repairs restore_byte_a0 and replace_lossy_sequences are not applied; and
// CESU-8 / Java-style sequences (ftfy's utf-8-variants) are not decoded.
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

func fixEncodingStep(s string) string {
	if isASCII(s) || !looksLikeMojibake(s) {
		return s
	}
	latin1, ok1 := encodeLatin1(s)
	if ok1 && utf8.Valid(latin1) {
		return string(latin1)
	}
	if b, ok := encodeSloppy1252(s); ok && utf8.Valid(b) {
		return string(b)
	}
	if t := decodeEmbeddedUTF8(s); t != s {
		return t
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

// sloppyByte returns the sloppy Windows-1252 byte of r (ok false if none).
func sloppyByte(r rune) (byte, bool) {
	switch {
	case r < 0x80 || r >= 0xA0 && r <= 0xFF:
		return byte(r), true
	case r >= 0x80 && r <= 0x9F:
		// Only the five undefined bytes read as themselves.
		b := byte(r)
		return b, cp1252C1[b-0x80] == r
	}
	for i, c := range cp1252C1 {
		if c == r {
			return byte(0x80 + i), true
		}
	}
	return 0, false
}

func encodeSloppy1252(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := sloppyByte(r)
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

func encodeLatin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

// looksLikeMojibake reports a C1 control, or a character whose sloppy
// Windows-1252 byte is a UTF-8 lead byte (0xC2-0xF4) followed by one whose
// byte is a continuation byte (0x80-0xBF).
func looksLikeMojibake(s string) bool {
	prevLead := false
	for _, r := range s {
		if r >= 0x80 && r <= 0x9F {
			return true
		}
		b, ok := sloppyByte(r)
		if prevLead && ok && b >= 0x80 && b <= 0xBF {
			return true
		}
		prevLead = ok && b >= 0xC2 && b <= 0xF4
	}
	return false
}

// decodeEmbeddedUTF8 decodes, in place, every run of characters whose
// sloppy Windows-1252 bytes spell one complete multi-byte UTF-8 character.
func decodeEmbeddedUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if seq, n := mojibakeSequence(s[i:]); n > 0 {
			b.Write(seq)
			i += n
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		b.WriteString(s[i : i+w])
		i += w
	}
	return b.String()
}

// mojibakeSequence checks whether s starts with characters whose sloppy
// Windows-1252 bytes are one complete multi-byte UTF-8 character; it
// returns those bytes and the length of s they cover.
func mojibakeSequence(s string) ([]byte, int) {
	r, w := utf8.DecodeRuneInString(s)
	lead, ok := sloppyByte(r)
	if !ok || lead < 0xC2 || lead > 0xF4 {
		return nil, 0
	}
	need := 1
	if lead >= 0xE0 {
		need = 2
	}
	if lead >= 0xF0 {
		need = 3
	}
	buf := []byte{lead}
	n := w
	for range need {
		r, w := utf8.DecodeRuneInString(s[n:])
		c, ok := sloppyByte(r)
		if w == 0 || !ok || c < 0x80 || c > 0xBF {
			return nil, 0
		}
		buf = append(buf, c)
		n += w
	}
	if !utf8.Valid(buf) {
		return nil, 0
	}
	return buf, n
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
