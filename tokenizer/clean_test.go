package tokenizer

import "testing"

// Expected values below were checked with CPython's html.unescape.
func TestHTMLUnescape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"&amp;", "&"}, {"&amp", "&"}, {"&ampx", "&x"}, {"&notit;", "¬it;"}, {"&notin;", "∉"},
		{"&#65", "A"}, {"&#x41;", "A"}, {"&#X41", "A"}, {"&#", "&#"}, {"&#x", "&#x"}, {"&#xZ", "&#xZ"},
		{"&#0;", "\uFFFD"}, {"&#13;", "\r"}, {"&#128;", "€"}, {"&#x81;", "\u0081"}, {"&#1;", ""},
		{"&#xFFFE;", ""}, {"&#x10FFFF;", ""}, {"&#x110000;", "\uFFFD"}, {"&#99999999999999999999;", "\uFFFD"},
		{"&#xD800;", "\uFFFD"}, {"&;", "&;"}, {"& x", "& x"}, {"&AElig", "Æ"}, {"&AMP;", "&"},
		{"&Amp;", "&Amp;"}, {"a&b&lt;c", "a&b<c"}, {"&eacute", "é"}, {"&eacutex;", "éx;"},
		{"&éacute;", "&éacute;"}, {"&abcdefghijklmnopqrstuvwxyzabcdefghijkl;", "&abcdefghijklmnopqrstuvwxyzabcdefghijkl;"},
		{"&lt&gt", "<>"}, {"no entities", "no entities"},
	} {
		if got := htmlUnescape(c.in); got != c.want {
			t.Errorf("htmlUnescape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Expected values follow ftfy 6.3's rules (fixes.py / chardata.py).
func TestFixText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain prompt", "plain prompt"},
		{"&NTILDE; &ntilde; &amp;amp;amp;", "Ñ ñ &"},           // ftfy decodes repeatedly, and upper-cased names
		{"&ampx &amp <b>&amp;</b>", "&ampx &amp <b>&amp;</b>"}, // '<' turns unescaping off; bare names never decoded
		{"&#x41;&#0;", "A\uFFFD"},
		{"\x1b[1;31mred\x1b[0m", "red"},
		{"ĳ ﬁ ﬆ", "ij fi st"},
		{"ＦＵＬＬ　ｗｉｄｔｈ ｶﾞ", "FULL width ガ"},
		{"‘a’ “b” ʼc‛", "'a' \"b\" 'c'"},
		{"a\r\nb\rc\u2028d\u2029e", "a\nb\nc\nd\ne"},
		{"a\x00b\x07c\x0bd\x0ce\ufeff\u206af", "abcd\x0cef"},
		{"cafe\u0301", "café"},
		{"cafÃ©", "café"},
		{"â€œquotedâ€\u009d", "\"quoted\""},
		{"mixed 中文 and cafÃ©", "mixed 中文 and café"},
		{"next\u0085line", "next…line"},
		{"«french» 中文", "«french» 中文"},
		// A few of ftfy's own test cases (tests/test-cases/*.json).
		{"voilÃ  le travail", "voilà le travail"},            // restore_byte_a0
		{"Ø±Ø³Ø§Ù„Ø©", "رسالة"},                              // Arabic via sloppy Windows-1252
		{"Ř±ŘłŘ§Ů„Ř©", "رسالة"},                              // Arabic via Windows-1250
		{"ÿ±ÿ≥ÿßŸÑÿ©", "رسالة"},                              // Arabic via MacRoman
		{"РґРѕСЂРѕРіРµ #С„СѓС‚Р±РѕР»", "дороге #футбол"},     // Russian via Windows-1251
		{"Hi guys í\u00a0½í¸\u008d", "Hi guys 😍"},            // CESU-8 emoji
		{"â€œlossy decodingâ€�", "\"lossy decoding\uFFFD"},   // replace_lossy_sequences
		{"Bremer/Mccoy – DrÃ¥ber", "Bremer/Mccoy – DrÃ¥ber"}, // ambiguous: left alone
		{"Η ¨ανατροφή¨ δυστυχώς", "Η ¨ανατροφή¨ δυστυχώς"},   // not mojibake
		{"CAFÉ…", "CAFÉ…"},                                   // not mojibake
		{"Here's a control character: \x1a", "Here's a control character: "},
	} {
		if got := fixText(c.in); got != c.want {
			t.Errorf("fixText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCleanWhitespace(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{" \t\n ", ""},
		{"  a  b\t\tc \u3000d\u00a0e\u2029f  ", "a b c d e f"},
		{"e\x1cf", "ef"}, // ftfy drops U+001C before whitespace is collapsed
		{"a &amp;lt; b", "a < b"},
	} {
		if got := Clean(c.in); got != c.want {
			t.Errorf("Clean(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCollapseSpace(t *testing.T) {
	// Python's \s and strip() also cover U+001C-U+001F, U+0085 and U+00A0.
	if got, want := collapseSpace("\x1f a\x1cb\u0085c\u00a0\u00a0d \u2003"), "a b c d"; got != want {
		t.Errorf("collapseSpace = %q, want %q", got, want)
	}
}
