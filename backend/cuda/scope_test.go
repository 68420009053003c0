package cuda

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestScopePool checks, without a device, the bookkeeping that scopes do
// over the pool: what a scope allocated goes back at End (pool inUse drops
// to what is kept), kept buffers move to the parent, buffers from outside
// any scope (and those kept past the outermost one) count as loose until
// freed, scoped ones do not, and a buffer freed early is not released
// twice.
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
	if n := ar.Loose(); n != 1 {
		t.Errorf("%d loose buffers after a weight was allocated outside every scope, want 1", n)
	}
	outer := ar.Begin()
	x := alloc()
	inner := ar.Begin()
	y := alloc()
	view := &Tensor{shape: []int{2, 64}, dt: tensor.F32, buf: y.buf} // a Reshape
	z := alloc()
	early := alloc()
	pl.freeBuf(early.buf) // an op's explicit Free inside the scope
	if n := ar.Loose(); n != 1 {
		t.Errorf("%d loose buffers with three scoped ones, want 1 (the weight)", n)
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
	if got := inUse(); got != 2*512 || !y.buf.freed || x.buf.freed || ar.Loose() != 2 {
		t.Fatalf("after the outer End: inUse %d (want %d: w and x), y freed %v (want true), x freed %v (want false), %d loose (want 2: w and the kept x)", got, 2*512, y.buf.freed, x.buf.freed, ar.Loose())
	}
	ar.Freed(x.buf) // the holder's Free (Backend.Free)
	pl.freeBuf(x.buf)
	ar.Freed(w.buf)
	pl.freeBuf(w.buf)
	if n := ar.Loose(); n != 0 || inUse() != 0 {
		t.Errorf("after freeing the weight and x: %d loose, inUse %d; want 0, 0", n, inUse())
	}
	pl.mu.Lock()
	n := len(pl.free[512])
	pl.mu.Unlock()
	if n != 5 { // early, z, y, x, w: each exactly once
		t.Errorf("free list holds %d blocks, want 5", n)
	}
}
