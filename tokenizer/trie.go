package tokenizer

import (
	"slices"
	"strings"
)

// pieceTrie is a byte trie over the vocabulary for the unigram lattice: one
// walk from a start position yields every vocabulary piece that begins there.
// Children of a node are contiguous in edges and sorted by byte.
type pieceTrie struct {
	nodes []trieNode
	edges []trieEdge
	root  [256]int32 // children of the root by byte (-1: none)
}

type trieNode struct {
	id         int32 // vocabulary id ending here, or -1
	first, end int32 // edges[first:end] are the children
}

type trieEdge struct {
	b     byte
	child int32
}

// newPieceTrie builds the trie from the vocabulary (ids are slice indexes).
func newPieceTrie(vocab []string) *pieceTrie {
	order := make([]int32, len(vocab))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(vocab[a], vocab[b]) })
	// Nodes are the distinct prefixes: sum of each piece's length beyond
	// its common prefix with the previous one in sorted order.
	n := 1
	for i, k := range order {
		p, lcp := vocab[k], 0
		if i > 0 {
			q := vocab[order[i-1]]
			for lcp < len(p) && lcp < len(q) && p[lcp] == q[lcp] {
				lcp++
			}
		}
		n += len(p) - lcp
	}
	t := &pieceTrie{nodes: make([]trieNode, 1, n), edges: make([]trieEdge, 0, n-1)}
	t.nodes[0] = trieNode{id: -1}
	t.build(0, vocab, order, 0)
	for b := range t.root {
		t.root[b] = t.search(0, byte(b))
	}
	return t
}

// build fills node n from the sorted pieces that all share its depth-byte prefix.
func (t *pieceTrie) build(n int32, vocab []string, order []int32, depth int) {
	if len(order) > 0 && len(vocab[order[0]]) == depth {
		t.nodes[n].id = order[0]
		order = order[1:]
	}
	type group struct {
		b      byte
		lo, hi int
	}
	var groups []group
	for i := 0; i < len(order); {
		b := vocab[order[i]][depth]
		j := i + 1
		for j < len(order) && vocab[order[j]][depth] == b {
			j++
		}
		groups = append(groups, group{b, i, j})
		i = j
	}
	first := int32(len(t.edges))
	for _, g := range groups {
		t.nodes = append(t.nodes, trieNode{id: -1})
		t.edges = append(t.edges, trieEdge{g.b, int32(len(t.nodes) - 1)})
	}
	t.nodes[n].first, t.nodes[n].end = first, int32(len(t.edges))
	for k, g := range groups {
		t.build(t.edges[first+int32(k)].child, vocab, order[g.lo:g.hi], depth+1)
	}
}

// child returns the child of node n along byte b, or -1.
func (t *pieceTrie) child(n int32, b byte) int32 {
	if n == 0 {
		return t.root[b]
	}
	return t.search(n, b)
}

func (t *pieceTrie) search(n int32, b byte) int32 {
	lo, hi := t.nodes[n].first, t.nodes[n].end
	for lo < hi {
		m := (lo + hi) / 2
		switch e := t.edges[m]; {
		case e.b == b:
			return e.child
		case e.b < b:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}
