package cpu

import (
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// fails reports whether f fails with a *backend.Error naming want.
func fails(f func(), want string) (ok bool) {
	defer func() {
		e, isErr := recover().(*backend.Error)
		ok = isErr && strings.Contains(e.Error(), want)
	}()
	f()
	return false
}

// TestScopeFreesWhatItAllocated: End frees every tensor allocated in the
// scope (views included) except what is kept, nested scopes hand kept
// tensors to their parent, and tensors from outside stay alive.
func TestScopeFreesWhatItAllocated(t *testing.T) {
	be := New()
	w := be.Upload(tensor.F32, []int{2, 2}, []float32{1, 2, 3, 4}) // a "weight": no scope
	outer := be.Begin()
	x := be.Upload(tensor.BF16, []int{2, 2}, []float32{1, 2, 3, 4})
	view := be.Reshape(be.Add(x, w), 4)
	var kept backend.Tensor
	inner := be.Begin()
	a := be.Mul(x, w)
	kept = be.SiLU(a)
	cached := be.Scale(a, 2)
	be.Persist(cached)
	if n := be.ScopedLive(); n != 4 { // x, Add, a, SiLU in scopes; cached persisted
		t.Fatalf("open scopes own %d tensors, want 4", n)
	}
	inner.End(kept)
	if n := be.ScopedLive(); n != 3 { // x, Add, and the kept SiLU moved to outer
		t.Fatalf("after the inner End the scopes own %d tensors, want 3", n)
	}
	if !fails(func() { be.Download(a) }, "after the end of its scope") {
		t.Errorf("a tensor of an ended scope is still usable")
	}
	if got := be.Download(kept); len(got) != 4 {
		t.Errorf("kept tensor: %d values", len(got))
	}
	outer.End()
	if n := be.ScopedLive(); n != 0 {
		t.Fatalf("after the outer End the scopes own %d tensors, want 0", n)
	}
	for name, x := range map[string]backend.Tensor{"x": x, "view of Add": view, "kept (to the ended outer scope)": kept} {
		if !fails(func() { be.Download(x) }, "after the end of its scope") {
			t.Errorf("%s is still usable after the outer End", name)
		}
	}
	be.Download(w)      // outside every scope: alive
	be.Download(cached) // persisted: alive
	outer.End()         // a second End is a no-op
}

// TestScopeKeepToNoScope: a tensor kept by the outermost scope belongs to
// no scope and outlives it; ending scopes out of order fails.
func TestScopeKeepToNoScope(t *testing.T) {
	be := New()
	sc := be.Begin()
	y := backend.Scoped(be, func() backend.Tensor {
		return be.Scale(be.Upload(tensor.F32, []int{3}, []float32{1, 2, 3}), 2)
	})
	if n := be.ScopedLive(); n != 1 {
		t.Fatalf("after Scoped the scope owns %d tensors, want 1 (its result)", n)
	}
	sc.End(y)
	if got := be.Download(y); got[2] != 6 {
		t.Errorf("kept result = %v", got)
	}
	a := be.Begin()
	b := be.Begin()
	if !fails(func() { a.End() }, "ended before the scopes opened inside it") {
		t.Errorf("ending an outer scope before its inner one did not fail")
	}
	b.End()
	a.End()
}

// TestFreeView: Free of a view frees the shared storage, as on the GPU.
func TestFreeView(t *testing.T) {
	be := New()
	x := be.Upload(tensor.F32, []int{2, 2}, []float32{1, 2, 3, 4})
	be.Free(be.Reshape(x, 4))
	if !fails(func() { be.Download(x) }, "used after Free") {
		t.Errorf("the tensor behind a freed view is still usable")
	}
}
