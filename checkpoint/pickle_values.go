package checkpoint

import "fmt"

// Value types of the unpickler.
type (
	pyTuple  []any
	pyList   struct{ items []any }
	pyGlobal struct{ module, name string }
	// pyDict keeps insertion order (torch state dicts are OrderedDicts and
	// the order is the module order, which writers preserve).
	pyDict struct {
		keys  []any
		vals  []any
		index map[any]int
	}
	// pyBigInt stands for an integer that does not fit int64; it can only be
	// carried, not used as a size.
	pyBigInt struct{}
	// pyDType is a torch dtype object (torch.bfloat16, ...).
	pyDType struct{ name string }
	// pyStorage is a persistent id ('storage', type, key, location, numel).
	pyStorage struct {
		typ   string // storage class name, e.g. "BFloat16Storage" or "UntypedStorage"
		key   string
		loc   string // where it lived when saved ("cpu", "cuda:0"); irrelevant to reading
		numel int64  // elements of typ (bytes for UntypedStorage)
	}
	// pyTensor is a rebuilt tensor: a strided view of a storage.
	pyTensor struct {
		storage *pyStorage
		offset  int64
		shape   []int64
		stride  []int64
		dtype   string // dtype name from _rebuild_tensor_v3, else "" (from the storage type)
	}
	pyMark struct{}
)

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

// set inserts or replaces a key. Only scalar keys are hashable here, which
// is all a state dict uses.
func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, nil, float64:
	default:
		return fmt.Errorf("dict key of type %s is not supported", typeName(k))
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// get looks a string key up.
func (d *pyDict) get(k string) (any, bool) {
	i, ok := d.index[k]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// typeName names a value's Python type for error messages. Values are never
// printed whole: a pickle can build self-referencing lists.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, pyBigInt:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case pyTuple:
		return fmt.Sprintf("tuple of %d", len(v))
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return v.module + "." + v.name
	case pyDType:
		return "torch." + v.name
	case *pyStorage:
		return "storage"
	case *pyTensor:
		return "tensor"
	case pyMark:
		return "mark"
	}
	return fmt.Sprintf("%T", v)
}
