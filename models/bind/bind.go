// Package bind binds a model's parameters to the tensors of a checkpoint
// file: it looks each one up by key, checks its shape and stored dtype,
// converts it to the model's dtype and uploads it to the backend. Every
// model loader (wan, umt5, wanvae, taehv) goes through it, so a wrong file
// fails the same way whatever the model: with one error that names the
// file, the key and the expected and actual shape or dtype, or every
// missing key at once.
//
// Two ways to use it, as the models need:
//   - Check compares the whole file with a list of Specs up front (the DiT
//     and the text encoder, whose architecture is read from the shapes
//     first), reporting every missing, unexpected and mis-shaped tensor;
//   - a Binder reads tensor after tensor as the model's module tree is
//     built (the VAEs), recording the first bad tensor and collecting the
//     missing keys; Err reports them once the walk is done.
package bind

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Kind says which stored dtypes a tensor may have.
type Kind int

const (
	// Float is any float dtype (tensor.DType.IsFloat).
	Float Kind = iota
	// StdFloat is float32, bfloat16 or float16: what a released DiT holds.
	StdFloat
	// Int8 is int8 only (Int8Linear codes).
	Int8
	// F32 is float32 only (Int8Linear tile scales).
	F32
)

// String is what an error says is wanted ("want dtype int8, got …").
func (k Kind) String() string {
	switch k {
	case StdFloat:
		return "dtype bfloat16, float32 or float16"
	case Int8:
		return "dtype int8"
	case F32:
		return "dtype float32"
	}
	return "a float dtype"
}

// Accepts reports whether a tensor stored as dt is of kind k.
func (k Kind) Accepts(dt tensor.DType) bool {
	switch k {
	case StdFloat:
		return dt == tensor.F32 || dt == tensor.BF16 || dt == tensor.F16
	case Int8:
		return dt == tensor.I8
	case F32:
		return dt == tensor.F32
	}
	return dt.IsFloat()
}

// Spec is one tensor a model reads: its full key, its stored shape and
// the dtypes it may be stored in.
type Spec struct {
	Name  string
	Shape []int
	Kind  Kind
}

// Check compares f with want and reports every missing tensor, every shape
// or dtype mismatch and, when strict, every tensor of f that want does not
// name, in one error: "<file>: not a valid <what> checkpoint; missing …;
// unexpected …; tensor "k": want shape […], got […]".
func Check(f checkpoint.File, what string, want []Spec, strict bool) error {
	seen := make(map[string]bool, len(want))
	var missing, problems []string
	for _, s := range want {
		seen[s.Name] = true
		in, ok := f.Info(s.Name)
		if !ok {
			missing = append(missing, s.Name)
			continue
		}
		if !slices.Equal(in.Shape, s.Shape) {
			problems = append(problems, fmt.Sprintf("tensor %q: want shape %v, got %v", s.Name, s.Shape, in.Shape))
		}
		if !s.Kind.Accepts(in.DType) {
			problems = append(problems, fmt.Sprintf("tensor %q: want %s, got %v", s.Name, s.Kind, in.DType))
		}
	}
	var unexpected []string
	if strict {
		for _, n := range f.Names() {
			if !seen[n] {
				unexpected = append(unexpected, n)
			}
		}
	}
	if len(missing)+len(unexpected)+len(problems) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: not a valid %s checkpoint", f.Path(), what)
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; missing %s", Count(missing))
	}
	if len(unexpected) > 0 {
		fmt.Fprintf(&b, "; unexpected %s", Count(unexpected))
	}
	for _, p := range problems {
		b.WriteString("; ")
		b.WriteString(p)
	}
	return errors.New(b.String())
}

// Count is "N tensor(s): "a", "b", … and M more": the number of names and
// the first few, sorted and quoted (names sorts in place).
func Count(names []string) string {
	sort.Strings(names)
	const show = 8
	q := make([]string, 0, show)
	for i, n := range names {
		if i == show {
			break
		}
		q = append(q, strconv.Quote(n))
	}
	s := strings.Join(q, ", ")
	if len(names) > show {
		s += fmt.Sprintf(" and %d more", len(names)-show)
	}
	noun := "tensors"
	if len(names) == 1 {
		noun = "tensor"
	}
	return fmt.Sprintf("%d %s: %s", len(names), noun, s)
}

// Uploader is where a Binder puts tensors: a backend, or anything that
// takes uploads as one does (the DiT's host-memory streamer).
type Uploader interface {
	Upload(dt tensor.DType, shape []int, data []float32) backend.Tensor
	UploadInt8(shape []int, data []int8) backend.Tensor
	Free(t backend.Tensor)
}

// Binder reads one model's tensors from File onto To. After the first bad
// tensor it reads and uploads nothing more; a missing key is recorded and
// the walk goes on, so Err can name every missing key at once (and nothing
// is uploaded once one is missing: the load fails anyway).
type Binder struct {
	File checkpoint.File
	// To receives the uploads; nil checks names, shapes and dtypes only
	// (nothing is read or uploaded).
	To Uploader
	// DType is what Upload and Host convert to.
	DType tensor.DType
	// Prefix is put before every key (a file whose keys carry one, such
	// as the conformance set's "weight.").
	Prefix string
	// What names the model in the missing-keys error ("Wan2.1 VAE").
	What string
	// Hint ends the shape and missing-keys errors (which file to use).
	Hint string
	// Used, when set, records every key looked up.
	Used map[string]bool
	// Specs, when set, collects the name and stored shape of every tensor
	// looked up instead of looking anything up: the walk then lists the
	// model's state dict (Float tensors, stored as float32).
	Specs *[]checkpoint.Info

	missing  []string
	err      error
	uploaded []backend.Tensor
}

// fail records the first error.
func (b *Binder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// ok reports whether nothing has gone wrong so far.
func (b *Binder) ok() bool { return b.err == nil && len(b.missing) == 0 }

// hint is Hint as a suffix.
func (b *Binder) hint() string {
	if b.Hint == "" {
		return ""
	}
	return " (" + b.Hint + ")"
}

// lookup finds Prefix+key, checks it against shape and kind, and returns
// its full name; ok is false when it is absent, bad, or nothing is to be
// read (a dry or listing walk, or an earlier error).
func (b *Binder) lookup(key string, shape []int, kind Kind) (string, bool) {
	name := b.Prefix + key
	if b.Specs != nil {
		*b.Specs = append(*b.Specs, checkpoint.Info{Name: name, DType: tensor.F32, Shape: shape})
		return name, false
	}
	if b.err != nil {
		return name, false
	}
	if b.Used != nil {
		b.Used[name] = true
	}
	info, ok := b.File.Info(name)
	if !ok {
		b.missing = append(b.missing, name)
		return name, false
	}
	if !backend.SameShape(info.Shape, shape) {
		b.fail(fmt.Errorf("%s: tensor %q: want shape %v, got %v%s", b.File.Path(), name, shape, info.Shape, b.hint()))
		return name, false
	}
	if !kind.Accepts(info.DType) {
		b.fail(fmt.Errorf("%s: tensor %q: want %s, got %v", b.File.Path(), name, kind, info.DType))
		return name, false
	}
	// Once a key is missing the load fails: read nothing more.
	return name, b.To != nil && len(b.missing) == 0
}

// Info is the stored description of Prefix+key, if the file has it.
func (b *Binder) Info(key string) (checkpoint.Info, bool) {
	if b.File == nil {
		return checkpoint.Info{}, false
	}
	return b.File.Info(b.Prefix + key)
}

// Read returns the values of Prefix+key, a tensor of any float dtype and
// the given stored shape, as float32 (nil when absent, bad or not read).
func (b *Binder) Read(key string, shape []int) []float32 {
	return b.read(key, shape, Float)
}

// ReadKind is Read for a tensor stored in one of kind's float dtypes.
func (b *Binder) ReadKind(key string, shape []int, kind Kind) []float32 {
	return b.read(key, shape, kind)
}

func (b *Binder) read(key string, shape []int, kind Kind) []float32 {
	name, ok := b.lookup(key, shape, kind)
	if !ok {
		return nil
	}
	data, err := b.File.Float32(name)
	if err != nil {
		b.fail(err)
		return nil
	}
	return data
}

// ReadInt8 returns the values of Prefix+key, an int8 tensor of the given
// shape (nil when absent, bad or not read).
func (b *Binder) ReadInt8(key string, shape []int) []int8 {
	name, ok := b.lookup(key, shape, Int8)
	if !ok {
		return nil
	}
	data, err := b.File.Int8(name)
	if err != nil {
		b.fail(err)
		return nil
	}
	return data
}

// Host is Read rounded to DType on the host: a table the model keeps in
// host memory, with the values an upload in DType would hold.
func (b *Binder) Host(key string, shape []int) []float32 {
	v := b.Read(key, shape)
	if v != nil && b.DType == tensor.BF16 {
		tensor.RoundBF16Slice(v)
	}
	return v
}

// Upload puts data on To in DType with the given shape (nil when data is
// nil or the load has already failed).
func (b *Binder) Upload(shape []int, data []float32) backend.Tensor {
	return b.UploadAs(b.DType, shape, data)
}

// UploadAs is Upload in dtype dt.
func (b *Binder) UploadAs(dt tensor.DType, shape []int, data []float32) backend.Tensor {
	if data == nil || b.To == nil || !b.ok() {
		return nil
	}
	if n := tensor.NumElements(shape); n != len(data) {
		b.fail(fmt.Errorf("%s: upload shape %v holds %d values, got %d", b.File.Path(), shape, n, len(data)))
		return nil
	}
	return b.track(b.To.Upload(dt, shape, data))
}

// UploadInt8 puts int8 codes on To.
func (b *Binder) UploadInt8(shape []int, data []int8) backend.Tensor {
	if data == nil || b.To == nil || !b.ok() {
		return nil
	}
	if n := tensor.NumElements(shape); n != len(data) {
		b.fail(fmt.Errorf("%s: upload shape %v holds %d values, got %d", b.File.Path(), shape, n, len(data)))
		return nil
	}
	return b.track(b.To.UploadInt8(shape, data))
}

func (b *Binder) track(t backend.Tensor) backend.Tensor {
	if t != nil {
		b.uploaded = append(b.uploaded, t)
	}
	return t
}

// Tensor reads Prefix+key (stored shape want) and uploads it in DType as
// shape up (nil: want), the view the model's ops take.
func (b *Binder) Tensor(key string, want, up []int) backend.Tensor {
	data := b.Read(key, want)
	if up == nil {
		up = want
	}
	return b.Upload(up, data)
}

// Err is the first error of the walk, else the error naming every missing
// key, else nil.
func (b *Binder) Err() error {
	if b.err != nil || len(b.missing) == 0 {
		return b.err
	}
	return fmt.Errorf("%s: not a complete %s checkpoint: missing %s%s", b.File.Path(), b.What, Count(b.missing), b.hint())
}

// Uploaded lists the tensors uploaded so far, oldest first.
func (b *Binder) Uploaded() []backend.Tensor { return b.uploaded }

// Free releases every tensor uploaded so far (a load that failed).
func (b *Binder) Free() {
	for _, t := range b.uploaded {
		b.To.Free(t)
	}
	b.uploaded = nil
}
