package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
)

// File names looked up in a tokenizer directory.
const (
	TokenizerJSON   = "tokenizer.json"
	SpieceModel     = "spiece.model"
	TokenizerConfig = "tokenizer_config.json"
)

// modelData is a vocabulary with everything else the encoder needs, as read
// from one model file.
type modelData struct {
	file         string
	vocab        []string
	scores       []float64
	unkID        int32
	eosID, padID int32 // -1 when the file does not say
	byteFallback bool
	charsmap     []byte
	added        []*addedToken
}

// Load builds a tokenizer from a directory holding tokenizer.json and/or
// spiece.model (plus an optional tokenizer_config.json), or from explicit
// file paths. tokenizer.json is used when present; when spiece.model is
// present too, the two must agree.
func Load(paths ...string) (*Tokenizer, error) {
	if len(paths) == 0 {
		return nil, errors.New("tokenizer: no path given")
	}
	var jsonPath, spPath, cfgPath string
	set := func(dst *string, p string) error {
		if *dst != "" && *dst != p {
			return fmt.Errorf("tokenizer: two files of the same kind given: %s and %s", *dst, p)
		}
		*dst = p
		return nil
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		if st.IsDir() {
			found := false
			for _, f := range []struct {
				name string
				dst  *string
			}{{TokenizerJSON, &jsonPath}, {SpieceModel, &spPath}, {TokenizerConfig, &cfgPath}} {
				q := filepath.Join(p, f.name)
				if _, err := os.Stat(q); err == nil {
					if err := set(f.dst, q); err != nil {
						return nil, err
					}
					found = found || f.name != TokenizerConfig
				}
			}
			if !found {
				return nil, fmt.Errorf("tokenizer: directory %s holds neither %s nor %s", p, TokenizerJSON, SpieceModel)
			}
			continue
		}
		base := filepath.Base(p)
		var err2 error
		switch {
		case base == TokenizerConfig:
			err2 = set(&cfgPath, p)
		case strings.HasSuffix(base, ".json"):
			err2 = set(&jsonPath, p)
		case strings.HasSuffix(base, ".model"):
			err2 = set(&spPath, p)
		default:
			return nil, fmt.Errorf("tokenizer: %s: unrecognised file (want tokenizer.json, spiece.model or tokenizer_config.json)", p)
		}
		if err2 != nil {
			return nil, err2
		}
	}
	if jsonPath == "" && spPath == "" {
		return nil, fmt.Errorf("tokenizer: no %s or %s among %v", TokenizerJSON, SpieceModel, paths)
	}

	var cfg *tokenizerConfig
	if cfgPath != "" {
		var err error
		if cfg, err = readTokenizerConfig(cfgPath); err != nil {
			return nil, err
		}
	}
	var js, sp *modelData
	if jsonPath != "" {
		b, err := regfile.ReadFile(jsonPath)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		if js, err = parseTokenizerJSON(b); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", jsonPath, err)
		}
		js.file = jsonPath
	}
	if spPath != "" {
		b, err := regfile.ReadFile(spPath)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		m, err := parseSentencePiece(b)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: corrupt SentencePiece model: %w", spPath, err)
		}
		if sp, err = spModelData(m); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", spPath, err)
		}
		sp.file = spPath
	}
	md := js
	var notes []string
	if md == nil {
		md = sp
	} else if sp != nil {
		if err := agree(js, sp); err != nil {
			return nil, fmt.Errorf("tokenizer: %s and %s disagree: %w", jsonPath, spPath, err)
		}
		if js.byteFallback != sp.byteFallback {
			// The converters of transformers do not carry SentencePiece's
			// byte fallback over; the reference loads tokenizer.json, so its
			// flag wins.
			notes = append(notes, fmt.Sprintf("byte_fallback is %v in %s and %v in %s; using %v as the reference (transformers) does",
				js.byteFallback, jsonPath, sp.byteFallback, spPath, js.byteFallback))
		}
	}
	if cfg != nil {
		if err := cfg.apply(md); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", cfgPath, err)
		}
	}
	t, err := build(md)
	if err != nil {
		return nil, err
	}
	t.Notes = notes
	return t, nil
}

// agree checks that tokenizer.json was converted from this spiece.model.
func agree(js, sp *modelData) error {
	if len(js.vocab) < len(sp.vocab) {
		return fmt.Errorf("vocabulary sizes %d < %d", len(js.vocab), len(sp.vocab))
	}
	for i := range sp.vocab {
		if js.vocab[i] != sp.vocab[i] {
			return fmt.Errorf("piece %d is %q in one and %q in the other", i, js.vocab[i], sp.vocab[i])
		}
		if js.scores[i] != sp.scores[i] {
			return fmt.Errorf("piece %d (%q) scores %v and %v", i, sp.vocab[i], js.scores[i], sp.scores[i])
		}
	}
	if js.unkID != sp.unkID {
		return fmt.Errorf("unk id %d and %d", js.unkID, sp.unkID)
	}
	if string(js.charsmap) != string(sp.charsmap) {
		return fmt.Errorf("precompiled charsmaps differ (%d and %d bytes)", len(js.charsmap), len(sp.charsmap))
	}
	return nil
}

// spModelData turns a SentencePiece model into the vocabulary the transformers
// converter would produce: every piece with its score, the UNKNOWN piece as
// unk, control/unknown pieces as special added tokens and user-defined
// pieces as plain added tokens.
func spModelData(m *spModel) (*modelData, error) {
	if m.Trainer.ModelType != 1 {
		return nil, fmt.Errorf("model_type %d is not unigram (1)", m.Trainer.ModelType)
	}
	md := &modelData{unkID: -1, eosID: -1, padID: -1, byteFallback: m.Trainer.ByteFallback,
		charsmap: m.Normalizer.PrecompiledCharsmap}
	for i, p := range m.Pieces {
		md.vocab = append(md.vocab, p.Piece)
		md.scores = append(md.scores, float64(p.Score))
		switch p.Type {
		case pieceUnknown:
			if md.unkID >= 0 {
				return nil, fmt.Errorf("two unknown pieces: %d and %d", md.unkID, i)
			}
			md.unkID = int32(i)
			md.added = append(md.added, &addedToken{Content: p.Piece, ID: int32(i), Special: true})
		case pieceControl:
			md.added = append(md.added, &addedToken{Content: p.Piece, ID: int32(i), Special: true})
		case pieceUserDefined:
			md.added = append(md.added, &addedToken{Content: p.Piece, ID: int32(i)})
		}
	}
	if md.unkID < 0 {
		return nil, errors.New("no piece of type UNKNOWN")
	}
	n := int32(len(m.Pieces))
	if id := int32(m.Trainer.EosID); id >= 0 && id < n {
		md.eosID = id
	}
	if id := int32(m.Trainer.PadID); id >= 0 && id < n {
		md.padID = id
	}
	if m.Normalizer.Name != "identity" && len(m.Normalizer.PrecompiledCharsmap) == 0 {
		return nil, fmt.Errorf("normalizer %q has no precompiled_charsmap", m.Normalizer.Name)
	}
	return md, nil
}

// build indexes a vocabulary into a Tokenizer.
func build(md *modelData) (*Tokenizer, error) {
	n := len(md.vocab)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: %s: empty vocabulary", md.file)
	}
	t := &Tokenizer{vocab: md.vocab, scores: md.scores, ids: make(map[string]int32, n),
		unkID: md.unkID, byteFallback: md.byteFallback, Source: md.file}
	for i, p := range md.vocab {
		if p == "" {
			return nil, fmt.Errorf("tokenizer: %s: piece %d is empty", md.file, i)
		}
		if j, dup := t.ids[p]; dup {
			return nil, fmt.Errorf("tokenizer: %s: piece %q appears twice (ids %d and %d)", md.file, p, j, i)
		}
		t.ids[p] = int32(i)
	}
	if t.unkID < 0 || int(t.unkID) >= n {
		return nil, fmt.Errorf("tokenizer: %s: unk id %d outside the vocabulary of %d", md.file, t.unkID, n)
	}
	t.minScore = md.scores[0]
	for _, s := range md.scores {
		t.minScore = min(t.minScore, s)
	}
	t.trie = newPieceTrie(md.vocab)
	if t.byteFallback {
		t.byteIDs = byteFallbackIDs(t.ids)
	}
	if len(md.charsmap) > 0 {
		c, err := decodeCharsmap(md.charsmap)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", md.file, err)
		}
		t.cmap = c
	}
	find := func(id int32, piece, what string) (int32, error) {
		if id >= 0 {
			return id, nil
		}
		if j, ok := t.ids[piece]; ok {
			return j, nil
		}
		return -1, fmt.Errorf("tokenizer: %s: no %s id and no %q piece", md.file, what, piece)
	}
	var err error
	if t.eosID, err = find(md.eosID, "</s>", "eos"); err != nil {
		return nil, err
	}
	if t.padID, err = find(md.padID, "<pad>", "pad"); err != nil {
		return nil, err
	}
	// The reference (transformers T5Tokenizer) treats eos, unk and pad as
	// special added tokens even when the file does not list them.
	seen := map[string]bool{}
	var raw, normed []*addedToken
	add := func(a *addedToken) {
		if a.Content == "" || seen[a.Content] {
			return
		}
		seen[a.Content] = true
		t.added = append(t.added, a)
		if a.Normalized {
			normed = append(normed, a)
		} else {
			raw = append(raw, a)
		}
	}
	for _, a := range md.added {
		add(a)
	}
	for _, id := range []int32{t.eosID, t.unkID, t.padID} {
		add(&addedToken{Content: t.vocab[id], ID: id, Special: true})
	}
	// Normalized tokens are matched in normalised text, so in normalised form.
	for i, a := range normed {
		if t.cmap != nil {
			c := *a
			c.Content = string(t.cmap.normalize(a.Content, nil))
			normed[i] = &c
		}
	}
	t.raw, t.normed = newMatcher(raw), newMatcher(normed)
	return t, nil
}
