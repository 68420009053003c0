package kernels

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// A CPU model of the synchronisation of the persistent Hopper sparse
// kernels (sla_sparse_sm90a.cu: sl_produce_p, the producer thread, and
// sl_consume_p with the item loops of sla_sparse_tma_p / sage_sparse_tma_p,
// the consumer warps): the same waits, arrivals and copies in the same
// order, run under random interleavings with mbarriers modelled as the
// hardware has them (a phase completes when its pending arrivals and
// transaction count reach zero; try_wait.parity sees only the parity of
// the current phase). It checks what the GPU tests can only sample: no
// interleaving deadlocks, every wait means the phase the code intends (a
// waiter two phases behind, or one ahead, would see the parity it wants
// and pass), no copy writes a stage or the Q buffer while a consumer warp
// still reads it, and every stage a consumer reads holds the key blocks
// of its own item and stage. Change it with the kernels.

// protoBar is an mbarrier: count arrivals (plus the copies' transaction
// bytes, here one unit per copy) complete a phase.
type protoBar struct {
	name            string
	count, pend, tx int
	phase           int // phases completed so far
}

func (b *protoBar) maybeComplete() {
	if b.pend == 0 && b.tx == 0 {
		b.phase++
		b.pend = b.count
	}
}

type protoOpKind int

const (
	opWait      protoOpKind = iota // wait for phase k of bar (try_wait.parity k&1)
	opArrive                       // mbarrier.arrive
	opExpect                       // mbarrier.arrive.expect_tx (one copy)
	opCopy                         // a bulk tensor copy into buf completing on bar
	opBeginRead                    // a consumer starts reading buf, which must hold want
	opEndRead                      // the consumer is done with buf (before its release arrival)
	opCheck                        // an MMA reads buf now, which must hold want
)

type protoOp struct {
	kind  protoOpKind
	bar   int
	phase int
	buf   int
	want  string // opBeginRead: the content expected; opCopy: the content written
}

// protoConfig is one block of a persistent kernel: its items' block
// counts, the stages an item of n blocks takes, the ring depth and the
// consumer warps.
type protoConfig struct {
	counts []int // per item of this block, in walk order
	stages func(n int) int
	ns     int
	warps  int
}

// Barrier and buffer numbering: full[s] = s, empty[s] = ns+s, qfull =
// 2ns, qempty = 2ns+1; stage buffers 0..ns-1, the Q buffer ns.
func (c protoConfig) full(s int) int  { return s }
func (c protoConfig) empty(s int) int { return c.ns + s }
func (c protoConfig) qfull() int      { return 2 * c.ns }
func (c protoConfig) qempty() int     { return 2*c.ns + 1 }
func (c protoConfig) qbuf() int       { return c.ns }

// protoMutation breaks the modelled protocol on purpose (the model's own
// tests must see each break).
type protoMutation int

const (
	mutNone          protoMutation = iota
	mutEmptyPhase                  // producer waits for phase g/NS of empty[s] instead of g/NS − 1
	mutEarlyQRelease               // consumers release Q after the item's first S, not its last
	mutRingRestart                 // consumers restart the ring at slot 0 for every item
	mutNoQWait                     // producer reloads Q without waiting for qempty
)

// producerOps is sl_produce_p's sequence.
func (c protoConfig) producerOps(m protoMutation) []protoOp {
	var ops []protoOp
	g := 0
	for it, n := range c.counts {
		nst := c.stages(n)
		q := func() {
			if it > 0 && m != mutNoQWait {
				ops = append(ops, protoOp{kind: opWait, bar: c.qempty(), phase: it - 1})
			}
			ops = append(ops, protoOp{kind: opExpect, bar: c.qfull()},
				protoOp{kind: opCopy, bar: c.qfull(), buf: c.qbuf(), want: fmt.Sprintf("Q%d", it)})
		}
		if nst == 0 {
			q()
		}
		for s := 0; s < nst; s, g = s+1, g+1 {
			st := g % c.ns
			if g >= c.ns {
				ph := g/c.ns - 1
				if m == mutEmptyPhase {
					ph = g / c.ns
				}
				ops = append(ops, protoOp{kind: opWait, bar: c.empty(st), phase: ph})
			}
			ops = append(ops, protoOp{kind: opExpect, bar: c.full(st)},
				protoOp{kind: opCopy, bar: c.full(st), buf: st, want: fmt.Sprintf("KV%d.%d", it, s)})
			if s == 0 {
				q()
			}
		}
	}
	return ops
}

// consumerOps is one consumer warp's sequence: sl_consume_p per item.
func (c protoConfig) consumerOps(m protoMutation) []protoOp {
	var ops []protoOp
	g := 0
	read := func(buf int, what string) { ops = append(ops, protoOp{kind: opBeginRead, buf: buf, want: what}) }
	qk := func(it int) { ops = append(ops, protoOp{kind: opCheck, buf: c.qbuf(), want: fmt.Sprintf("Q%d", it)}) }
	release := func(bar, buf int) {
		ops = append(ops, protoOp{kind: opEndRead, buf: buf}, protoOp{kind: opArrive, bar: bar})
	}
	for it, n := range c.counts {
		nst := c.stages(n)
		if m == mutRingRestart {
			g = 0
		}
		ops = append(ops, protoOp{kind: opWait, bar: c.qfull(), phase: it})
		read(c.qbuf(), fmt.Sprintf("Q%d", it))
		if nst == 0 {
			release(c.qempty(), c.qbuf())
			continue
		}
		ops = append(ops, protoOp{kind: opWait, bar: c.full(g % c.ns), phase: g / c.ns})
		read(g%c.ns, fmt.Sprintf("KV%d.0", it))
		qk(it)
		if nst == 1 || m == mutEarlyQRelease {
			release(c.qempty(), c.qbuf())
		}
		for t := 0; t+1 < nst; t++ {
			st, sn := (g+t)%c.ns, (g+t+1)%c.ns
			ops = append(ops, protoOp{kind: opWait, bar: c.full(sn), phase: (g + t + 1) / c.ns})
			read(sn, fmt.Sprintf("KV%d.%d", it, t+1))
			qk(it)
			if t+2 == nst && m != mutEarlyQRelease {
				release(c.qempty(), c.qbuf())
			}
			release(c.empty(st), st)
		}
		st := (g + nst - 1) % c.ns
		release(c.empty(st), st)
		g += nst
	}
	return ops
}

// protoRun runs the model once under the interleaving r picks and returns
// the first violation ("" if none).
func protoRun(c protoConfig, m protoMutation, r *rand.Rand) string {
	bars := make([]*protoBar, 2*c.ns+2)
	for s := 0; s < c.ns; s++ {
		bars[c.full(s)] = &protoBar{name: fmt.Sprintf("full[%d]", s), count: 1}
		bars[c.empty(s)] = &protoBar{name: fmt.Sprintf("empty[%d]", s), count: c.warps}
	}
	bars[c.qfull()] = &protoBar{name: "qfull", count: 1}
	bars[c.qempty()] = &protoBar{name: "qempty", count: c.warps}
	for _, b := range bars {
		b.pend = b.count
	}
	content := make([]string, c.ns+1)
	readers := make([]int, c.ns+1)
	type copyOp struct {
		bar, buf int
		data     string
	}
	var inflight []copyOp
	actors := [][]protoOp{c.producerOps(m)}
	for w := 0; w < c.warps; w++ {
		actors = append(actors, c.consumerOps(m))
	}
	pc := make([]int, len(actors))
	// ready says whether actor a can run its next op; a wait whose parity
	// test differs from the intended phase's completion is a violation.
	ready := func(a int) (bool, string) {
		op := actors[a][pc[a]]
		if op.kind != opWait {
			return true, ""
		}
		b := bars[op.bar]
		hw := b.phase&1 != op.phase&1 // try_wait.parity(phase & 1) succeeds
		want := b.phase > op.phase    // the intended phase has completed
		if hw != want {
			return false, fmt.Sprintf("actor %d waits for phase %d of %s, which has completed %d phases: the parity test says %v",
				a, op.phase, b.name, b.phase, hw)
		}
		return hw, ""
	}
	for {
		var run []int
		done := true
		for a := range actors {
			if pc[a] == len(actors[a]) {
				continue
			}
			done = false
			ok, bad := ready(a)
			if bad != "" {
				return bad
			}
			if ok {
				run = append(run, a)
			}
		}
		if done && len(inflight) == 0 {
			return ""
		}
		// Choices: a runnable actor's next op, or one copy landing.
		nc := len(run) + len(inflight)
		if nc == 0 {
			var at []string
			for a := range actors {
				if pc[a] < len(actors[a]) {
					op := actors[a][pc[a]]
					at = append(at, fmt.Sprintf("actor %d at op %d (wait phase %d of %s)", a, pc[a], op.phase, bars[op.bar].name))
				}
			}
			return "deadlock: " + strings.Join(at, "; ")
		}
		k := r.IntN(nc)
		if k >= len(run) {
			i := k - len(run)
			cp := inflight[i]
			inflight = append(inflight[:i], inflight[i+1:]...)
			if readers[cp.buf] > 0 {
				return fmt.Sprintf("copy of %s lands in buffer %d while %d warps read it", cp.data, cp.buf, readers[cp.buf])
			}
			content[cp.buf] = cp.data
			b := bars[cp.bar]
			b.tx--
			b.maybeComplete()
			continue
		}
		a := run[k]
		op := actors[a][pc[a]]
		pc[a]++
		switch op.kind {
		case opWait:
		case opArrive:
			b := bars[op.bar]
			b.pend--
			if b.pend < 0 {
				return "too many arrivals on " + b.name
			}
			b.maybeComplete()
		case opExpect:
			b := bars[op.bar]
			b.pend--
			b.tx++
			b.maybeComplete()
		case opCopy:
			if readers[op.buf] > 0 {
				return fmt.Sprintf("copy of %s issued into buffer %d while %d warps read it", op.want, op.buf, readers[op.buf])
			}
			inflight = append(inflight, copyOp{op.bar, op.buf, op.want})
		case opBeginRead:
			if content[op.buf] != op.want {
				return fmt.Sprintf("actor %d reads buffer %d expecting %s, it holds %q", a, op.buf, op.want, content[op.buf])
			}
			readers[op.buf]++
		case opEndRead:
			readers[op.buf]--
		case opCheck:
			if content[op.buf] != op.want {
				return fmt.Sprintf("actor %d's MMA reads buffer %d expecting %s, it holds %q", a, op.buf, op.want, content[op.buf])
			}
		}
	}
}

// protoConfigs are random blocks of both kernels: SageSLA (one stage per
// key block, 4 consumer warps) and SLA (two 64-key blocks per stage, an
// odd tail, 4 or 8 consumer warps), with items of zero to many blocks.
func protoConfigs(r *rand.Rand, n int) []protoConfig {
	var cs []protoConfig
	for i := 0; i < n; i++ {
		items := 1 + r.IntN(7)
		counts := make([]int, items)
		for j := range counts {
			switch r.IntN(5) {
			case 0:
				counts[j] = 0
			case 1:
				counts[j] = 1
			default:
				counts[j] = r.IntN(9)
			}
		}
		c := protoConfig{counts: counts, ns: SLATMAStages, warps: 4}
		if r.IntN(2) == 0 {
			c.stages = func(n int) int { return n } // SageSLA: one 128-key block per stage
		} else {
			c.stages = func(n int) int { return (n + 1) / 2 } // SLA, 64-key blocks: two per stage
			c.warps = 4 * (1 + r.IntN(2))
		}
		cs = append(cs, c)
	}
	return cs
}

// TestPersistentSparseProtocol runs the model of the persistent sparse
// kernels' producer/consumer protocol on random blocks (item block counts
// 0 to 8, both kernels' stage rules and warp counts) under many random
// interleavings each, with the built ring depth and depths 2 to 5 (the
// intra-warpgroup overlap issues stage t+1's Q·Kᵀ before it releases
// stage t, so one stage deadlocks: TestPersistentSparseProtocolOneStage).
func TestPersistentSparseProtocol(t *testing.T) {
	if SLATMAStages < 2 {
		t.Fatalf("SLATMAStages = %d: the consumers hold one stage while waiting for the next", SLATMAStages)
	}
	r := rand.New(rand.NewPCG(1, 2))
	runs := 0
	for _, c := range protoConfigs(r, 300) {
		for _, ns := range []int{c.ns, 2 + r.IntN(4)} {
			c.ns = ns
			for k := 0; k < 20; k++ {
				runs++
				if bad := protoRun(c, mutNone, r); bad != "" {
					t.Fatalf("ring %d, warps %d, block counts %v: %s", c.ns, c.warps, c.counts, bad)
				}
			}
		}
	}
	t.Logf("%d interleavings clean", runs)
}

// TestPersistentSparseProtocolOneStage: a ring of one stage deadlocks
// (why SLATMAStages must be at least 2), on any item of two stages.
func TestPersistentSparseProtocolOneStage(t *testing.T) {
	c := protoConfig{counts: []int{2}, stages: func(n int) int { return n }, ns: 1, warps: 4}
	if bad := protoRun(c, mutNone, rand.New(rand.NewPCG(5, 6))); !strings.HasPrefix(bad, "deadlock") {
		t.Errorf("one stage, an item of two: got %q, want a deadlock", bad)
	}
}

// TestPersistentSparseProtocolMutations checks the model catches each
// deliberate break of the protocol on some random block.
func TestPersistentSparseProtocolMutations(t *testing.T) {
	for _, m := range []struct {
		mut  protoMutation
		name string
	}{{mutEmptyPhase, "producer waits one phase late on empty"}, {mutEarlyQRelease, "Q released after the first S"},
		{mutRingRestart, "ring restarted per item"}, {mutNoQWait, "Q reloaded without qempty"}} {
		r := rand.New(rand.NewPCG(3, 4))
		caught := ""
		for _, c := range protoConfigs(r, 300) {
			for k := 0; k < 20 && caught == ""; k++ {
				caught = protoRun(c, m.mut, r)
			}
			if caught != "" {
				break
			}
		}
		if caught == "" {
			t.Errorf("%s: the model found nothing wrong", m.name)
			continue
		}
		t.Logf("%s: %s", m.name, caught)
	}
}
