package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// Ownership of device memory: a buffer allocated while a scope is open
// (backend.Scope) belongs to that scope, which returns it to the pool at
// End. A buffer allocated outside every scope (weights, caches, results
// kept past the outermost scope) belongs to whoever holds it, who must
// Free it; the arena counts such buffers (Loose) so tests can check that a
// model's whole life returns every one. Nothing is left to the garbage
// collector: device memory comes back at a known point, and an op needs
// nothing to keep its inputs alive while its kernels are queued.

// initArena wires the backend's scope stack to its pool. It makes no CUDA
// call, so the unit test runs it without a device.
func initArena(a *backend.Arena[*buffer], pl *pool) {
	a.Storage = func(t backend.Tensor) (*buffer, bool) {
		c, ok := t.(*Tensor)
		if !ok || c == nil {
			return nil, false
		}
		return c.buf, true
	}
	a.Release = pl.freeBuf
}

// own puts a new buffer in the innermost scope, or counts it as loose (its
// holder frees it) when none is open.
func (p *pool) own(a *backend.Arena[*buffer], buf *buffer) { a.Track(buf) }

// freeBuf returns buf's block to the pool now (idempotent).
func (p *pool) freeBuf(buf *buffer) {
	if buf.freed {
		return
	}
	buf.freed = true
	p.release(buf.ptr, buf.class)
}

// Begin opens a scope (backend.Scope): the tensors allocated until it ends
// belong to it and go back to the pool at its End.
func (b *Backend) Begin() backend.Scope { return b.arena.Begin() }

// Loose is the number of device allocations outside every scope that have
// not been freed (backend.Arena.Loose).
func (b *Backend) Loose() int { return b.arena.Loose() }

// Persist moves ts out of every open scope (backend.Scoper).
func (b *Backend) Persist(ts ...backend.Tensor) { b.arena.Persist(ts...) }
