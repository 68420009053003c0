package checkpoint

import "fmt"

// EncodeStateDictAt is the data.pkl WritePth would write, with each
// tensor's storage tagged with locations[i] (torch tags GPU tensors
// "cuda:0") instead of "cpu", so tests can compare with pickles torch wrote
// from a GPU model.
func EncodeStateDictAt(ts []Tensor, locations []string) []byte {
	p := newPickler()
	p.locations = locations
	return p.encodeStateDict(ts)
}

// StorageLocations reads the location tag of each tensor's storage from a
// state-dict pickle, in the pickle's order.
func StorageLocations(pkl []byte) ([]string, error) {
	root, err := unpickle(pkl)
	if err != nil {
		return nil, err
	}
	d, ok := root.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("pickle holds a %s", typeName(root))
	}
	var locs []string
	for _, v := range d.vals {
		if t, ok := v.(*pyTensor); ok {
			locs = append(locs, t.storage.loc)
		}
	}
	return locs, nil
}

// PickleCost runs a pickle and returns the budget it used (bytes of values
// built or copied, see budgetPerByte).
func PickleCost(pkl []byte) (int64, error) {
	b := &budget{left: 1 << 62, limit: 1 << 62, size: len(pkl)}
	u := &unpickler{data: pkl, budget: b}
	_, err := u.run()
	return b.limit - b.left, err
}

// PickleBudgetPerByte is the unpickler's budget per byte of pickle.
const PickleBudgetPerByte = budgetPerByte
