package cuda

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestScopePool checks, without a device, the bookkeeping that scopes do
// over the pool: what a scope allocated goes back at End (pool inUse drops
// to what is kept), kept buffers move to the parent, buffers from outside
// any scope get a GC cleanup, scoped ones do not, and a buffer freed early
// is not released twice.
func TestScopePool(t *testing.T) {
	var pl pool
	pl.free = map[int64][]uintptr{}
	var ar backend.Arena[*buffer]
	initArena(&ar, &pl)
	next := uintptr(0x1000)
	alloc := func() *Tensor { // newTensor's bookkeeping, minus the driver
		buf := &buffer{ptr: next, class: 512}
		next += 512
		pl.mu.Lock()
		pl.inUse += 512
		pl.mu.Unlock()
		pl.own(&ar, buf)
		return &Tensor{shape: []int{128}, dt: tensor.F32, buf: buf}
	}
	inUse := func() int64 { pl.mu.Lock(); defer pl.mu.Unlock(); return pl.inUse }

	w := alloc() // a weight
	if !w.buf.gc {
		t.Errorf("a buffer allocated outside every scope has no GC cleanup")
	}
	outer := ar.Begin()
	x := alloc()
	inner := ar.Begin()
	y := alloc()
	view := &Tensor{shape: []int{2, 64}, dt: tensor.F32, buf: y.buf} // a Reshape
	z := alloc()
	early := alloc()
	pl.freeBuf(early.buf) // an op's explicit Free inside the scope
	if x.buf.gc || y.buf.gc {
		t.Errorf("a scoped buffer has a GC cleanup")
	}
	if got := inUse(); got != 4*512 {
		t.Fatalf("inUse %d before End, want %d", got, 4*512)
	}
	inner.End(view)
	if got := inUse(); got != 3*512 || !z.buf.freed || y.buf.freed {
		t.Fatalf("after the inner End: inUse %d (want %d), z freed %v (want true), kept y freed %v (want false)", got, 3*512, z.buf.freed, y.buf.freed)
	}
	if got := ar.Live(); got != 2 {
		t.Errorf("outer scope owns %d buffers, want 2 (x and the kept y)", got)
	}
	outer.End(x)
	if got := inUse(); got != 2*512 || !y.buf.freed || x.buf.freed || !x.buf.gc {
		t.Fatalf("after the outer End: inUse %d (want %d: w and x), y freed %v (want true), x freed %v gc %v (want false, true)", got, 2*512, y.buf.freed, x.buf.freed, x.buf.gc)
	}
	pl.mu.Lock()
	n := len(pl.free[512])
	pl.mu.Unlock()
	if n != 3 { // early, z, y: each exactly once
		t.Errorf("free list holds %d blocks, want 3", n)
	}
}
