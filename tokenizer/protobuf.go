package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// pbReader walks protobuf wire-format bytes. It knows only what the
// SentencePiece ModelProto needs: varints, 32-bit floats and length-delimited
// fields; unknown fields of any wire type are skipped.
type pbReader struct {
	b   []byte
	off int
}

// Protobuf wire types.
const (
	wireVarint = 0
	wire64     = 1
	wireBytes  = 2
	wireGroupS = 3
	wireGroupE = 4
	wire32     = 5
)

var errTruncated = errors.New("truncated protobuf message")

func (r *pbReader) done() bool { return r.off >= len(r.b) }

func (r *pbReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.off >= len(r.b) {
			return 0, errTruncated
		}
		c := r.b[r.off]
		r.off++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("protobuf varint longer than 10 bytes")
}

// next reads a field key and returns its number and wire type.
func (r *pbReader) next() (field int, wire int, err error) {
	k, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	field, wire = int(k>>3), int(k&7)
	if field <= 0 {
		return 0, 0, fmt.Errorf("invalid protobuf field number %d at byte %d", field, r.off)
	}
	return field, wire, nil
}

func (r *pbReader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("protobuf field of %d bytes overruns the message (%d bytes left)", n, len(r.b)-r.off)
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

func (r *pbReader) float32() (float32, error) {
	if len(r.b)-r.off < 4 {
		return 0, errTruncated
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(r.b[r.off:]))
	r.off += 4
	return v, nil
}

// skip skips one field value of the given wire type.
func (r *pbReader) skip(wire int) error {
	switch wire {
	case wireVarint:
		_, err := r.varint()
		return err
	case wire64:
		if len(r.b)-r.off < 8 {
			return errTruncated
		}
		r.off += 8
	case wireBytes:
		_, err := r.bytes()
		return err
	case wire32:
		if len(r.b)-r.off < 4 {
			return errTruncated
		}
		r.off += 4
	default:
		return fmt.Errorf("unsupported protobuf wire type %d at byte %d", wire, r.off)
	}
	return nil
}

// expect checks that a known field has the wire type its schema declares.
func expect(field, wire, want int) error {
	if wire != want {
		return fmt.Errorf("protobuf field %d has wire type %d, want %d", field, wire, want)
	}
	return nil
}
