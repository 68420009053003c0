package tokenizer

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
)

// hfJSON is the part of a Hugging Face tokenizer.json the tokenizer reads.
type hfJSON struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type         string               `json:"type"`
		UnkID        *int                 `json:"unk_id"`
		Vocab        [][2]json.RawMessage `json:"vocab"`
		ByteFallback bool                 `json:"byte_fallback"`
	} `json:"model"`
}

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

func (a hfAddedToken) token() *addedToken {
	return &addedToken{Content: a.Content, ID: int32(a.ID), SingleWord: a.SingleWord,
		LStrip: a.LStrip, RStrip: a.RStrip, Normalized: a.Normalized, Special: a.Special}
}

// hfComponent is any normaliser / pre-tokenizer / post-processor node.
type hfComponent struct {
	Type                string            `json:"type"`
	PrecompiledCharsmap *string           `json:"precompiled_charsmap"`
	Normalizers         []json.RawMessage `json:"normalizers"`
	Pretokenizers       []json.RawMessage `json:"pretokenizers"`
	Replacement         string            `json:"replacement"`
	SpecialTokens       map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
	Single []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	} `json:"single"`
}

// parseTokenizerJSON reads a Unigram tokenizer.json. The encoder always runs
// the pipeline described in doc.go (what transformers 5 rebuilds for T5);
// from the file it takes the vocabulary, scores, unk id, byte fallback, the
// charsmap of its Precompiled normaliser, its added tokens and the
// post-processor's `</s>`.
func parseTokenizerJSON(b []byte) (*modelData, error) {
	var j hfJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("not a valid tokenizer.json: %w", err)
	}
	if j.Model.Type != "Unigram" {
		return nil, fmt.Errorf("model type %q, want \"Unigram\" (umT5 is a SentencePiece unigram model)", j.Model.Type)
	}
	md := &modelData{eosID: -1, padID: -1, byteFallback: j.Model.ByteFallback}
	for i, e := range j.Model.Vocab {
		var piece string
		var score float64
		if err := json.Unmarshal(e[0], &piece); err != nil {
			return nil, fmt.Errorf("model.vocab[%d]: piece: %w", i, err)
		}
		if err := json.Unmarshal(e[1], &score); err != nil {
			return nil, fmt.Errorf("model.vocab[%d] (%q): score: %w", i, piece, err)
		}
		if math.IsNaN(score) || math.IsInf(score, 0) {
			return nil, fmt.Errorf("model.vocab[%d] (%q): score %v", i, piece, score)
		}
		md.vocab = append(md.vocab, piece)
		md.scores = append(md.scores, score)
	}
	if len(md.vocab) == 0 {
		return nil, errors.New("model.vocab is empty")
	}
	if j.Model.UnkID == nil {
		return nil, errors.New("model.unk_id is missing")
	}
	if u := *j.Model.UnkID; u < 0 || u >= len(md.vocab) {
		return nil, fmt.Errorf("model.unk_id %d outside the vocabulary of %d", u, len(md.vocab))
	}
	md.unkID = int32(*j.Model.UnkID)
	for i, a := range j.AddedTokens {
		if a.Content == "" || a.ID < 0 || a.ID > math.MaxInt32 {
			return nil, fmt.Errorf("added_tokens[%d]: bad token %q with id %d", i, a.Content, a.ID)
		}
		if a.ID < len(md.vocab) && md.vocab[a.ID] != a.Content {
			return nil, fmt.Errorf("added_tokens[%d]: %q has id %d, which is %q in the vocabulary", i, a.Content, a.ID, md.vocab[a.ID])
		}
		md.added = append(md.added, a.token())
	}
	cm, err := findCharsmap(j.Normalizer)
	if err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if cm == nil {
		return nil, errors.New("normalizer has no Precompiled charsmap (not a SentencePiece conversion?)")
	}
	md.charsmap = cm
	if err := checkPreTokenizer(j.PreTokenizer); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if len(j.PostProcessor) > 0 && string(j.PostProcessor) != "null" {
		var pp hfComponent
		if err := json.Unmarshal(j.PostProcessor, &pp); err != nil {
			return nil, fmt.Errorf("post_processor: %w", err)
		}
		if pp.Type == "TemplateProcessing" {
			if len(pp.Single) == 0 || pp.Single[len(pp.Single)-1].SpecialToken == nil {
				return nil, errors.New("post_processor: the single template does not end with a special token")
			}
			st := pp.SpecialTokens[pp.Single[len(pp.Single)-1].SpecialToken.ID]
			if len(st.IDs) != 1 {
				return nil, fmt.Errorf("post_processor: special token %q has ids %v, want one", pp.Single[len(pp.Single)-1].SpecialToken.ID, st.IDs)
			}
			md.eosID = int32(st.IDs[0])
			if md.eosID < 0 || int(md.eosID) >= len(md.vocab) {
				return nil, fmt.Errorf("post_processor: eos id %d outside the vocabulary of %d", md.eosID, len(md.vocab))
			}
		}
	}
	return md, nil
}

// findCharsmap returns the decoded charsmap of the (possibly nested)
// Precompiled normaliser; other normalisers of SentencePiece conversions
// (Strip, Replace of space runs) are accepted, anything else is an error.
func findCharsmap(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "Precompiled":
		if c.PrecompiledCharsmap == nil {
			return nil, fmt.Errorf("type %q has no precompiled_charsmap", c.Type)
		}
		b, err := base64.StdEncoding.DecodeString(*c.PrecompiledCharsmap)
		if err != nil {
			return nil, fmt.Errorf("precompiled_charsmap is not base64: %w", err)
		}
		return b, nil
	case "Sequence":
		var found []byte
		for _, n := range c.Normalizers {
			b, err := findCharsmap(n)
			if err != nil {
				return nil, err
			}
			if b != nil {
				found = b
			}
		}
		return found, nil
	case "Strip", "Replace":
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported normalizer %q for a SentencePiece unigram tokenizer", c.Type)
}

// checkPreTokenizer accepts the Metaspace-based pre-tokenizers of
// SentencePiece conversions.
func checkPreTokenizer(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	switch c.Type {
	case "Metaspace":
		if c.Replacement != metaspace {
			return fmt.Errorf("type %q: replacement %q, want %q", c.Type, c.Replacement, metaspace)
		}
	case "WhitespaceSplit":
	case "Sequence":
		for _, p := range c.Pretokenizers {
			if err := checkPreTokenizer(p); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unsupported pre-tokenizer %q for a SentencePiece unigram tokenizer", c.Type)
	}
	return nil
}

// tokenizerConfig is the part of tokenizer_config.json that adds tokens.
type tokenizerConfig struct {
	ExtraIDs           int                     `json:"extra_ids"`
	AddedTokensDecoder map[string]hfAddedToken `json:"added_tokens_decoder"`
}

func readTokenizerConfig(path string) (*tokenizerConfig, error) {
	b, err := regfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var c tokenizerConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not valid JSON: %w", path, err)
	}
	if c.ExtraIDs < 0 || c.ExtraIDs > 1<<20 {
		return nil, fmt.Errorf("tokenizer: %s: extra_ids %d", path, c.ExtraIDs)
	}
	return &c, nil
}

// apply adds the config's added tokens: added_tokens_decoder when present,
// else T5's <extra_id_N> sentinels (extra_ids of them, after the
// vocabulary, in reverse order) when the vocabulary lacks them.
func (c *tokenizerConfig) apply(md *modelData) error {
	n := len(md.vocab)
	if len(c.AddedTokensDecoder) > 0 {
		for k, a := range c.AddedTokensDecoder {
			var id int
			if _, err := fmt.Sscanf(k, "%d", &id); err != nil || fmt.Sprint(id) != k {
				return fmt.Errorf("added_tokens_decoder key %q is not an id", k)
			}
			if id < 0 || a.Content == "" {
				return fmt.Errorf("added_tokens_decoder[%s]: bad token %q", k, a.Content)
			}
			if id < n && md.vocab[id] != a.Content {
				return fmt.Errorf("added_tokens_decoder[%s] is %q, but id %d is %q in %s", k, a.Content, id, md.vocab[id], md.file)
			}
			a.ID = id
			md.added = append(md.added, a.token())
		}
		return nil
	}
	for i := 0; i < c.ExtraIDs; i++ {
		name := fmt.Sprintf("<extra_id_%d>", i)
		id := -1
		for j := n - 1; j >= 0 && j >= n-c.ExtraIDs-1; j-- {
			if md.vocab[j] == name {
				id = j
				break
			}
		}
		if id < 0 {
			id = n + c.ExtraIDs - 1 - i
		}
		md.added = append(md.added, &addedToken{Content: name, ID: int32(id), Special: true})
	}
	return nil
}
