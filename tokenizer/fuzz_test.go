package tokenizer

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"testing"
)

// protoWriter serialises protobuf fields for hand-built test models.
type protoWriter []byte

func (w *protoWriter) varint(v uint64) {
	*w = binary.AppendUvarint(*w, v)
}
func (w *protoWriter) key(field, wire int) { w.varint(uint64(field<<3 | wire)) }
func (w *protoWriter) bytes(field int, b []byte) {
	w.key(field, wireBytes)
	w.varint(uint64(len(b)))
	*w = append(*w, b...)
}
func (w *protoWriter) int(field int, v int) {
	w.key(field, wireVarint)
	w.varint(uint64(int64(v)))
}
func (w *protoWriter) float(field int, f float32) {
	w.key(field, wire32)
	*w = binary.LittleEndian.AppendUint32(*w, math.Float32bits(f))
}

type testPiece struct {
	piece string
	score float32
	typ   int
}

// buildModelProto writes a SentencePiece ModelProto with an identity
// normaliser (no charsmap).
func buildModelProto(pieces []testPiece, byteFallback bool) []byte {
	var m protoWriter
	for _, p := range pieces {
		var sp protoWriter
		sp.bytes(1, []byte(p.piece))
		sp.float(2, p.score)
		sp.int(3, p.typ)
		m.bytes(1, sp)
	}
	var tr protoWriter
	tr.int(3, 1)
	tr.int(4, len(pieces))
	if byteFallback {
		tr.int(35, 1)
	}
	tr.int(40, 2)
	tr.int(41, -1)
	tr.int(42, 1)
	tr.int(43, 0)
	m.bytes(2, tr)
	var n protoWriter
	n.bytes(1, []byte("identity"))
	m.bytes(3, n)
	return m
}

func byteFallbackModel() []byte {
	pieces := []testPiece{{"<pad>", 0, pieceControl}, {"</s>", 0, pieceControl}, {"<unk>", 0, pieceUnknown}}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, testPiece{string([]byte(`<0x`)) + hex2(b) + ">", 0, pieceByte})
	}
	pieces = append(pieces, testPiece{"▁a", -1, pieceNormal}, testPiece{"▁", -2, pieceNormal},
		testPiece{"b", -3, pieceNormal}, testPiece{"▁ab", -1.5, pieceNormal})
	return buildModelProto(pieces, true)
}

func hex2(b int) string {
	const d = "0123456789ABCDEF"
	return string([]byte{d[b>>4], d[b&15]})
}

func modelFromBytes(t testing.TB, b []byte) *Tokenizer {
	t.Helper()
	m, err := parseSentencePiece(b)
	if err != nil {
		t.Fatal(err)
	}
	md, err := spModelData(m)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := build(md)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestByteFallback: unknown characters become their UTF-8 byte pieces, and
// the best path prefers the higher-scoring segmentation.
func TestByteFallback(t *testing.T) {
	tk := modelFromBytes(t, byteFallbackModel())
	if !tk.byteFallback {
		t.Fatal("byte_fallback not read")
	}
	got := tk.Tokenize("ab ñb")
	// "▁ab" (-1.5) beats "▁a"+"b" (-4); "▁" then ñ as bytes C3 B1, then b.
	want := []int32{259 + 3, 259 + 1, 3 + 0xC3, 3 + 0xB1, 259 + 2}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// FuzzParseSentencePiece: arbitrary model bytes never panic the loader or
// the encoder built from them.
func FuzzParseSentencePiece(f *testing.F) {
	f.Add(byteFallbackModel())
	f.Add(buildModelProto([]testPiece{{"<unk>", 0, pieceUnknown}, {"▁x", -1, pieceNormal}}, false))
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSentencePiece(b)
		if err != nil {
			return
		}
		md, err := spModelData(m)
		if err != nil {
			return
		}
		tk, err := build(md)
		if err != nil {
			return
		}
		for _, s := range []string{"", "a b", "ab ñb \u3000 </s>", "\xff"} {
			ids, mask := tk.Encode(s, 8)
			if len(ids) != 8 || len(mask) != 8 {
				t.Fatalf("Encode(%q): %d ids", s, len(ids))
			}
		}
	})
}

var (
	fuzzTokOnce sync.Once
	fuzzTok     *Tokenizer
	fuzzTokErr  error
)

// FuzzEncode: any prompt gives maxLen ids within the vocabulary, a mask of
// ones then zeros, and </s> at the end of the ones.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "A cat walking on the grass.", "ｶﾞﾗｽ &amp;amp; Ã© \x1b[1m </s><pad>", "\xff\xfe", "Z̤͔ͧ̑̓ä͖̭̈̇"} {
		f.Add(s, 16)
	}
	dir := goldenDir(f)
	fuzzTokOnce.Do(func() { fuzzTok, fuzzTokErr = Load(dir) })
	if fuzzTokErr != nil {
		f.Fatal(fuzzTokErr)
	}
	tk := fuzzTok
	f.Fuzz(func(t *testing.T, s string, maxLen int) {
		maxLen = 1 + (maxLen&0x7fffffff)%600
		for _, text := range []string{s, Clean(s)} {
			ids, mask := tk.Encode(text, maxLen)
			if len(ids) != maxLen || len(mask) != maxLen {
				t.Fatalf("%d ids, %d mask for maxLen %d", len(ids), len(mask), maxLen)
			}
			n := 0
			for n < maxLen && mask[n] == 1 {
				n++
			}
			if n == 0 || ids[n-1] != tk.EOSID() || slices.ContainsFunc(mask[n:], func(v int32) bool { return v != 0 }) {
				t.Fatalf("bad mask/eos: ids %v mask %v", ids, mask)
			}
			for _, id := range ids {
				if id < 0 || int(id) >= tk.VocabSize() {
					t.Fatalf("id %d outside the vocabulary", id)
				}
			}
		}
	})
}
