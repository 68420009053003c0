package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGoldenTokens checks Piece against the reference token strings and the
// special ids the loaders report.
func TestGoldenTokens(t *testing.T) {
	cases := loadCases(t)
	tk := loadT(t, goldenDir(t))
	tr := cases.Spiece.Trainer
	if int(tk.EOSID()) != tr.EosID || int(tk.PadID()) != tr.PadID || int(tk.UnkID()) != tr.UnkID || tk.VocabSize() != cases.HF.Len {
		t.Errorf("eos/pad/unk/size = %d/%d/%d/%d, want %d/%d/%d/%d", tk.EOSID(), tk.PadID(), tk.UnkID(), tk.VocabSize(),
			tr.EosID, tr.PadID, tr.UnkID, cases.HF.Len)
	}
	for _, c := range cases.Cases {
		e := c.RefClean
		var got []string
		for _, id := range e.InputIDs[:e.NTokens] {
			got = append(got, tk.Piece(id))
		}
		if !slices.Equal(got, e.Tokens) {
			t.Errorf("%s: tokens %q, want %q", c.Name, got, e.Tokens)
		}
	}
}

func TestEncodeLengths(t *testing.T) {
	tk := loadT(t, goldenDir(t))
	text := strings.Repeat("a cat walking on the grass ", 40)
	all := tk.Tokenize(text)
	if len(all) < 100 {
		t.Fatalf("only %d tokens", len(all))
	}
	for _, maxLen := range []int{1, 2, 10, len(all), len(all) + 1, len(all) + 2, 512} {
		ids, mask := tk.Encode(text, maxLen)
		if len(ids) != maxLen || len(mask) != maxLen {
			t.Fatalf("maxLen %d: got %d ids, %d mask", maxLen, len(ids), len(mask))
		}
		n := min(len(all), maxLen-1)
		if !slices.Equal(ids[:n], all[:n]) || ids[n] != tk.EOSID() {
			t.Errorf("maxLen %d: ids %v do not start with %d tokens then </s>", maxLen, ids[:n+1], n)
		}
		for i := range maxLen {
			wantMask, pad := int32(0), i > n
			if i <= n {
				wantMask = 1
			}
			if mask[i] != wantMask || pad && ids[i] != tk.PadID() {
				t.Fatalf("maxLen %d: position %d id %d mask %d", maxLen, i, ids[i], mask[i])
			}
		}
	}
	ids, mask := tk.Encode(text, 0)
	if len(ids) != len(all)+1 || ids[len(all)] != tk.EOSID() || slices.Contains(mask, 0) {
		t.Errorf("maxLen 0: %d ids, want %d unpadded with </s>", len(ids), len(all)+1)
	}
	if ids, _ := tk.Encode("", 4); !slices.Equal(ids, []int32{tk.EOSID(), tk.PadID(), tk.PadID(), tk.PadID()}) {
		t.Errorf("empty prompt: %v", ids)
	}
}

func TestInvalidUTF8(t *testing.T) {
	tk := loadT(t, goldenDir(t))
	// Each invalid byte reads as one U+FFFD (an unknown character here).
	got := tk.Tokenize("a\xff\xfeb")
	want := tk.Tokenize("a\uFFFD\uFFFDb")
	if !slices.Equal(got, want) {
		t.Errorf("invalid UTF-8: %v, want %v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := goldenDir(t)
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sp, err := os.ReadFile(filepath.Join(dir, SpieceModel))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, TokenizerJSON))
	if err != nil {
		t.Fatal(err)
	}
	piece3, score3 := vocabEntry(t, js, 3)
	badScore := editVocab(t, js, 3, "high")
	changed := editVocab(t, js, 3, score3+0.25)
	sub := filepath.Join(tmp, "both")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(sub, SpieceModel), sp, 0o644)
	os.WriteFile(filepath.Join(sub, TokenizerJSON), []byte(changed), 0o644)

	for _, c := range []struct {
		name  string
		paths []string
		want  string // substring of the error
	}{
		{"nothing", nil, "no path"},
		{"missing", []string{filepath.Join(tmp, "nope")}, "no such file"},
		{"empty dir", []string{t.TempDir()}, "neither tokenizer.json nor spiece.model"},
		{"odd file", []string{write("vocab.txt", []byte("x"))}, "unrecognised file"},
		{"truncated spiece", []string{write("t.model", sp[:len(sp)/2])}, "t.model: corrupt SentencePiece model"},
		{"garbage spiece", []string{write("g.model", []byte("\xff\xff\xff\xff\xff"))}, "g.model: corrupt"},
		{"empty spiece", []string{write("e.model", nil)}, "no vocabulary pieces"},
		{"not json", []string{write("n.json", []byte("{"))}, "n.json: not a valid tokenizer.json"},
		{"bpe", []string{write("b.json", []byte(`{"model":{"type":"BPE"}}`))}, `model type "BPE"`},
		{"bad vocab entry", []string{write("v.json", []byte(badScore))}, fmt.Sprintf("v.json: model.vocab[3] (%q)", piece3)},
		{"no charsmap", []string{write("c.json", []byte(`{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0]]}}`))}, "no Precompiled charsmap"},
		{"disagree", []string{sub}, fmt.Sprintf("disagree: piece 3 (%q) scores %v and %v", piece3, score3+0.25, score3)},
		{"bad config", []string{filepath.Join(dir, SpieceModel), write(TokenizerConfig, []byte("[1"))}, "tokenizer_config.json: not valid JSON"},
	} {
		_, err := Load(c.paths...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestExtraIDs checks T5 sentinels synthesised from tokenizer_config.json's
// extra_ids (ids after the vocabulary, in reverse order) are matched as
// added tokens.
func TestExtraIDs(t *testing.T) {
	dir := goldenDir(t)
	cfg := filepath.Join(t.TempDir(), TokenizerConfig)
	if err := os.WriteFile(cfg, []byte(`{"extra_ids": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tk := loadT(t, filepath.Join(dir, SpieceModel), cfg)
	n := int32(len(tk.vocab))
	got := tk.Tokenize("a<extra_id_0>b <extra_id_2>")
	a, b := tk.Tokenize("a"), tk.Tokenize("b")
	want := slices.Concat(a, []int32{n + 2}, b, []int32{n})
	if !slices.Equal(got, want) {
		t.Errorf("sentinels: %v, want %v", got, want)
	}
	if tk.VocabSize() != int(n)+3 || tk.Piece(n) != "<extra_id_2>" {
		t.Errorf("VocabSize %d, Piece(%d) %q", tk.VocabSize(), n, tk.Piece(n))
	}
}

// TestByteFallbackNote: when tokenizer.json and spiece.model disagree only
// on byte_fallback, tokenizer.json's flag is used and the difference noted.
func TestByteFallbackNote(t *testing.T) {
	dir := goldenDir(t)
	js, err := os.ReadFile(filepath.Join(dir, TokenizerJSON))
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(js, &j); err != nil {
		t.Fatal(err)
	}
	model := j["model"].(map[string]any)
	orig, _ := model["byte_fallback"].(bool)
	model["byte_fallback"] = !orig
	flipped, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), TokenizerJSON)
	if err := os.WriteFile(p, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	tk := loadT(t, p, filepath.Join(dir, SpieceModel))
	if tk.byteFallback == orig || len(tk.Notes) != 1 || !strings.Contains(tk.Notes[0], "byte_fallback") {
		t.Errorf("byteFallback %v (file had %v), notes %q", tk.byteFallback, orig, tk.Notes)
	}
}

// vocabEntry returns entry i of a tokenizer.json's model.vocab.
func vocabEntry(t *testing.T, js []byte, i int) (string, float64) {
	t.Helper()
	var j struct {
		Model struct {
			Vocab [][2]any `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(js, &j); err != nil || len(j.Model.Vocab) <= i {
		t.Fatalf("tokenizer.json vocab: %v", err)
	}
	return j.Model.Vocab[i][0].(string), j.Model.Vocab[i][1].(float64)
}

// editVocab returns tokenizer.json with the score of vocab entry i replaced.
func editVocab(t *testing.T, js []byte, i int, score any) string {
	t.Helper()
	var j map[string]any
	if err := json.Unmarshal(js, &j); err != nil {
		t.Fatal(err)
	}
	j["model"].(map[string]any)["vocab"].([]any)[i].([]any)[1] = score
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConcurrentEncode: one Tokenizer shared by goroutines gives the same
// ids as sequential use (scratch buffers are per call).
func TestConcurrentEncode(t *testing.T) {
	cases := loadCases(t)
	tk := loadT(t, goldenDir(t))
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			for k := range cases.Cases {
				c := &cases.Cases[(k+g*7)%len(cases.Cases)]
				if ids, _ := tk.EncodePrompt(c.Text, cases.MaxLength); !slices.Equal(ids, c.RefClean.InputIDs) {
					done <- fmt.Errorf("%s: ids differ under concurrency", c.Name)
					return
				}
			}
			done <- nil
		}(g)
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
