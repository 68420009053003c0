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

// TestPoolPeakBlocks checks, without a device, the traced pool's record of
// what its high-water mark is made of: the live blocks per size class at
// the largest inUse, taken from free lists or fresh, kept across smaller
// later uses and restarted by a reset.
func TestPoolPeakBlocks(t *testing.T) {
	pl := pool{free: map[int64][]uintptr{}, live: map[int64]int{}, atPeak: map[int64]int{}}
	out := func(c int64) { pl.mu.Lock(); pl.handOut(c); pl.mu.Unlock() }
	out(1 << 20)
	out(4 << 20)
	out(4 << 20)                 // peak 9 MiB: 1×1 MiB, 2×4 MiB
	pl.release(0x1000, 4<<20)    // 5 MiB
	out(2 << 20)                 // 7 MiB, below the peak
	pl.release(0x2000, 1<<20)    // 6 MiB
	pl.free[1<<20] = []uintptr{} // nothing to take
	if _, ok := pl.take(1 << 20); ok {
		t.Fatal("take found a block on an empty free list")
	}
	want := map[int64]int{1 << 20: 1, 4 << 20: 2}
	if len(pl.atPeak) != len(want) || pl.atPeak[1<<20] != 1 || pl.atPeak[4<<20] != 2 || pl.peak != 9<<20 {
		t.Fatalf("peak %d with blocks %v, want %d with %v", pl.peak, pl.atPeak, 9<<20, want)
	}
	pl.free[8<<20] = []uintptr{0x3000}
	if _, ok := pl.take(8 << 20); !ok { // 14 MiB: a new peak from the free list
		t.Fatal("take missed the cached block")
	}
	if pl.peak != 14<<20 || pl.atPeak[8<<20] != 1 || pl.atPeak[4<<20] != 1 || pl.atPeak[2<<20] != 1 || pl.atPeak[1<<20] != 0 {
		t.Fatalf("after a new peak from the free list: peak %d, blocks %v", pl.peak, pl.atPeak)
	}
	pl.release(0x3000, 8<<20)
	pl.mu.Lock()
	pl.peak = pl.inUse // ResetPeak
	pl.snapshot()
	pl.mu.Unlock()
	if pl.atPeak[8<<20] != 0 || pl.atPeak[4<<20] != 1 || pl.atPeak[2<<20] != 1 {
		t.Fatalf("after a reset: blocks %v, want one of 4 MiB and one of 2 MiB", pl.atPeak)
	}
}
