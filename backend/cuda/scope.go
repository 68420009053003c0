package cuda

import (
	"runtime"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// Ownership of device memory: a buffer allocated while a scope is open
// (backend.Scope) belongs to that scope, which returns it to the pool at
// End; such a buffer has no GC cleanup, so an op needs nothing to keep its
// inputs alive. A buffer allocated outside every scope (weights, callers
// that do not use scopes), or kept past the outermost one, gets a GC
// cleanup that returns it once no tensor refers to it.

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
	a.Unowned = pl.collectable
}

// own puts a new buffer in the innermost scope, or in the GC's care when
// none is open.
func (p *pool) own(a *backend.Arena[*buffer], buf *buffer) {
	if !a.Track(buf) {
		p.collectable(buf)
	}
}

// collectable gives buf a GC cleanup that returns its block to the pool.
func (p *pool) collectable(buf *buffer) {
	if buf.freed || buf.gc {
		return
	}
	buf.gc = true
	buf.cleanup = runtime.AddCleanup(buf, func(blk [2]int64) { p.release(uintptr(blk[0]), blk[1]) }, [2]int64{int64(buf.ptr), buf.class})
}

// freeBuf returns buf's block to the pool now (idempotent).
func (p *pool) freeBuf(buf *buffer) {
	if buf.freed {
		return
	}
	buf.freed = true
	if buf.gc {
		buf.cleanup.Stop()
	}
	p.release(buf.ptr, buf.class)
	for _, d := range buf.derived {
		p.freeBuf(d.buf)
	}
	buf.derived = nil
}

// Begin opens a scope (backend.Scope): the tensors allocated until it ends
// belong to it and go back to the pool at its End.
func (b *Backend) Begin() backend.Scope { return b.arena.Begin() }

// Persist moves ts out of every open scope (backend.Scoper).
func (b *Backend) Persist(ts ...backend.Tensor) { b.arena.Persist(ts...) }
