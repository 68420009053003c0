package tokenizer

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// Piece types of SentencePiece's ModelProto.SentencePiece.Type.
const (
	pieceNormal      = 1
	pieceUnknown     = 2
	pieceControl     = 3
	pieceUserDefined = 4
	pieceUnused      = 5
	pieceByte        = 6
)

// spPiece is one vocabulary entry of a SentencePiece model.
type spPiece struct {
	Piece string
	Score float32
	Type  int
}

// spTrainerSpec holds the TrainerSpec fields that change encoding.
type spTrainerSpec struct {
	ModelType               int // 1 unigram, 2 bpe, 3 word, 4 char
	VocabSize               int
	ByteFallback            bool
	TreatWhitespaceAsSuffix bool
	UnkID, BosID, EosID     int
	PadID                   int
	UnkPiece, BosPiece      string
	EosPiece, PadPiece      string
}

// spNormalizerSpec is NormalizerSpec with the proto2 defaults applied.
type spNormalizerSpec struct {
	Name                   string
	PrecompiledCharsmap    []byte
	AddDummyPrefix         bool
	RemoveExtraWhitespaces bool
	EscapeWhitespaces      bool
}

// spModel is the part of a SentencePiece ModelProto the tokenizer uses.
type spModel struct {
	Pieces     []spPiece
	Trainer    spTrainerSpec
	Normalizer spNormalizerSpec
}

// parseSentencePiece decodes a serialized ModelProto (spiece.model).
func parseSentencePiece(b []byte) (*spModel, error) {
	m := &spModel{
		Trainer: spTrainerSpec{ModelType: 1, UnkID: 0, BosID: 1, EosID: 2, PadID: -1,
			UnkPiece: "<unk>", BosPiece: "<s>", EosPiece: "</s>", PadPiece: "<pad>"},
		Normalizer: spNormalizerSpec{AddDummyPrefix: true, RemoveExtraWhitespaces: true, EscapeWhitespaces: true},
	}
	haveNormalizer := false
	r := &pbReader{b: b}
	for !r.done() {
		f, w, err := r.next()
		if err != nil {
			return nil, err
		}
		switch f {
		case 1, 2, 3:
			if err := expect(f, w, wireBytes); err != nil {
				return nil, err
			}
			sub, err := r.bytes()
			if err != nil {
				return nil, err
			}
			switch f {
			case 1:
				p, err := parsePiece(sub)
				if err != nil {
					return nil, fmt.Errorf("piece %d: %w", len(m.Pieces), err)
				}
				m.Pieces = append(m.Pieces, p)
			case 2:
				if err := parseTrainerSpec(sub, &m.Trainer); err != nil {
					return nil, fmt.Errorf("trainer_spec: %w", err)
				}
			case 3:
				haveNormalizer = true
				if err := parseNormalizerSpec(sub, &m.Normalizer); err != nil {
					return nil, fmt.Errorf("normalizer_spec: %w", err)
				}
			}
		default:
			if err := r.skip(w); err != nil {
				return nil, err
			}
		}
	}
	if len(m.Pieces) == 0 {
		return nil, fmt.Errorf("no vocabulary pieces (not a SentencePiece model?)")
	}
	if !haveNormalizer {
		return nil, fmt.Errorf("no normalizer_spec (not a SentencePiece model?)")
	}
	return m, nil
}

func parsePiece(b []byte) (spPiece, error) {
	p := spPiece{Type: pieceNormal}
	r := &pbReader{b: b}
	for !r.done() {
		f, w, err := r.next()
		if err != nil {
			return p, err
		}
		switch f {
		case 1:
			if err := expect(f, w, wireBytes); err != nil {
				return p, err
			}
			s, err := r.bytes()
			if err != nil {
				return p, err
			}
			if !utf8.Valid(s) {
				return p, fmt.Errorf("piece %q is not valid UTF-8", s)
			}
			p.Piece = string(s)
		case 2:
			if err := expect(f, w, wire32); err != nil {
				return p, err
			}
			if p.Score, err = r.float32(); err != nil {
				return p, err
			}
			if math.IsNaN(float64(p.Score)) || math.IsInf(float64(p.Score), 0) {
				return p, fmt.Errorf("piece %q has score %v", p.Piece, p.Score)
			}
		case 3:
			if err := expect(f, w, wireVarint); err != nil {
				return p, err
			}
			v, err := r.varint()
			if err != nil {
				return p, err
			}
			if v < pieceNormal || v > pieceByte {
				return p, fmt.Errorf("piece %q has unknown type %d", p.Piece, v)
			}
			p.Type = int(v)
		default:
			if err := r.skip(w); err != nil {
				return p, err
			}
		}
	}
	if p.Piece == "" {
		return p, fmt.Errorf("empty piece")
	}
	return p, nil
}

// varintField reads a varint field value as an int32-ranged integer (proto
// int32 fields encode negatives as 10-byte two's complement varints).
func varintField(r *pbReader, f, w int) (int, error) {
	if err := expect(f, w, wireVarint); err != nil {
		return 0, err
	}
	v, err := r.varint()
	return int(int32(v)), err
}

func stringField(r *pbReader, f, w int) (string, error) {
	if err := expect(f, w, wireBytes); err != nil {
		return "", err
	}
	s, err := r.bytes()
	return string(s), err
}

func parseTrainerSpec(b []byte, t *spTrainerSpec) error {
	r := &pbReader{b: b}
	for !r.done() {
		f, w, err := r.next()
		if err != nil {
			return err
		}
		var iv int
		switch f {
		case 3:
			iv, err = varintField(r, f, w)
			t.ModelType = iv
		case 4:
			iv, err = varintField(r, f, w)
			t.VocabSize = iv
		case 24:
			iv, err = varintField(r, f, w)
			t.TreatWhitespaceAsSuffix = iv != 0
		case 35:
			iv, err = varintField(r, f, w)
			t.ByteFallback = iv != 0
		case 40:
			t.UnkID, err = varintField(r, f, w)
		case 41:
			t.BosID, err = varintField(r, f, w)
		case 42:
			t.EosID, err = varintField(r, f, w)
		case 43:
			t.PadID, err = varintField(r, f, w)
		case 45:
			t.UnkPiece, err = stringField(r, f, w)
		case 46:
			t.BosPiece, err = stringField(r, f, w)
		case 47:
			t.EosPiece, err = stringField(r, f, w)
		case 48:
			t.PadPiece, err = stringField(r, f, w)
		default:
			err = r.skip(w)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseNormalizerSpec(b []byte, n *spNormalizerSpec) error {
	r := &pbReader{b: b}
	for !r.done() {
		f, w, err := r.next()
		if err != nil {
			return err
		}
		var iv int
		switch f {
		case 1:
			n.Name, err = stringField(r, f, w)
		case 2:
			if err = expect(f, w, wireBytes); err == nil {
				var s []byte
				s, err = r.bytes()
				n.PrecompiledCharsmap = s
			}
		case 3:
			iv, err = varintField(r, f, w)
			n.AddDummyPrefix = iv != 0
		case 4:
			iv, err = varintField(r, f, w)
			n.RemoveExtraWhitespaces = iv != 0
		case 5:
			iv, err = varintField(r, f, w)
			n.EscapeWhitespaces = iv != 0
		default:
			err = r.skip(w)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
