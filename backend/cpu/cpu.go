// Package cpu is the pure-Go reference backend: float32 arithmetic over
// bf16/fp32/int8 storage on all cores. It defines what every op means; the
// CUDA backend is tested against it.
package cpu

import (
	"runtime"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// Tensor is a CPU tensor. Float tensors (F32, BF16) keep their values in F
// as float32; a BF16 tensor's values are exactly bf16-representable. I8
// tensors keep theirs in I.
type Tensor struct {
	shape []int
	dt    tensor.DType
	F     []float32
	I     []int8
	freed bool    // set by Free or by the end of its scope; any later use fails
	base  *Tensor // the tensor whose storage a Reshape view shares, or nil
}

// root is the tensor that owns t's storage.
func (t *Tensor) root() *Tensor {
	if t.base != nil {
		return t.base
	}
	return t
}

func (t *Tensor) Shape() []int        { return t.shape }
func (t *Tensor) DType() tensor.DType { return t.dt }

// Backend is the CPU backend. The zero value is not usable; call New.
type Backend struct {
	threads int
	arena   backend.Arena[*Tensor]
}

// New returns a CPU backend using every core.
func New() *Backend {
	b := &Backend{threads: runtime.GOMAXPROCS(0)}
	b.arena.Storage = func(t backend.Tensor) (*Tensor, bool) {
		c, ok := t.(*Tensor)
		if !ok || c == nil {
			return nil, false
		}
		return c.root(), true
	}
	b.arena.Release = release
	return b
}

// Begin opens a scope (backend.Scope): tensors the ops allocate until it
// ends belong to it.
func (b *Backend) Begin() backend.Scope { return b.arena.Begin() }

// Persist moves ts out of every open scope (backend.Scoper).
func (b *Backend) Persist(ts ...backend.Tensor) { b.arena.Persist(ts...) }

// ScopedLive is the number of tensors (views not counted) that the open
// scopes own: what their End will free.
func (b *Backend) ScopedLive() int { return b.arena.Live() }

// Loose is the number of tensors outside every scope that have not been
// freed (backend.Arena.Loose): a model's whole life, Load to Free, must
// leave it where it was.
func (b *Backend) Loose() int { return b.arena.Loose() }

// track registers a new tensor in the innermost open scope.
func (b *Backend) track(t *Tensor) *Tensor {
	b.arena.Track(t)
	return t
}

// newTensor is NewTensor, owned by the open scope.
func (b *Backend) newTensor(dt tensor.DType, shape []int, data []float32) *Tensor {
	return b.track(NewTensor(dt, shape, data))
}

func (b *Backend) Name() string { return "cpu" }

// T asserts that t is a CPU tensor, failing with a clear message otherwise.
func T(t backend.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok || c == nil {
		backend.Fail("cpu backend: tensor %T is not a CPU tensor", t)
	}
	if c.freed || c.root().freed {
		backend.Fail("cpu backend: tensor %v %v used after Free or after the end of its scope", c.dt, c.shape)
	}
	return c
}

// NewTensor wraps float32 data (not copied) as a tensor of dtype dt, rounding
// it to dt in place.
func NewTensor(dt tensor.DType, shape []int, data []float32) *Tensor {
	if tensor.NumElements(shape) != len(data) {
		backend.Fail("cpu: shape %v holds %d elements, data has %d", shape, tensor.NumElements(shape), len(data))
	}
	if dt == tensor.BF16 {
		roundBF16(data)
	} else if dt != tensor.F32 {
		backend.Fail("cpu: float tensor dtype must be float32 or bfloat16, got %v", dt)
	}
	return &Tensor{shape: append([]int(nil), shape...), dt: dt, F: data}
}

// parallelFor runs f over [0,n) split into contiguous chunks, one per worker.
// A panic in a worker (a *backend.Error from a failing op, or a bug) is
// re-raised in the calling goroutine once all workers have stopped, so
// backend.Recover still sees it.
func (b *Backend) parallelFor(n int, f func(lo, hi int)) {
	workers := b.threads
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		f(0, n)
		return
	}
	var (
		wg       sync.WaitGroup
		once     sync.Once
		panicked any
	)
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					once.Do(func() { panicked = r })
				}
			}()
			f(lo, hi)
		}(lo, hi)
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}

// The CPU backend runs the whole DiT contract.
var _ backend.DiT = (*Backend)(nil)
