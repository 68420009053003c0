package tokenizer

import (
	"bufio"
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
)

func readSpiece(t testing.TB) *spModel {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir(t), SpieceModel))
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseSentencePiece(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSpieceSpec checks the protobuf reader against the spec the reference
// read back from the same spiece.model (cases.json "spiece").
func TestSpieceSpec(t *testing.T) {
	cases := loadCases(t)
	m := readSpiece(t)
	want := cases.Spiece
	if len(m.Pieces) != want.Pieces {
		t.Errorf("pieces: got %d, want %d", len(m.Pieces), want.Pieces)
	}
	tr := m.Trainer
	if tr.ModelType != 1 || tr.ByteFallback != want.Trainer.ByteFallback || tr.UnkID != want.Trainer.UnkID ||
		tr.EosID != want.Trainer.EosID || tr.PadID != want.Trainer.PadID {
		t.Errorf("trainer spec: got %+v, want %+v", tr, want.Trainer)
	}
	n := m.Normalizer
	w := want.Normalizer
	if n.Name != w.Name || n.AddDummyPrefix != w.AddDummyPrefix || n.RemoveExtraWhitespaces != w.RemoveExtraWhitespaces ||
		n.EscapeWhitespaces != w.EscapeWhitespaces || len(n.PrecompiledCharsmap) != w.CharsmapBytes {
		t.Errorf("normalizer spec: got %s %v %v %v %d bytes, want %+v", n.Name, n.AddDummyPrefix,
			n.RemoveExtraWhitespaces, n.EscapeWhitespaces, len(n.PrecompiledCharsmap), w)
	}
	if m.Pieces[tr.UnkID].Type != pieceUnknown || m.Pieces[tr.EosID].Type != pieceControl {
		t.Errorf("unk/eos piece types %d/%d", m.Pieces[tr.UnkID].Type, m.Pieces[tr.EosID].Type)
	}
}

// spEncoder is SentencePiece's own unigram encoder (normaliser with
// longest-match, float32 scores, only normal/user-defined pieces in the
// lattice, one Viterbi over the whole normalised text, unknown runs merged).
// It exists to check the charsmap and lattice code against sp_ids.
type spEncoder struct {
	m        *spModel
	cmap     *charsmap
	trie     *pieceTrie
	ids      []int32 // trie id -> piece id
	minScore float32
	maxScore float32
	unk      int32
}

func newSPEncoder(t testing.TB, m *spModel) *spEncoder {
	e := &spEncoder{m: m, minScore: 3.4e38, maxScore: 1.17549435e-38, unk: -1}
	var vocab []string
	for i, p := range m.Pieces {
		switch p.Type {
		case pieceNormal, pieceUserDefined, pieceUnused:
			vocab = append(vocab, p.Piece)
			e.ids = append(e.ids, int32(i))
		case pieceUnknown:
			e.unk = int32(i)
		}
		if p.Type == pieceNormal {
			e.minScore = min(e.minScore, p.Score)
			e.maxScore = max(e.maxScore, p.Score)
		}
	}
	e.trie = newPieceTrie(vocab)
	c, err := decodeCharsmap(m.Normalizer.PrecompiledCharsmap)
	if err != nil {
		t.Fatal(err)
	}
	e.cmap = c
	return e
}

func (e *spEncoder) encode(text string) []int32 {
	s := normalizeSP(e.cmap, e.m.Normalizer, e.m.Trainer.TreatWhitespaceAsSuffix, text)
	type node struct {
		score float32
		start int
		id    int32
	}
	best := make([]node, len(s)+1)
	for i := range best {
		best[i].start = -1
	}
	unkScore := e.minScore - 10
	for start := 0; start < len(s); {
		_, mblen := utf8.DecodeRuneInString(s[start:])
		single := false
		n := int32(0)
		for pos := start; pos < len(s); pos++ {
			if n = e.trie.child(n, s[pos]); n < 0 {
				break
			}
			k := e.trie.nodes[n].id
			if k < 0 {
				continue
			}
			p := e.m.Pieces[e.ids[k]]
			if p.Type == pieceUnused {
				continue
			}
			length := pos + 1 - start
			score := p.Score
			if p.Type == pieceUserDefined {
				score = float32(length)*e.maxScore - 0.1
			}
			if c := score + best[start].score; best[pos+1].start < 0 || c > best[pos+1].score {
				best[pos+1] = node{c, start, e.ids[k]}
			}
			if length == mblen {
				single = true
			}
		}
		if !single {
			if c := unkScore + best[start].score; best[start+mblen].start < 0 || c > best[start+mblen].score {
				best[start+mblen] = node{c, start, e.unk}
			}
		}
		start += mblen
	}
	var out []int32
	for end := len(s); end > 0; end = best[end].start {
		out = append(out, best[end].id)
	}
	slices.Reverse(out)
	merged := out[:0]
	for i, id := range out {
		if id == e.unk && i > 0 && out[i-1] == e.unk {
			continue
		}
		merged = append(merged, id)
	}
	return merged
}

// TestSentencePieceReference checks normalizeSP (charsmap decoding,
// longest match, whitespace rules) against sp_normalized and the lattice
// against sp_ids, on all three texts of every case.
func TestSentencePieceReference(t *testing.T) {
	cases := loadCases(t)
	e := newSPEncoder(t, readSpiece(t))
	badNorm, badIDs, n := 0, 0, 0
	for _, c := range cases.Cases {
		for kind, g := range map[string]*goldenEncoding{"raw": &c.Raw, "clean": &c.Clean, "ref_clean": &c.RefClean} {
			n++
			if got := normalizeSP(e.cmap, e.m.Normalizer, false, g.Text); got != g.SpNormalized {
				badNorm++
				t.Errorf("%s/%s: normalized\n got  %q\n want %q", c.Name, kind, trunc(got), trunc(g.SpNormalized))
			}
			if got := e.encode(g.Text); !slices.Equal(got, g.SpIDs) {
				badIDs++
				t.Errorf("%s/%s: sp ids\n got  %v\n want %v", c.Name, kind, got, g.SpIDs)
			}
		}
	}
	t.Logf("SentencePiece path: %d/%d normalized texts and %d/%d id lists differ", badNorm, n, badIDs, n)
}

// TestCorpusAgreesWithSentencePiece tokenizes every cleaned line of the
// training corpus with the reference (tokenizers) pipeline and with the
// SentencePiece path: they agree wherever cleaning has removed the inputs
// on which the two are documented to differ.
func TestCorpusAgreesWithSentencePiece(t *testing.T) {
	p := golden.Path(t, "tokenizer/corpus.txt.gz") // skips without a set, fails if $TURBODIFFUSION_GOLDEN lacks it
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	tk := loadT(t, goldenDir(t))
	e := newSPEncoder(t, readSpiece(t))
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	lines, bad, tokens := 0, 0, 0
	for sc.Scan() {
		text := Clean(sc.Text())
		lines++
		got := tk.Tokenize(text)
		tokens += len(got)
		if want := e.encode(text); !slices.Equal(got, want) {
			bad++
			if bad <= 5 {
				t.Errorf("corpus line %d %q:\n tokenizers path %v\n sentencepiece   %v", lines, trunc(text), got, want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if lines == 0 {
		t.Errorf("%s: no lines", p)
	}
	t.Logf("corpus: %d lines, %d tokens, %d lines differ between the two paths", lines, tokens, bad)
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
