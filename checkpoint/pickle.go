package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A restricted unpickler: it executes the pickle opcodes torch.save emits
// (protocols 0-5) but can only construct plain data (None, bools, ints,
// floats, strings, bytes, tuples, lists, dicts) and the handful of torch
// objects a state dict is made of. Every GLOBAL is checked against
// allowedGlobals when it is loaded, so a pickle naming anything else (say
// os.system) is refused before it is used, and nothing is ever executed.
//
// Values never hold a copy of tensor data; tensors are descriptions
// (pyTensor) resolved against the zip records afterwards.

// Resource bounds. Most opcodes do constant work and build at most one
// value, or consume values they were given on the stack, so a pickle of N
// bytes runs at most N of them and builds O(N) bytes of values (at most
// about 50 per pickle byte: a memo or dict entry per byte or two). The
// exceptions work on a value named by a cheap reference: a list built once
// can be copied or walked again and again by torch.Size(list) or
// OrderedDict(list), a memoised shape tuple re-read by every tensor
// rebuilt from it, each call costing a few bytes of pickle and as much
// memory or time as the list is long. Those are charged, cumulatively, the
// bytes they allocate or walk against a budget of budgetPerByte per byte
// of pickle plus budgetBase, as is resolving the tensors afterwards (pth.go):
// whatever the opcodes, the reader's time and memory stay within a small
// multiple of N. Real state dicts use about 1 byte of budget per byte of
// pickle (TestPickleBudget).
const (
	maxPickleStack = 1 << 22 // items on the stack, plus marks
	maxPickleMemo  = 1 << 22 // memo entries

	budgetPerByte = 16
	budgetBase    = 1 << 20

	slotCost   = 16 // one value copied into a list or tuple
	entryCost  = 64 // one dict entry
	objectCost = 64 // a storage or tensor description
)

// unpickler is the machine state.
type unpickler struct {
	data   []byte
	pos    int
	stack  []any
	marks  []int
	memo   memoTable
	budget *budget // work still allowed (see budgetPerByte)
}

// memoTable is the pickle memo: a slice for the dense indices picklers
// write (0, 1, 2, ... in order; 16 bytes an entry, where a map takes about
// three times that), a map for any others.
type memoTable struct {
	dense  []any // entries 0..len-1, all present
	sparse map[uint32]any
}

func (m *memoTable) len() int { return len(m.dense) + len(m.sparse) }

func (m *memoTable) get(idx uint32) (any, bool) {
	if int64(idx) < int64(len(m.dense)) {
		return m.dense[idx], true
	}
	v, ok := m.sparse[idx]
	return v, ok
}

func (m *memoTable) put(idx uint32, v any) {
	switch _, inSparse := m.sparse[idx]; {
	case int64(idx) < int64(len(m.dense)):
		m.dense[idx] = v
	case int64(idx) == int64(len(m.dense)) && !inSparse:
		if len(m.dense) == cap(m.dense) {
			// Doubling (append grows large slices by 1.25×, which
			// allocates 5× the final size along the way).
			m.dense = append(make([]any, 0, max(64, 2*cap(m.dense))), m.dense...)
		}
		m.dense = append(m.dense, v)
	default:
		if m.sparse == nil {
			m.sparse = map[uint32]any{}
		}
		m.sparse[idx] = v
	}
}

// pickleError carries the byte offset of the failing opcode.
type pickleError struct {
	pos int
	msg string
}

func (e *pickleError) Error() string { return fmt.Sprintf("byte %d: %s", e.pos, e.msg) }

// unpickle runs a pickle to its STOP opcode and returns the result.
func unpickle(data []byte) (any, error) {
	v, _, err := unpickleBudget(data)
	return v, err
}

// unpickleBudget is unpickle that also returns what is left of the budget,
// for the work done on the result afterwards.
func unpickleBudget(data []byte) (any, *budget, error) {
	b := newBudget(len(data))
	u := &unpickler{data: data, budget: b}
	v, err := u.run()
	return v, b, err
}

// budget is what is left of the work a pickle may cause (budgetPerByte).
type budget struct {
	left, limit int64
	size        int // pickle bytes
}

func newBudget(size int) *budget {
	limit := budgetPerByte*int64(size) + budgetBase
	return &budget{left: limit, limit: limit, size: size}
}

// take spends n bytes of the budget, or reports that it is spent.
func (b *budget) take(n int64) error {
	b.left -= n
	if b.left < 0 {
		return fmt.Errorf("the %d-byte pickle builds or copies more than %d bytes of values (%d per pickle byte): refused as a crafted file (one list copied again and again?)", b.size, b.limit, budgetPerByte)
	}
	return nil
}

// charge takes n bytes from the budget, or fails once it is spent.
func (u *unpickler) charge(at int, n int64) error {
	if err := u.budget.take(n); err != nil {
		return u.fail(at, "%v", err)
	}
	return nil
}

func (u *unpickler) fail(at int, format string, args ...any) error {
	return &pickleError{pos: at, msg: fmt.Sprintf(format, args...)}
}

// need returns the next n bytes, or an error if the pickle ends first.
func (u *unpickler) need(at, n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.fail(at, "pickle truncated: need %d more bytes, %d left", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

// line returns the text up to the next newline (protocol 0 arguments).
func (u *unpickler) line(at int) (string, error) {
	rest := u.data[u.pos:]
	i := 0
	for i < len(rest) && rest[i] != '\n' {
		i++
	}
	if i == len(rest) {
		return "", u.fail(at, "pickle truncated: unterminated text argument")
	}
	u.pos += i + 1
	return string(rest[:i]), nil
}

func (u *unpickler) push(at int, v any) error {
	if len(u.stack)+len(u.marks) >= maxPickleStack {
		return u.fail(at, "pickle stack exceeds %d items", maxPickleStack)
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop(at int) (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == len(u.stack)) {
		return nil, u.fail(at, "pickle stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top(at int) (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == len(u.stack)) {
		return nil, u.fail(at, "pickle stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// withMarked calls f with the value below the last MARK and the items
// pushed since (a view of the stack, valid during the call), then pops the
// items: APPENDS and SETITEMS consume them without a copy.
func (u *unpickler) withMarked(at int, f func(below any, items []any) error) error {
	if len(u.marks) == 0 {
		return u.fail(at, "pickle opcode needs a MARK, none is open")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	if m == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == m) {
		return u.fail(at, "pickle stack underflow")
	}
	err := f(u.stack[m-1], u.stack[m:])
	clear(u.stack[m:])
	u.stack = u.stack[:m]
	return err
}

// popMark returns the items pushed since the last MARK (a fresh slice).
func (u *unpickler) popMark(at int) ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.fail(at, "pickle opcode needs a MARK, none is open")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := make([]any, len(u.stack)-m)
	copy(items, u.stack[m:])
	clear(u.stack[m:])
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoPut(at int, idx uint32, v any) error {
	if _, ok := u.memo.get(idx); !ok && u.memo.len() >= maxPickleMemo {
		return u.fail(at, "pickle memo exceeds %d entries", maxPickleMemo)
	}
	u.memo.put(idx, v)
	return nil
}

func (u *unpickler) memoGet(at int, idx uint32) error {
	v, ok := u.memo.get(idx)
	if !ok {
		return u.fail(at, "pickle refers to memo entry %d that was never stored", idx)
	}
	return u.push(at, v)
}

// decodeLong decodes a little-endian two's-complement integer (LONG1/LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) > 8 {
		// Fits int64 only if the extra bytes are pure sign extension.
		ext := byte(0)
		if b[7]&0x80 != 0 {
			ext = 0xff
		}
		for _, c := range b[8:] {
			if c != ext {
				return pyBigInt{}
			}
		}
		b = b[:8]
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if len(b) < 8 && b[len(b)-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * len(b))
	}
	return int64(v)
}

func (u *unpickler) run() (any, error) {
	le := binary.LittleEndian
	for {
		at := u.pos
		if u.pos >= len(u.data) {
			return nil, u.fail(at, "pickle truncated: no STOP opcode")
		}
		op := u.data[u.pos]
		u.pos++
		var err error
		switch op {
		case 0x80: // PROTO
			var b []byte
			if b, err = u.need(at, 1); err == nil && b[0] > 5 {
				err = u.fail(at, "pickle protocol %d is not supported (0-5)", b[0])
			}
		case 0x95: // FRAME: the length is advisory for a reader holding the whole pickle
			_, err = u.need(at, 8)
		case '.': // STOP
			v, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			return v, nil
		case '(': // MARK
			if len(u.stack)+len(u.marks) >= maxPickleStack {
				return nil, u.fail(at, "pickle stack exceeds %d items", maxPickleStack)
			}
			u.marks = append(u.marks, len(u.stack))
		case '0': // POP
			_, err = u.pop(at)
		case '1': // POP_MARK
			_, err = u.popMark(at)
		case '2': // DUP
			var v any
			if v, err = u.top(at); err == nil {
				err = u.push(at, v)
			}
		case 'N':
			err = u.push(at, nil)
		case 0x88: // NEWTRUE
			err = u.push(at, true)
		case 0x89: // NEWFALSE
			err = u.push(at, false)
		case 'J': // BININT
			var b []byte
			if b, err = u.need(at, 4); err == nil {
				err = u.push(at, int64(int32(le.Uint32(b))))
			}
		case 'K': // BININT1
			var b []byte
			if b, err = u.need(at, 1); err == nil {
				err = u.push(at, int64(b[0]))
			}
		case 'M': // BININT2
			var b []byte
			if b, err = u.need(at, 2); err == nil {
				err = u.push(at, int64(le.Uint16(b)))
			}
		case 0x8a: // LONG1
			var b []byte
			if b, err = u.need(at, 1); err == nil {
				if b, err = u.need(at, int(b[0])); err == nil {
					err = u.push(at, decodeLong(b))
				}
			}
		case 0x8b: // LONG4
			var b []byte
			if b, err = u.need(at, 4); err == nil {
				n := int32(le.Uint32(b))
				if n < 0 {
					err = u.fail(at, "negative LONG4 length")
				} else if b, err = u.need(at, int(n)); err == nil {
					err = u.push(at, decodeLong(b))
				}
			}
		case 'I', 'L': // INT, LONG (text)
			var s string
			if s, err = u.line(at); err == nil {
				err = u.push(at, parseTextInt(s, op == 'L'))
			}
		case 'F': // FLOAT (text)
			var s string
			if s, err = u.line(at); err == nil {
				f, perr := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if perr != nil {
					err = u.fail(at, "bad FLOAT %q", truncate(s))
				} else {
					err = u.push(at, f)
				}
			}
		case 'G': // BINFLOAT (big-endian)
			var b []byte
			if b, err = u.need(at, 8); err == nil {
				err = u.push(at, math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
			var s []byte
			if s, err = u.counted(at, op); err == nil {
				if !utf8.Valid(s) {
					err = u.fail(at, "string is not valid UTF-8")
				} else {
					err = u.push(at, string(s))
				}
			}
		case 'T', 'U': // BINSTRING, SHORT_BINSTRING (Python 2 str: decoded as text)
			var s []byte
			if s, err = u.counted(at, op); err == nil {
				err = u.push(at, string(s))
			}
		case 'B', 'C', 0x8e, 0x96: // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
			var s []byte
			if s, err = u.counted(at, op); err == nil {
				err = u.push(at, s) // aliases the pickle; never modified
			}
		case 'S': // STRING (text, quoted)
			var s string
			if s, err = u.line(at); err == nil {
				if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
					err = u.push(at, s[1:len(s)-1])
				} else {
					err = u.fail(at, "bad STRING argument")
				}
			}
		case 'V': // UNICODE (raw-unicode-escape text; ASCII is all a state dict needs)
			var s string
			if s, err = u.line(at); err == nil {
				err = u.push(at, s)
			}
		case ')':
			err = u.push(at, pyTuple{})
		case 't': // TUPLE
			var items []any
			if items, err = u.popMark(at); err == nil {
				err = u.push(at, pyTuple(items))
			}
		case 0x85, 0x86, 0x87: // TUPLE1..3
			n := int(op - 0x84)
			if len(u.stack) < n || (len(u.marks) > 0 && u.marks[len(u.marks)-1] > len(u.stack)-n) {
				err = u.fail(at, "pickle stack underflow")
				break
			}
			t := make(pyTuple, n)
			copy(t, u.stack[len(u.stack)-n:])
			u.stack = u.stack[:len(u.stack)-n]
			err = u.push(at, t)
		case ']':
			err = u.push(at, &pyList{})
		case 'l': // LIST
			var items []any
			if items, err = u.popMark(at); err == nil {
				err = u.push(at, &pyList{items: items})
			}
		case 0x8f: // EMPTY_SET: kept as a list, sets only appear in metadata
			err = u.push(at, &pyList{})
		case 'a': // APPEND
			var v, l any
			if v, err = u.pop(at); err == nil {
				if l, err = u.top(at); err == nil {
					err = u.appendTo(at, l, v)
				}
			}
		case 'e', 0x90: // APPENDS, ADDITEMS
			err = u.withMarked(at, func(l any, items []any) error {
				lst, ok := l.(*pyList)
				if !ok {
					return u.fail(at, "APPEND to a %s", typeName(l))
				}
				lst.items = append(slices.Grow(lst.items, len(items)), items...)
				return nil
			})
		case 0x91: // FROZENSET
			var items []any
			if items, err = u.popMark(at); err == nil {
				err = u.push(at, &pyList{items: items})
			}
		case '}':
			err = u.push(at, newDict())
		case 'd': // DICT
			var items []any
			if items, err = u.popMark(at); err == nil {
				d := newDict()
				if err = u.setItems(at, d, items); err == nil {
					err = u.push(at, d)
				}
			}
		case 's': // SETITEM
			var k, v, d any
			if v, err = u.pop(at); err == nil {
				if k, err = u.pop(at); err == nil {
					if d, err = u.top(at); err == nil {
						err = u.setItems(at, d, []any{k, v})
					}
				}
			}
		case 'u': // SETITEMS
			err = u.withMarked(at, func(d any, items []any) error { return u.setItems(at, d, items) })
		case 'c': // GLOBAL module\nname\n
			var mod, name string
			if mod, err = u.line(at); err == nil {
				if name, err = u.line(at); err == nil {
					err = u.global(at, mod, name)
				}
			}
		case 0x93: // STACK_GLOBAL
			var m, n any
			if n, err = u.pop(at); err == nil {
				if m, err = u.pop(at); err == nil {
					ms, ok1 := m.(string)
					ns, ok2 := n.(string)
					if !ok1 || !ok2 {
						err = u.fail(at, "STACK_GLOBAL needs two strings, got %s and %s", typeName(m), typeName(n))
					} else {
						err = u.global(at, ms, ns)
					}
				}
			}
		case 'i', 'o', 0x82, 0x83, 0x84: // INST, OBJ, EXT1, EXT2, EXT4
			err = u.fail(at, "pickle opcode %q builds arbitrary objects and is refused", op)
		case 'R', 0x81: // REDUCE, NEWOBJ: call(args)
			var fn, args any
			if args, err = u.pop(at); err == nil {
				if fn, err = u.pop(at); err == nil {
					var v any
					if v, err = u.call(at, fn, args); err == nil {
						err = u.push(at, v)
					}
				}
			}
		case 0x92: // NEWOBJ_EX: cls, args, kwargs
			var cls, args, kw any
			if kw, err = u.pop(at); err == nil {
				if args, err = u.pop(at); err == nil {
					if cls, err = u.pop(at); err == nil {
						if d, ok := kw.(*pyDict); !ok || len(d.keys) != 0 {
							err = u.fail(at, "NEWOBJ_EX with keyword arguments is not supported")
						} else {
							var v any
							if v, err = u.call(at, cls, args); err == nil {
								err = u.push(at, v)
							}
						}
					}
				}
			}
		case 'b': // BUILD: set state of the object below
			var state, obj any
			if state, err = u.pop(at); err == nil {
				if obj, err = u.top(at); err == nil {
					err = u.build(at, obj, state)
				}
			}
		case 'Q': // BINPERSID
			var pid any
			if pid, err = u.pop(at); err == nil {
				var v any
				if v, err = u.persistent(at, pid); err == nil {
					err = u.push(at, v)
				}
			}
		case 'P': // PERSID (text id): torch never writes it
			err = u.fail(at, "text persistent ids are not supported")
		case 'p': // PUT (text)
			var s string
			if s, err = u.line(at); err == nil {
				idx, perr := strconv.ParseUint(s, 10, 32)
				var v any
				if perr != nil {
					err = u.fail(at, "bad PUT index %q", truncate(s))
				} else if v, err = u.top(at); err == nil {
					err = u.memoPut(at, uint32(idx), v)
				}
			}
		case 'q': // BINPUT
			var b []byte
			var v any
			if b, err = u.need(at, 1); err == nil {
				if v, err = u.top(at); err == nil {
					err = u.memoPut(at, uint32(b[0]), v)
				}
			}
		case 'r': // LONG_BINPUT
			var b []byte
			var v any
			if b, err = u.need(at, 4); err == nil {
				if v, err = u.top(at); err == nil {
					err = u.memoPut(at, le.Uint32(b), v)
				}
			}
		case 0x94: // MEMOIZE
			var v any
			if v, err = u.top(at); err == nil {
				err = u.memoPut(at, uint32(u.memo.len()), v)
			}
		case 'g': // GET (text)
			var s string
			if s, err = u.line(at); err == nil {
				idx, perr := strconv.ParseUint(s, 10, 32)
				if perr != nil {
					err = u.fail(at, "bad GET index %q", truncate(s))
				} else {
					err = u.memoGet(at, uint32(idx))
				}
			}
		case 'h': // BINGET
			var b []byte
			if b, err = u.need(at, 1); err == nil {
				err = u.memoGet(at, uint32(b[0]))
			}
		case 'j': // LONG_BINGET
			var b []byte
			if b, err = u.need(at, 4); err == nil {
				err = u.memoGet(at, le.Uint32(b))
			}
		default:
			err = u.fail(at, "unknown or unsupported pickle opcode 0x%02x", op)
		}
		if err != nil {
			return nil, err
		}
	}
}

// counted reads a length-prefixed string/bytes argument.
func (u *unpickler) counted(at int, op byte) ([]byte, error) {
	var n uint64
	switch op {
	case 'C', 'U', 0x8c: // 1-byte length
		b, err := u.need(at, 1)
		if err != nil {
			return nil, err
		}
		n = uint64(b[0])
	case 'X', 'B', 'T': // 4-byte length
		b, err := u.need(at, 4)
		if err != nil {
			return nil, err
		}
		n = uint64(binary.LittleEndian.Uint32(b))
		if op == 'T' && int32(n) < 0 {
			return nil, u.fail(at, "negative BINSTRING length")
		}
	default: // 8-byte length
		b, err := u.need(at, 8)
		if err != nil {
			return nil, err
		}
		n = binary.LittleEndian.Uint64(b)
	}
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.fail(at, "pickle truncated: string of %d bytes, %d left", n, len(u.data)-u.pos)
	}
	return u.need(at, int(n))
}

func parseTextInt(s string, long bool) any {
	s = strings.TrimSpace(s)
	if long {
		s = strings.TrimSuffix(s, "L")
	}
	switch s {
	case "00":
		return false
	case "01":
		return true
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return pyBigInt{}
	}
	return v
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (u *unpickler) appendTo(at int, l, v any) error {
	lst, ok := l.(*pyList)
	if !ok {
		return u.fail(at, "APPEND to a %s", typeName(l))
	}
	lst.items = append(lst.items, v)
	return nil
}

func (u *unpickler) setItems(at int, d any, items []any) error {
	dict, ok := d.(*pyDict)
	if !ok {
		return u.fail(at, "SETITEM on a %s", typeName(d))
	}
	if len(items)%2 != 0 {
		return u.fail(at, "SETITEMS with an odd number of items")
	}
	for i := 0; i < len(items); i += 2 {
		if err := dict.set(items[i], items[i+1]); err != nil {
			return u.fail(at, "%v", err)
		}
	}
	return nil
}
