package checkpoint

import (
	"strconv"
	"strings"
)

// The torch side of the unpickler: which globals a state dict may name and
// what calling them builds.

// allowedGlobals are the callables and constants a torch state dict
// pickle refers to. Storage classes (torch.*Storage) and dtypes are
// admitted by pattern in isAllowedGlobal.
var allowedGlobals = map[string]bool{
	"collections.OrderedDict":                    true,
	"torch._utils._rebuild_tensor":               true,
	"torch._utils._rebuild_tensor_v2":            true,
	"torch._utils._rebuild_tensor_v3":            true,
	"torch._utils._rebuild_parameter":            true,
	"torch._utils._rebuild_parameter_with_state": true,
	"torch._tensor._rebuild_from_type_v2":        true,
	"torch.nn.parameter.Parameter":               true,
	"torch.Tensor":                               true,
	"torch.Size":                                 true,
	"torch.device":                               true,
}

// torchDTypeNames are the dtype objects torch pickles as globals.
var torchDTypeNames = map[string]bool{
	"float32": true, "float": true, "float64": true, "double": true, "float16": true, "half": true,
	"bfloat16": true, "int8": true, "uint8": true, "int16": true, "short": true, "int32": true,
	"int": true, "int64": true, "long": true, "bool": true, "float8_e4m3fn": true, "float8_e5m2": true,
	"float8_e4m3fnuz": true, "float8_e5m2fnuz": true, "uint16": true, "uint32": true, "uint64": true,
	"complex32": true, "complex64": true, "complex128": true, "cfloat": true, "cdouble": true,
}

func isAllowedGlobal(module, name string) bool {
	if allowedGlobals[module+"."+name] {
		return true
	}
	if module == "torch" || module == "torch.storage" {
		if strings.HasSuffix(name, "Storage") && isIdent(name) {
			return true
		}
	}
	return module == "torch" && torchDTypeNames[name]
}

func isIdent(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func (u *unpickler) global(at int, module, name string) error {
	if !isAllowedGlobal(module, name) {
		return u.fail(at, "refusing to load global %q: a checkpoint pickle may only rebuild tensors and dicts", truncate(module+"."+name))
	}
	if module == "torch" && torchDTypeNames[name] {
		return u.push(at, pyDType{name: name})
	}
	return u.push(at, pyGlobal{module: module, name: name})
}

// build applies BUILD. torch attaches `_metadata` (module versions) to a
// state dict this way; that state is not needed to read tensors and is
// dropped. Tensor state (from _rebuild_from_type_v2 subclasses) is dropped
// likewise.
func (u *unpickler) build(at int, obj, state any) error {
	switch obj.(type) {
	case *pyDict, *pyTensor:
		return nil
	}
	return u.fail(at, "BUILD on a %s is not supported", typeName(obj))
}

// persistent resolves BINPERSID: torch.save refers to each storage as
// ('storage', storage_type, key, location, numel).
func (u *unpickler) persistent(at int, pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return nil, u.fail(at, "persistent id is a %s, want ('storage', type, key, location, numel)", typeName(pid))
	}
	if s, _ := t[0].(string); s != "storage" {
		return nil, u.fail(at, "persistent id of kind %s, want 'storage'", typeName(t[0]))
	}
	g, ok := t[1].(pyGlobal)
	if !ok || !strings.HasSuffix(g.name, "Storage") {
		return nil, u.fail(at, "persistent id names storage type %s", typeName(t[1]))
	}
	var key string
	switch k := t[2].(type) {
	case string:
		key = k
	case int64:
		key = strconv.FormatInt(k, 10)
	default:
		return nil, u.fail(at, "storage key is a %s, want str", typeName(t[2]))
	}
	numel, ok := t[4].(int64)
	if !ok || numel < 0 {
		return nil, u.fail(at, "storage %q: element count is not a non-negative int", truncate(key))
	}
	loc, _ := t[3].(string)
	if err := u.charge(at, objectCost); err != nil {
		return nil, err
	}
	return &pyStorage{typ: g.name, key: key, loc: loc, numel: numel}, nil
}

// call applies REDUCE/NEWOBJ for the allowed callables.
func (u *unpickler) call(at int, fn, argv any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, u.fail(at, "cannot call a %s", typeName(fn))
	}
	args, ok := argv.(pyTuple)
	if !ok {
		return nil, u.fail(at, "%s called with a %s instead of an argument tuple", typeName(fn), typeName(argv))
	}
	name := g.module + "." + g.name
	switch name {
	case "collections.OrderedDict":
		d := newDict()
		if len(args) == 0 {
			return d, nil
		}
		// OrderedDict(iterable of pairs)
		var items []any
		switch it := args[0].(type) {
		case *pyList:
			items = it.items
		case pyTuple:
			items = it
		default:
			return nil, u.fail(at, "OrderedDict(%s) is not supported", typeName(args[0]))
		}
		if err := u.charge(at, entryCost*int64(len(items))); err != nil {
			return nil, err
		}
		for _, p := range items {
			pair, ok := p.(pyTuple)
			if !ok || len(pair) != 2 {
				return nil, u.fail(at, "OrderedDict item is a %s, want a pair", typeName(p))
			}
			if err := d.set(pair[0], pair[1]); err != nil {
				return nil, u.fail(at, "%v", err)
			}
		}
		return d, nil
	case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3":
		return u.rebuildTensor(at, g.name, args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
		"torch.nn.parameter.Parameter":
		if len(args) < 1 {
			return nil, u.fail(at, "%s needs a tensor argument", name)
		}
		if _, ok := args[0].(*pyTensor); !ok {
			return nil, u.fail(at, "%s of a %s", name, typeName(args[0]))
		}
		return args[0], nil
	case "torch._tensor._rebuild_from_type_v2":
		// (func, new_type, args, state): a Tensor or Parameter rebuilt by func.
		if len(args) != 4 {
			return nil, u.fail(at, "%s needs 4 arguments, got %d", name, len(args))
		}
		if t, ok := args[1].(pyGlobal); !ok || (t.module+"."+t.name != "torch.Tensor" && t.module+"."+t.name != "torch.nn.parameter.Parameter") {
			return nil, u.fail(at, "%s to type %s is not supported", name, typeName(args[1]))
		}
		if f, ok := args[0].(pyGlobal); !ok || !strings.HasPrefix(f.module+"."+f.name, "torch._utils._rebuild_") {
			return nil, u.fail(at, "%s with function %s is not supported", name, typeName(args[0]))
		}
		return u.call(at, args[0], args[2])
	case "torch.Size":
		if len(args) == 0 {
			return pyTuple{}, nil
		}
		if t, ok := args[0].(pyTuple); ok && len(args) == 1 {
			return t, nil
		}
		if l, ok := args[0].(*pyList); ok && len(args) == 1 {
			if err := u.charge(at, slotCost*int64(len(l.items))); err != nil { // copied
				return nil, err
			}
			return pyTuple(append([]any(nil), l.items...)), nil
		}
		return nil, u.fail(at, "torch.Size(%s) is not supported", typeName(args[0]))
	case "torch.device":
		// Devices only appear as metadata; keep their name.
		if len(args) >= 1 {
			if s, ok := args[0].(string); ok {
				return s, nil
			}
		}
		return nil, u.fail(at, "torch.device with unsupported arguments")
	}
	return nil, u.fail(at, "calling %s is not supported", name)
}

// rebuildTensor records the arguments of torch._utils._rebuild_tensor*:
// (storage, storage_offset, size, stride, [requires_grad, backward_hooks,
// [dtype,]] [metadata]). Bounds are checked later against the storage
// record, when the tensor's name is known.
func (u *unpickler) rebuildTensor(at int, fname string, args pyTuple) (any, error) {
	want := map[string]int{"_rebuild_tensor": 4, "_rebuild_tensor_v2": 6, "_rebuild_tensor_v3": 7}[fname]
	if len(args) < want || len(args) > want+1 || (fname == "_rebuild_tensor" && len(args) != 4) {
		return nil, u.fail(at, "%s called with %d arguments", fname, len(args))
	}
	st, ok := args[0].(*pyStorage)
	if !ok {
		return nil, u.fail(at, "%s: first argument is a %s, want a storage", fname, typeName(args[0]))
	}
	off, ok := args[1].(int64)
	if !ok || off < 0 {
		return nil, u.fail(at, "%s: storage offset is not a non-negative int", fname)
	}
	shape, err := u.intTuple(at, fname, "size", args[2])
	if err != nil {
		return nil, err
	}
	stride, err := u.intTuple(at, fname, "stride", args[3])
	if err != nil {
		return nil, err
	}
	if err := u.charge(at, objectCost); err != nil {
		return nil, err
	}
	t := &pyTensor{storage: st, offset: off, shape: shape, stride: stride}
	if fname == "_rebuild_tensor_v3" {
		dt, ok := args[6].(pyDType)
		if !ok {
			return nil, u.fail(at, "%s: dtype argument is a %s", fname, typeName(args[6]))
		}
		t.dtype = dt.name
	}
	return t, nil
}

// maxDims bounds tensor rank; torch itself allows 64.
const maxDims = 64

func (u *unpickler) intTuple(at int, fname, what string, v any) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, u.fail(at, "%s: %s is a %s, want a tuple of ints", fname, what, typeName(v))
	}
	if len(t) > maxDims {
		return nil, u.fail(at, "%s: %s has %d dimensions (at most %d)", fname, what, len(t), maxDims)
	}
	if err := u.charge(at, 8*int64(len(t))); err != nil {
		return nil, err
	}
	out := make([]int64, len(t))
	for i, e := range t {
		n, ok := e.(int64)
		if !ok || n < 0 {
			return nil, u.fail(at, "%s: %s[%d] is not a non-negative int", fname, what, i)
		}
		out[i] = n
	}
	return out, nil
}
