package tokenizer

import (
	"encoding/binary"
	"fmt"
)

// charsmap is SentencePiece's precompiled normalisation map: a darts-clone
// double-array trie whose keys are UTF-8 strings and whose values are byte
// offsets of NUL-terminated replacement strings. The blob layout is
// <trie size: uint32 LE><trie units: uint32 LE each><replacement strings>.
type charsmap struct {
	units []uint32
	norm  string
}

func decodeCharsmap(blob []byte) (*charsmap, error) {
	if len(blob) <= 4 {
		return nil, fmt.Errorf("precompiled charsmap of %d bytes is too short", len(blob))
	}
	n := binary.LittleEndian.Uint32(blob)
	if uint64(n) >= uint64(len(blob)-4) || n%4 != 0 || n == 0 {
		return nil, fmt.Errorf("precompiled charsmap: trie size %d does not fit a %d-byte blob", n, len(blob))
	}
	c := &charsmap{units: make([]uint32, n/4), norm: string(blob[4+n:])}
	for i := range c.units {
		c.units[i] = binary.LittleEndian.Uint32(blob[4+4*i:])
	}
	if c.norm[len(c.norm)-1] != 0 {
		return nil, fmt.Errorf("precompiled charsmap: replacement strings are not NUL-terminated")
	}
	return c, nil
}

// Darts-clone unit accessors.
func unitHasLeaf(u uint32) bool  { return u>>8&1 == 1 }
func unitValue(u uint32) uint32  { return u & (1<<31 - 1) }
func unitLabel(u uint32) uint32  { return u & (1<<31 | 0xff) }
func unitOffset(u uint32) uint32 { return u >> 10 << ((u & (1 << 9)) >> 6) }

// prefix finds keys that are prefixes of key. With longest it returns the
// longest match (SentencePiece's Normalizer), otherwise the shortest (the
// first result, which is what the tokenizers Precompiled normaliser uses).
// Like the tokenizers crate, the search stops at a NUL byte. ok is false when
// nothing matches; malformed tries simply stop the search.
func (c *charsmap) prefix(key string, longest bool) (value uint32, length int, ok bool) {
	units := c.units
	pos := unitOffset(units[0])
	for i := 0; i < len(key); i++ {
		b := key[i]
		if b == 0 {
			break
		}
		pos ^= uint32(b)
		if int(pos) >= len(units) {
			break
		}
		u := units[pos]
		if unitLabel(u) != uint32(b) {
			break
		}
		pos ^= unitOffset(u)
		if int(pos) >= len(units) {
			break
		}
		if unitHasLeaf(u) {
			value, length, ok = unitValue(units[pos]), i+1, true
			if !longest {
				return
			}
		}
	}
	return
}

// replacement returns the NUL-terminated string at offset v, and false if v
// lies outside the blob.
func (c *charsmap) replacement(v uint32) (string, bool) {
	if int(v) >= len(c.norm) {
		return "", false
	}
	s := c.norm[v:]
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], true
		}
	}
	return "", false
}

// lookup returns the replacement of the shortest key that prefixes key.
func (c *charsmap) lookup(key string) (string, bool) {
	v, _, ok := c.prefix(key, false)
	if !ok {
		return "", false
	}
	return c.replacement(v)
}
