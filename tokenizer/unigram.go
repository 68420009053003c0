package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// unkPenalty is subtracted from the lowest piece score to score an unknown
// character (SentencePiece kUnkPenalty; the tokenizers crate uses the same).
const unkPenalty = 10.0

// bestNode is the best path ending at a byte position of the lattice.
type bestNode struct {
	score float64
	start int32 // -1: not reached yet
	id    int32
}

// viterbi appends to out the ids of the best segmentation of one pre-token,
// following the tokenizers Unigram model: scores in float64, every
// vocabulary entry in the lattice, an unknown character scored
// minScore-unkPenalty when no single-character piece covers it, adjacent
// unknown characters fused into one token, and fused unknown strings mapped
// to byte pieces when the model has byte fallback.
func (t *Tokenizer) viterbi(s []byte, out []int32, best []bestNode) ([]int32, []bestNode) {
	n := len(s)
	if n == 0 {
		return out, best
	}
	if cap(best) < n+1 {
		best = make([]bestNode, n+1)
	}
	best = best[:n+1]
	for i := range best {
		best[i] = bestNode{start: -1}
	}
	best[0].start = 0
	unkScore := t.minScore - unkPenalty
	for start := 0; start < n; {
		base := best[start].score
		_, mblen := utf8.DecodeRune(s[start:])
		single := false
		node := int32(0)
		for pos := start; pos < n; pos++ {
			node = t.trie.child(node, s[pos])
			if node < 0 {
				break
			}
			id := t.trie.nodes[node].id
			if id < 0 {
				continue
			}
			end := pos + 1
			cand := t.scores[id] + base
			if b := &best[end]; b.start < 0 || cand > b.score {
				b.score, b.start, b.id = cand, int32(start), id
			}
			if end-start == mblen {
				single = true
			}
		}
		if !single {
			end := start + mblen
			cand := unkScore + base
			if b := &best[end]; b.start < 0 || cand > b.score {
				b.score, b.start, b.id = cand, int32(start), t.unkID
			}
		}
		start += mblen
	}
	// Backtrack, then emit in order, fusing unknown runs.
	type span struct{ start, end, id int32 }
	var spans [64]span
	sp := spans[:0]
	for end := int32(n); end > 0; {
		b := best[end]
		sp = append(sp, span{b.start, end, b.id})
		end = b.start
	}
	for i := len(sp) - 1; i >= 0; i-- {
		x := sp[i]
		if x.id == t.unkID {
			j := i
			for j > 0 && sp[j-1].id == t.unkID {
				j--
			}
			out = t.appendUnknown(out, s[x.start:sp[j].end])
			i = j
			continue
		}
		out = append(out, x.id)
	}
	return out, best
}

// appendUnknown maps a fused run of unknown characters: its own id if the
// string is a vocabulary entry, byte pieces with byte fallback, else unk.
func (t *Tokenizer) appendUnknown(out []int32, s []byte) []int32 {
	if id, ok := t.ids[string(s)]; ok {
		return append(out, id)
	}
	if t.byteFallback {
		ok := true
		for i := 0; i < len(s); i++ {
			if t.byteIDs[s[i]] < 0 {
				ok = false
				break
			}
		}
		if ok {
			for i := 0; i < len(s); i++ {
				out = append(out, t.byteIDs[s[i]])
			}
			return out
		}
	}
	return append(out, t.unkID)
}

// byteFallbackIDs finds the <0xXX> pieces (-1 where missing).
func byteFallbackIDs(ids map[string]int32) (tab [256]int32) {
	for i := range tab {
		tab[i] = -1
		if id, ok := ids[fmt.Sprintf("<0x%02X>", i)]; ok {
			tab[i] = id
		}
	}
	return tab
}
