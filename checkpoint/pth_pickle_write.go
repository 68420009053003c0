package checkpoint

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The state-dict pickle torch.save writes (protocol 2) for an OrderedDict
// of CPU tensors, reproduced opcode for opcode, including Python's memo
// numbering, so the file is what torch itself would have written:
//
//	PROTO 2; GLOBAL collections.OrderedDict; EMPTY_TUPLE; REDUCE
//	MARK { key, _rebuild_tensor_v2((pid), offset, size, stride, False, OrderedDict()) } SETITEMS   (batches of 1000)
//	STOP
//
// with pid = ('storage', torch.<X>Storage, '<key>', 'cpu', numel). The
// `_metadata` attribute torch adds to a module's state_dict is not
// written: load_state_dict does not need it for the layers of these models.

// storageClass is the torch storage class torch.save names for a dtype.
var storageClass = map[tensor.DType]string{
	tensor.BF16: "BFloat16Storage", tensor.F16: "HalfStorage", tensor.F32: "FloatStorage",
	tensor.F64: "DoubleStorage", tensor.I8: "CharStorage", tensor.U8: "ByteStorage",
	tensor.I16: "ShortStorage", tensor.I32: "IntStorage", tensor.I64: "LongStorage",
	tensor.Bool: "BoolStorage",
}

// v3DTypeName names dtypes torch has no legacy storage class for; their
// tensors are pickled with _rebuild_tensor_v3 over an UntypedStorage.
var v3DTypeName = map[tensor.DType]string{tensor.F8E4M3: "float8_e4m3fn"}

// pickleBatch is Python's pickler batch size for SETITEMS.
const pickleBatch = 1000

type pickler struct {
	buf     bytes.Buffer
	memo    int
	globals map[string]int
	consts  map[string]int // interned string constants ("storage", "cpu")
	// locations, if set, gives each tensor's storage location tag (tests
	// reproducing pickles of GPU models); the default is "cpu".
	locations []string
}

func newPickler() *pickler {
	return &pickler{globals: map[string]int{}, consts: map[string]int{}}
}

func (p *pickler) op(b ...byte) { p.buf.Write(b) }

func (p *pickler) put() {
	i := p.memo
	p.memo++
	if i < 256 {
		p.op('q', byte(i))
		return
	}
	p.op('r')
	binary.Write(&p.buf, binary.LittleEndian, uint32(i))
}

func (p *pickler) get(i int) {
	if i < 256 {
		p.op('h', byte(i))
		return
	}
	p.op('j')
	binary.Write(&p.buf, binary.LittleEndian, uint32(i))
}

func (p *pickler) global(module, name string) {
	k := module + "\n" + name + "\n"
	if i, ok := p.globals[k]; ok {
		p.get(i)
		return
	}
	p.op('c')
	p.buf.WriteString(k)
	p.globals[k] = p.memo
	p.put()
}

// str writes a new str object (memoised, as Python does).
func (p *pickler) str(s string) {
	p.op('X')
	binary.Write(&p.buf, binary.LittleEndian, uint32(len(s)))
	p.buf.WriteString(s)
	p.put()
}

// constStr writes a str that is one object in Python (a literal), so its
// second use is a memo reference.
func (p *pickler) constStr(s string) {
	if i, ok := p.consts[s]; ok {
		p.get(i)
		return
	}
	p.consts[s] = p.memo
	p.str(s)
}

// int writes an int the way Python's protocol-2 pickler does.
func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v <= 0xff:
		p.op('K', byte(v))
	case v >= 0 && v <= 0xffff:
		p.op('M', byte(v), byte(v>>8))
	case v >= -1<<31 && v < 1<<31:
		p.op('J')
		binary.Write(&p.buf, binary.LittleEndian, int32(v))
	default:
		// LONG1: minimal little-endian two's complement.
		var b []byte
		for x := v; ; x >>= 8 {
			b = append(b, byte(x))
			if (x < 128 && x >= -128) && (x >= 0) == (b[len(b)-1]&0x80 == 0) {
				break
			}
		}
		p.op(0x8a, byte(len(b)))
		p.buf.Write(b)
	}
}

// intTuple writes a tuple of ints (sizes, strides).
func (p *pickler) intTuple(v []int64) {
	switch len(v) {
	case 0:
		p.op(')') // the empty tuple is a singleton: not memoised
		return
	case 1, 2, 3:
		for _, x := range v {
			p.int(x)
		}
		p.op(byte(0x84 + len(v)))
	default:
		p.op('(')
		for _, x := range v {
			p.int(x)
		}
		p.op('t')
	}
	p.put()
}

// emptyOrderedDict writes OrderedDict() (a tensor's backward_hooks).
func (p *pickler) emptyOrderedDict() {
	p.global("collections", "OrderedDict")
	p.op(')', 'R')
	p.put()
}

// tensor writes _rebuild_tensor_v2 (or _v3) of a contiguous tensor with
// its own storage.
func (p *pickler) tensor(key string, dt tensor.DType, shape []int, location string) {
	sizes := make([]int64, len(shape))
	strides := make([]int64, len(shape))
	numel := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		sizes[i] = int64(shape[i])
		strides[i] = numel
		numel *= int64(shape[i])
	}
	v3 := v3DTypeName[dt]
	if v3 != "" {
		p.global("torch._utils", "_rebuild_tensor_v3")
	} else {
		p.global("torch._utils", "_rebuild_tensor_v2")
	}
	p.op('(') // args
	// persistent id tuple
	p.op('(')
	p.constStr("storage")
	if v3 != "" {
		p.global("torch.storage", "UntypedStorage")
	} else {
		p.global("torch", storageClass[dt])
	}
	p.str(key)
	if location == "cpu" {
		p.constStr(location) // torch's "cpu" tag is a literal; "cuda:N" is formatted anew
	} else {
		p.str(location)
	}
	if v3 != "" {
		p.int(numel * int64(dt.Size()))
	} else {
		p.int(numel)
	}
	p.op('t')
	p.put()
	p.op('Q')
	p.int(0) // storage offset
	p.intTuple(sizes)
	p.intTuple(strides)
	p.op(0x89) // requires_grad False
	p.emptyOrderedDict()
	if v3 != "" {
		p.global("torch", v3)
	}
	p.op('t')
	p.put()
	p.op('R')
	p.put()
}

// encodeStateDict returns the data.pkl of an OrderedDict of the tensors,
// in the given order, storage keys "0", "1", ... in that order.
func (p *pickler) encodeStateDict(ts []Tensor) []byte {
	p.op(0x80, 2)
	p.global("collections", "OrderedDict")
	p.op(')', 'R')
	p.put()
	for start := 0; start < len(ts); start += pickleBatch {
		batch := ts[start:min(start+pickleBatch, len(ts))]
		if len(batch) > 1 {
			p.op('(')
		}
		for j, t := range batch {
			p.str(t.Name)
			loc := "cpu"
			if p.locations != nil {
				loc = p.locations[start+j]
			}
			p.tensor(strconv.Itoa(start+j), t.DType, t.Shape, loc)
		}
		if len(batch) > 1 {
			p.op('u')
		} else {
			p.op('s')
		}
	}
	p.op('.')
	return p.buf.Bytes()
}
