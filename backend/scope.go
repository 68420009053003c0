package backend

import "sync"

// Scope owns the tensors allocated while it is the innermost open scope of
// its backend, as ollama's ml.Context does: a model entry point opens one,
// its ops allocate into it, and End frees everything allocated in it except
// what was kept. Forward passes therefore free nothing by hand.
//
// Scopes nest and must end in reverse order of Begin. Tensors allocated
// while no scope is open (weights at load time, tensors of callers that do
// not use scopes) belong to no scope and live until Free: nothing is left
// to the garbage collector, and the arena counts them (Arena.Loose) so a
// test can check that a model's whole life frees every one.
//
// A backend's scopes are one stack: open and end them from the goroutine
// that runs the backend's ops (every caller of a backend already
// serialises its ops on it).
type Scope interface {
	// Keep moves the storage behind ts from this scope to the enclosing
	// one (to no scope at the outermost level), so it outlives End.
	// Tensors not owned by this scope (weights, outer tensors) are left as
	// they are.
	Keep(ts ...Tensor)
	// End keeps ts, then frees every other tensor allocated in the scope,
	// views included; using one afterwards fails. Ending a scope twice is
	// a no-op, so `defer sc.End()` may follow an explicit End.
	End(keep ...Tensor)
}

// Scoper is a backend that owns its allocations in scopes.
type Scoper interface {
	// Begin opens a scope nested in the current one.
	Begin() Scope
	// Persist moves the storage behind ts out of every open scope: it then
	// lives until Free, like a weight (a cache kept across calls).
	Persist(ts ...Tensor)
}

// Begin opens a scope on be.
func Begin(be Core) Scope { return be.(Scoper).Begin() }

// Scoped runs f in a new scope on be and keeps only its result.
func Scoped[T Tensor](be Core, f func() T) T {
	sc := Begin(be)
	defer sc.End()
	out := f()
	sc.Keep(out)
	return out
}

// Arena is the scope stack a backend embeds. A is the backend's unit of
// storage (one allocation, shared by all views of it); Storage maps a
// tensor to it, Release frees one (it must be idempotent: the owner may
// have freed it with Free already), and Unowned, when set, is called for
// storage that leaves the outermost scope.
type Arena[A comparable] struct {
	Storage func(Tensor) (A, bool)
	Release func(A)
	Unowned func(A)

	mu    sync.Mutex
	stack []*arenaScope[A]
	// loose holds the storage that no scope owns and that has not been
	// freed: what the owner must Free (Loose counts it, so tests can
	// assert that a model's whole life leaves nothing behind).
	loose map[A]struct{}
}

type arenaScope[A comparable] struct {
	a     *Arena[A]
	depth int // index in a.stack; -1 once ended
	items []A
	index map[A]int
}

// Track registers storage allocated just now in the innermost scope and
// reports whether one was open.
func (a *Arena[A]) Track(x A) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.stack) == 0 {
		a.addLoose(x)
		return false
	}
	a.stack[len(a.stack)-1].add(x)
	return true
}

// Freed records that the owner freed x (the backend's Free calls it), so
// it no longer counts as loose.
func (a *Arena[A]) Freed(x A) {
	a.mu.Lock()
	delete(a.loose, x)
	a.mu.Unlock()
}

// Loose is the number of allocations outside every scope that have not
// been freed: weights, caches, results kept past the outermost scope, and
// anything leaked.
func (a *Arena[A]) Loose() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.loose)
}

func (a *Arena[A]) addLoose(x A) {
	if a.loose == nil {
		a.loose = map[A]struct{}{}
	}
	a.loose[x] = struct{}{}
}

// Open is the number of open scopes.
func (a *Arena[A]) Open() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.stack)
}

// Live is the number of allocations the open scopes own.
func (a *Arena[A]) Live() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, s := range a.stack {
		n += len(s.index)
	}
	return n
}

// Begin opens a scope nested in the current one.
func (a *Arena[A]) Begin() Scope {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &arenaScope[A]{a: a, depth: len(a.stack), index: map[A]int{}}
	a.stack = append(a.stack, s)
	return s
}

// Persist moves the storage behind ts out of every open scope.
func (a *Arena[A]) Persist(ts ...Tensor) {
	a.mu.Lock()
	var out []A
	for _, t := range ts {
		x, ok := a.storage(t)
		if !ok {
			continue
		}
		for _, s := range a.stack {
			if s.remove(x) {
				out = append(out, x)
				break
			}
		}
	}
	a.mu.Unlock()
	a.unowned(out)
}

func (a *Arena[A]) storage(t Tensor) (A, bool) {
	var zero A
	if t == nil || a.Storage == nil {
		return zero, false
	}
	return a.Storage(t)
}

func (a *Arena[A]) unowned(xs []A) {
	a.mu.Lock()
	for _, x := range xs {
		a.addLoose(x)
	}
	a.mu.Unlock()
	if a.Unowned != nil {
		for _, x := range xs {
			a.Unowned(x)
		}
	}
}

func (s *arenaScope[A]) add(x A) {
	if _, ok := s.index[x]; ok {
		return
	}
	s.index[x] = len(s.items)
	s.items = append(s.items, x)
}

func (s *arenaScope[A]) remove(x A) bool {
	i, ok := s.index[x]
	if !ok {
		return false
	}
	delete(s.index, x)
	var zero A
	s.items[i] = zero
	return true
}

func (s *arenaScope[A]) Keep(ts ...Tensor) {
	a := s.a
	a.mu.Lock()
	if s.depth < 0 {
		a.mu.Unlock()
		Fail("backend: Keep on a scope that has ended")
	}
	var out []A
	for _, t := range ts {
		x, ok := a.storage(t)
		if !ok || !s.remove(x) {
			continue
		}
		if s.depth > 0 {
			a.stack[s.depth-1].add(x)
		} else {
			out = append(out, x)
		}
	}
	a.mu.Unlock()
	a.unowned(out)
}

func (s *arenaScope[A]) End(keep ...Tensor) {
	a := s.a
	a.mu.Lock()
	if s.depth < 0 {
		a.mu.Unlock()
		return
	}
	if s.depth != len(a.stack)-1 {
		n := len(a.stack)
		a.mu.Unlock()
		Fail("backend: scope %d of %d ended before the scopes opened inside it", s.depth+1, n)
	}
	a.mu.Unlock()
	s.Keep(keep...)
	a.mu.Lock()
	a.stack = a.stack[:s.depth]
	s.depth = -1
	items := s.items
	s.items, s.index = nil, nil
	a.mu.Unlock()
	// Newest first, as a hand-written sequence of frees would go.
	var zero A
	for i := len(items) - 1; i >= 0; i-- {
		if items[i] != zero {
			a.Release(items[i])
		}
	}
}
