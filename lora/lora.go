// Package lora reads LoRA adapters for the Wan DiT in the namings found in
// the wild and merges them into a model's weights.
//
// Formats (names.go has the module spellings):
//
//   - PEFT / diffusers / ComfyUI: <module>.lora_A.weight [rank, in] and
//     <module>.lora_B.weight [out, rank], with Wan's module paths
//     ("diffusion_model.blocks.0.self_attn.q") or diffusers' ("transformer.
//     blocks.0.attn1.to_q"), with or without a prefix. Scale 1, or
//     alpha/rank when the file carries <module>.alpha (some exports do).
//   - kohya / musubi-tuner: lora_unet_<module with underscores>.lora_down.
//     weight / .lora_up.weight / .alpha. Scale alpha/rank (1 without alpha,
//     kohya's default alpha being the rank).
//   - full deltas: <module>.diff (added to the weight, or to the parameter
//     itself for a modulation) and <module>.diff_b (diffusers:
//     <module>.lora_B.bias), added to the bias. Scale 1.
//
// A delta is W' = W + s·(B·A) (or W + s·diff) with s = the user's strength
// times the format's scale, computed in float32; callers round W' once to
// the model dtype. Keys that resolve to no module are reported by Bind, so
// a LoRA for another model is not silently ignored.
package lora

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Spec is one LoRA to apply: a file and its strength.
type Spec struct {
	Path  string
	Scale float64
}

func (s Spec) String() string {
	if s.Scale == 1 {
		return s.Path
	}
	return s.Path + ":" + strconv.FormatFloat(s.Scale, 'g', -1, 64)
}

// ParseSpec reads FILE[:SCALE] (the --lora flag). The part after the last
// colon is a scale only if it parses as a number and FILE is not empty, so
// paths with colons still work; a missing scale is 1.
func ParseSpec(s string) (Spec, error) {
	if s == "" {
		return Spec{}, fmt.Errorf("--lora: empty value; want FILE or FILE:SCALE")
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 && i < len(s)-1 {
		if v, err := strconv.ParseFloat(s[i+1:], 64); err == nil {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return Spec{}, fmt.Errorf("--lora %s: scale %q is not a finite number", s, s[i+1:])
			}
			return Spec{Path: s[:i], Scale: v}, nil
		}
	}
	return Spec{Path: s, Scale: 1}, nil
}

// kind is how a module's delta is stored.
type kind int

const (
	lowRank kind = iota // B·A
	full                // diff
)

// delta is one module parameter's change from one file.
type delta struct {
	param string // the parameter it changes, once bound ("" before)
	kind  kind
	// lowRank: the file keys of A (down) and B (up), the rank and the
	// format scale (alpha/rank or 1).
	down, up string
	rank     int
	scale    float64
	// full: the key of the delta tensor.
	diff string
}

// module collects one module's keys while a file is parsed.
type module struct {
	name            string // Wan path
	down, up, alpha string
	diff, diffB     string
	keys            []string
}

// Adapter is one opened LoRA file, its keys resolved to Wan module paths.
// Its tensors are read when merged, so an Adapter must stay open (Close)
// as long as merges may happen.
type Adapter struct {
	Spec
	// Formats lists the namings found ("peft", "kohya", "diffusers",
	// "diff"), for messages.
	Formats []string

	f       checkpoint.File
	modules map[string]*module // by Wan module path
	// unknown are keys whose module resolves to nothing.
	unknown []string
}

// Open opens and parses a LoRA file (.safetensors or .pth).
func Open(spec Spec) (*Adapter, error) {
	if _, err := os.Stat(spec.Path); err != nil {
		return nil, fmt.Errorf("LoRA %s: %w", spec.Path, err)
	}
	f, err := checkpoint.Open(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("LoRA %s: %w", spec.Path, err)
	}
	a, err := FromFile(f, spec.Scale)
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// Summary describes a LoRA file (inspect).
type Summary struct {
	Formats  []string
	Modules  int
	Ranks    []int // distinct ranks of the low-rank pairs, ascending
	Alpha    bool  // some pair carries an alpha
	Full     int   // diff / diff_b deltas
	Unknown  []string
	Examples []string // a few module paths
}

// Describe parses f as a LoRA without keeping it (f stays the caller's).
func Describe(f checkpoint.File) (Summary, error) {
	a, err := parse(f, 1)
	if err != nil {
		return Summary{}, err
	}
	s := Summary{Formats: a.Formats, Modules: len(a.modules), Unknown: a.unknown}
	ranks := map[int]bool{}
	for _, name := range a.moduleNames() {
		m := a.modules[name]
		if m.down != "" {
			if in, ok := f.Info(m.down); ok && len(in.Shape) > 0 {
				ranks[in.Shape[0]] = true
			}
		}
		s.Alpha = s.Alpha || m.alpha != ""
		if m.diff != "" {
			s.Full++
		}
		if m.diffB != "" {
			s.Full++
		}
		if len(s.Examples) < 3 {
			s.Examples = append(s.Examples, name)
		}
	}
	for r := range ranks {
		s.Ranks = append(s.Ranks, r)
	}
	sort.Ints(s.Ranks)
	return s, nil
}

// FromFile parses an open checkpoint as a LoRA of strength scale; the
// Adapter takes ownership of f (Close closes it).
func FromFile(f checkpoint.File, scale float64) (*Adapter, error) {
	return parse(f, scale)
}

func parse(f checkpoint.File, scale float64) (*Adapter, error) {
	a := &Adapter{Spec: Spec{Path: f.Path(), Scale: scale}, f: f, modules: map[string]*module{}}
	names := f.Names()
	if len(names) == 0 {
		return nil, fmt.Errorf("LoRA %s: the file holds no tensors", f.Path())
	}
	table := newModuleTable(maxBlockIndex(names) + 1)
	formats := map[string]bool{}
	var unsupported []string
	for _, key := range names {
		if k := unsupportedKind(key); k != "" {
			unsupported = append(unsupported, fmt.Sprintf("%s (%s)", key, k))
			continue
		}
		spelling, r, kohya, ok := splitKey(key)
		if !ok {
			a.unknown = append(a.unknown, key)
			continue
		}
		name, ok := table.resolve(spelling, kohya)
		if !ok {
			a.unknown = append(a.unknown, key)
			continue
		}
		switch {
		case kohya:
			formats["kohya"] = true
		case r == roleDiff || r == roleDiffB:
			formats["diff"] = true
		case name != spelling:
			formats["diffusers"] = true
		default:
			formats["peft"] = true
		}
		m := a.modules[name]
		if m == nil {
			m = &module{name: name}
			a.modules[name] = m
		}
		m.keys = append(m.keys, key)
		slot := map[role]*string{roleDown: &m.down, roleUp: &m.up, roleAlpha: &m.alpha, roleDiff: &m.diff, roleDiffB: &m.diffB}[r]
		if *slot != "" {
			return nil, fmt.Errorf("LoRA %s: keys %q and %q both give module %s its %s", f.Path(), *slot, key, name, roleName(r))
		}
		*slot = key
	}
	if len(unsupported) > 0 {
		sort.Strings(unsupported)
		return nil, fmt.Errorf("LoRA %s: holds adapter kinds this program does not merge (only LoRA A/B, alpha, diff and diff_b): %s", f.Path(), listKeys(unsupported))
	}
	for k := range formats {
		a.Formats = append(a.Formats, k)
	}
	sort.Strings(a.Formats)
	// Every module needs both halves of a low-rank pair.
	var errs []string
	for _, name := range a.moduleNames() {
		m := a.modules[name]
		switch {
		case m.down != "" && m.up == "":
			errs = append(errs, fmt.Sprintf("%s has a down/A matrix (%q) but no up/B matrix", name, m.down))
		case m.up != "" && m.down == "":
			errs = append(errs, fmt.Sprintf("%s has an up/B matrix (%q) but no down/A matrix", name, m.up))
		case m.alpha != "" && m.down == "":
			errs = append(errs, fmt.Sprintf("%s has an alpha (%q) but no low-rank pair", name, m.alpha))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("LoRA %s: incomplete: %s", f.Path(), strings.Join(errs, "; "))
	}
	return a, nil
}

func roleName(r role) string {
	return [...]string{"down/A matrix", "up/B matrix", "alpha", "diff", "diff_b"}[r]
}

func (a *Adapter) moduleNames() []string {
	names := make([]string, 0, len(a.modules))
	for n := range a.modules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Close releases the file.
func (a *Adapter) Close() error {
	if a == nil || a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// Modules lists the Wan module paths the file changes.
func (a *Adapter) Modules() []string { return a.moduleNames() }

// Target is what adapters merge into: a model's parameters by name (Wan
// checkpoint names, e.g. "blocks.0.self_attn.q.weight"; an int8-quantised
// Linear's weight is listed under its .weight name with the [out, in]
// shape of its codes).
type Target map[string][]int

// UnknownKeysError lists the keys of LoRA files that match no parameter of
// the model.
type UnknownKeysError struct {
	Keys []string // "file: key (why)"
}

func (e *UnknownKeysError) Error() string {
	return fmt.Sprintf("%d LoRA key(s) match nothing in the model (a LoRA for another model or an unsupported naming; --lora-lenient merges the rest): %s",
		len(e.Keys), listKeys(e.Keys))
}

// Set is adapters bound to one model's parameters: what merges.
type Set struct {
	items []bound
}

// bound is one adapter's deltas by parameter name.
type bound struct {
	a      *Adapter
	deltas map[string][]delta
}

// Bind resolves every adapter's modules against the target's parameters
// and checks the shapes. Keys that match no parameter make an
// *UnknownKeysError unless lenient, when they are returned as warnings
// instead and skipped. Shape mismatches are always an error (a LoRA made
// for a model of another size). The adapters must stay open while the Set
// is used. No adapters give a nil Set, which merges nothing.
func Bind(t Target, adapters []*Adapter, lenient bool) (s *Set, warnings []string, err error) {
	if len(adapters) == 0 {
		return nil, nil, nil
	}
	s = &Set{}
	var unknown, problems []string
	for _, a := range adapters {
		if a.f == nil {
			return nil, nil, fmt.Errorf("LoRA %s: closed", a.Path)
		}
		b := bound{a: a, deltas: map[string][]delta{}}
		for _, key := range a.unknown {
			unknown = append(unknown, fmt.Sprintf("%s: %s (no Wan module of that name)", a.Path, key))
		}
		for _, name := range a.moduleNames() {
			ds, miss, errs := a.bindModule(t, a.modules[name])
			for _, k := range miss {
				unknown = append(unknown, fmt.Sprintf("%s: %s (the model has no %s)", a.Path, k, name))
			}
			problems = append(problems, errs...)
			for _, d := range ds {
				b.deltas[d.param] = append(b.deltas[d.param], d)
			}
		}
		s.items = append(s.items, b)
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("LoRA does not fit the model: %s", strings.Join(problems, "; "))
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		if !lenient {
			return nil, nil, &UnknownKeysError{Keys: unknown}
		}
		warnings = append(warnings, fmt.Sprintf("skipped %d LoRA key(s) that match nothing in the model: %s", len(unknown), listKeys(unknown)))
	}
	return s, warnings, nil
}

// Join is the sets applied together, in order (nil sets are skipped; nil
// when all are).
func Join(sets ...*Set) *Set {
	var out *Set
	for _, s := range sets {
		if s == nil || len(s.items) == 0 {
			continue
		}
		if out == nil {
			out = &Set{}
		}
		out.items = append(out.items, s.items...)
	}
	return out
}

// Adapters lists the set's adapters in order.
func (s *Set) Adapters() []*Adapter {
	if s == nil {
		return nil
	}
	out := make([]*Adapter, len(s.items))
	for i, b := range s.items {
		out[i] = b.a
	}
	return out
}

// bindModule turns one module's keys into deltas of target parameters; miss
// lists keys whose parameter the target lacks.
func (a *Adapter) bindModule(t Target, m *module) (ds []delta, miss []string, errs []string) {
	info := func(key string) checkpoint.Info {
		in, _ := a.f.Info(key)
		return in
	}
	weight := m.name + ".weight"
	ws, hasW := t[weight]
	if m.down != "" {
		if !hasW {
			miss = append(miss, m.down, m.up)
			if m.alpha != "" {
				miss = append(miss, m.alpha)
			}
		} else {
			d, err := a.lowRank(m, ws, info(m.down), info(m.up))
			if err != nil {
				errs = append(errs, err.Error())
			} else {
				ds = append(ds, d)
			}
		}
	}
	if m.diff != "" {
		param, shape, ok := weight, ws, hasW
		if !ok { // a parameter that is not a module's .weight (modulation)
			shape, ok = t[m.name]
			param = m.name
		}
		if !ok {
			miss = append(miss, m.diff)
		} else if in := info(m.diff); !fullFits(in.Shape, shape) {
			errs = append(errs, fmt.Sprintf("%s: %s is %v, the model's %s is %v", a.Path, m.diff, in.Shape, param, shape))
		} else if !in.DType.IsFloat() {
			errs = append(errs, fmt.Sprintf("%s: %s has dtype %v, want a float type", a.Path, m.diff, in.DType))
		} else {
			ds = append(ds, delta{param: param, kind: full, diff: m.diff, scale: 1})
		}
	}
	if m.diffB != "" {
		bias := m.name + ".bias"
		shape, ok := t[bias]
		if !ok {
			miss = append(miss, m.diffB)
		} else if in := info(m.diffB); !fullFits(in.Shape, shape) {
			errs = append(errs, fmt.Sprintf("%s: %s is %v, the model's %s is %v", a.Path, m.diffB, in.Shape, bias, shape))
		} else {
			ds = append(ds, delta{param: bias, kind: full, diff: m.diffB, scale: 1})
		}
	}
	return ds, miss, errs
}

// lowRank checks a B·A pair against the weight shape [out, in...] and reads
// its alpha.
func (a *Adapter) lowRank(m *module, ws []int, down, up checkpoint.Info) (delta, error) {
	out, in := rowsCols(ws)
	rank, dIn := rowsCols(down.Shape)
	uOut, uRank := rowsCols(up.Shape)
	if !down.DType.IsFloat() || !up.DType.IsFloat() {
		return delta{}, fmt.Errorf("%s: %s: A and B must be float tensors, got %v and %v", a.Path, m.name, down.DType, up.DType)
	}
	if rank <= 0 || uRank != rank || dIn != in || uOut != out {
		return delta{}, fmt.Errorf("%s: %s: A %v and B %v do not make a [%d, %d] delta for the model's weight %v (a LoRA for a model of another size?)",
			a.Path, m.name, down.Shape, up.Shape, out, in, ws)
	}
	scale := 1.0
	if m.alpha != "" {
		v, err := a.f.Float32(m.alpha)
		if err != nil {
			return delta{}, fmt.Errorf("%s: %w", a.Path, err)
		}
		if len(v) != 1 {
			return delta{}, fmt.Errorf("%s: %s: alpha has %d values, want one", a.Path, m.alpha, len(v))
		}
		scale = float64(v[0]) / float64(rank)
	}
	return delta{param: m.name + ".weight", kind: lowRank, down: m.down, up: m.up, rank: rank, scale: scale}, nil
}

// rowsCols views a shape as a matrix [shape[0], product of the rest].
func rowsCols(s []int) (int, int) {
	if len(s) == 0 {
		return 1, 1
	}
	return s[0], tensor.NumElements(s[1:])
}

// fullFits reports whether a full delta of shape d applies to a parameter
// of shape p: the same element count and, for matrices, the same rows
// (a Conv3d patch embedding [D, C, 1, 2, 2] fits the Linear form [D, 4C]).
func fullFits(d, p []int) bool {
	if tensor.NumElements(d) != tensor.NumElements(p) {
		return false
	}
	if len(d) >= 2 && len(p) >= 2 {
		return d[0] == p[0]
	}
	return true
}

// listKeys shows up to 10 entries and how many more there are.
func listKeys(keys []string) string {
	const show = 10
	q := make([]string, 0, show)
	for i, k := range keys {
		if i == show {
			break
		}
		q = append(q, k)
	}
	s := strings.Join(q, ", ")
	if len(keys) > show {
		s += fmt.Sprintf(" and %d more", len(keys)-show)
	}
	return s
}
