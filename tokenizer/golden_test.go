package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
)

// goldenEncoding is one encoding of a case in cases.json.
type goldenEncoding struct {
	Text          string             `json:"text"`
	SpIDs         []int32            `json:"sp_ids"`
	SpNormalized  string             `json:"sp_normalized"`
	InputIDs      []int32            `json:"input_ids"`
	AttentionMask []int32            `json:"attention_mask"`
	NTokens       int                `json:"n_tokens"`
	Tokens        []string           `json:"tokens"`
	HFEqualsSP    bool               `json:"hf_equals_sp"`
	Alt           map[string][]int32 `json:"alt"`
}

type goldenCase struct {
	Name     string         `json:"name"`
	Text     string         `json:"text"`
	Raw      goldenEncoding `json:"raw"`
	Clean    goldenEncoding `json:"clean"`
	RefClean goldenEncoding `json:"ref_clean"`
}

type goldenCases struct {
	MaxLength int `json:"max_length"`
	HF        struct {
		Len int `json:"len"`
	} `json:"hf"`
	Spiece struct {
		Pieces  int `json:"pieces"`
		Trainer struct {
			ByteFallback bool `json:"byte_fallback"`
			UnkID        int  `json:"unk_id"`
			EosID        int  `json:"eos_id"`
			PadID        int  `json:"pad_id"`
		} `json:"trainer_spec"`
		Normalizer struct {
			Name                   string `json:"name"`
			AddDummyPrefix         bool   `json:"add_dummy_prefix"`
			RemoveExtraWhitespaces bool   `json:"remove_extra_whitespaces"`
			EscapeWhitespaces      bool   `json:"escape_whitespaces"`
			CharsmapBytes          int    `json:"precompiled_charsmap_bytes"`
		} `json:"normalizer_spec"`
	} `json:"spiece"`
	Cases []goldenCase `json:"cases"`
}

// goldenDir is the tokenizer fixture folder of the conformance set.
func goldenDir(t testing.TB) string {
	return golden.Path(t, "tokenizer")
}

var (
	casesOnce sync.Map // dir -> *goldenCases
)

func loadCases(t testing.TB) *goldenCases {
	t.Helper()
	p := filepath.Join(goldenDir(t), "cases.json")
	if v, ok := casesOnce.Load(p); ok {
		return v.(*goldenCases)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCases
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if len(c.Cases) == 0 {
		t.Fatalf("%s: no cases", p)
	}
	casesOnce.Store(p, &c)
	return &c
}

func loadT(t testing.TB, paths ...string) *Tokenizer {
	t.Helper()
	tk, err := Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// checkIDs compares Encode's output on every case text of one kind with
// the reference input_ids and mask, logging each mismatch and the count.
func checkIDs(t *testing.T, tk *Tokenizer, cases *goldenCases, kind string, pick func(*goldenCase) *goldenEncoding) {
	t.Helper()
	bad := 0
	for i := range cases.Cases {
		c := &cases.Cases[i]
		e := pick(c)
		ids, mask := tk.Encode(e.Text, cases.MaxLength)
		if !slices.Equal(ids, e.InputIDs) || !slices.Equal(mask, e.AttentionMask) {
			bad++
			n := min(e.NTokens+2, len(e.InputIDs))
			var got []string
			for _, id := range ids[:min(n, len(ids))] {
				got = append(got, tk.Piece(id))
			}
			t.Errorf("%s/%s: ids differ\n got  %v\n want %v\n got  %q\n want %q", c.Name, kind, ids[:min(n, len(ids))], e.InputIDs[:n], got, e.Tokens)
		}
	}
	t.Logf("%s: %d/%d cases differ from the reference input_ids", kind, bad, len(cases.Cases))
}

func TestGoldenIDs(t *testing.T) {
	cases := loadCases(t)
	dir := goldenDir(t)
	for _, src := range []struct {
		name  string
		files []string // in the set's tokenizer folder; none = the folder
	}{
		{"dir", nil},
		{"spiece", []string{SpieceModel}},
		{"json", []string{TokenizerJSON}},
		{"classic", []string{"tokenizer.classic.json"}},
		{"classic+spiece", []string{"tokenizer.classic.json", SpieceModel}},
	} {
		t.Run(src.name, func(t *testing.T) {
			paths := []string{dir}
			if src.files != nil {
				paths = nil
				for _, f := range src.files {
					// Skips without a set, fails if $TURBODIFFUSION_GOLDEN lacks it.
					paths = append(paths, golden.Path(t, filepath.Join("tokenizer", f)))
				}
			}
			tk := loadT(t, paths...)
			checkIDs(t, tk, cases, "raw", func(c *goldenCase) *goldenEncoding { return &c.Raw })
			checkIDs(t, tk, cases, "clean", func(c *goldenCase) *goldenEncoding { return &c.Clean })
			checkIDs(t, tk, cases, "ref_clean", func(c *goldenCase) *goldenEncoding { return &c.RefClean })
		})
	}
}

// TestGoldenClean checks Clean against the reference cleaning (ftfy, html
// unescape, whitespace) on every case, and the cleaned text's ids.
func TestGoldenClean(t *testing.T) {
	cases := loadCases(t)
	tk := loadT(t, goldenDir(t))
	badText, badIDs := 0, 0
	for _, c := range cases.Cases {
		got := Clean(c.Text)
		if got != c.RefClean.Text {
			badText++
			t.Errorf("%s: Clean(%q)\n got  %q\n want %q", c.Name, trunc(c.Text), trunc(got), trunc(c.RefClean.Text))
		}
		if ids, mask := tk.EncodePrompt(c.Text, cases.MaxLength); !slices.Equal(ids, c.RefClean.InputIDs) || !slices.Equal(mask, c.RefClean.AttentionMask) {
			badIDs++
			t.Errorf("%s: EncodePrompt ids differ from the reference", c.Name)
		}
	}
	t.Logf("Clean: %d/%d texts and %d/%d id lists differ from the reference", badText, len(cases.Cases), badIDs, len(cases.Cases))
}

func trunc(s string) string {
	if r := []rune(s); len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return s
}
