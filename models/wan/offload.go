package wan

import (
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// Offload (Options.Offload): the blocks' Linear weights — all but a few
// percent of a DiT — stay in the backend's page-locked host memory and are
// copied into two device slots, one block ahead of the compute, on the
// backend's copy stream (backend.Streamer); everything else (biases, norms,
// modulations, proj_l, the embeddings and the head) stays resident. The
// forward and EmbedText compute exactly what they compute without offload.

// Indices into blockLinearsOf: the order in which a block's Linear
// weights are streamed.
const (
	linSQ = iota
	linSK
	linSV
	linSO
	linCQ
	linCK
	linCV
	linCO
	linFFN0
	linFFN2
	numLinears
)

// blockLinearsOf lists a block's Linears in stream order (the order of
// the blockLinears names).
func blockLinearsOf(b *block) [numLinears]*linear {
	return [numLinears]*linear{&b.sq, &b.sk, &b.sv, &b.so, &b.cq, &b.ck, &b.cv, &b.co, &b.ffn0, &b.ffn2}
}

// offload is a model's streamed weights.
type offload struct {
	st backend.Streamer
	// host[i][l] holds block i's Linear l weight (and its scales for a
	// quantised one); slots[s][l] the device copies for blocks i ≡ s mod 2.
	host  [][numLinears][2]backend.HostTensor
	slots [2][numLinears][2]backend.Tensor
}

// streamed reports whether param p is streamed: a block Linear's weight.
func (m *Model) streamed(p param) (blk, lin int, ok bool) {
	if m.off == nil {
		return 0, 0, false
	}
	for i := range m.blocks {
		for l, x := range blockLinearsOf(&m.blocks[i]) {
			if p.dst == &x.w {
				return i, l, true
			}
		}
	}
	return 0, 0, false
}

// allocSlots makes the two device slots, shaped like block 0's weights.
func (m *Model) allocSlots() {
	for s := range m.off.slots {
		for l := 0; l < numLinears; l++ {
			for k, h := range m.off.host[0][l] {
				if h != nil {
					m.off.slots[s][l][k] = m.off.st.Alloc(h.DType(), h.Shape())
				}
			}
		}
	}
}

// blk returns block i's weights: the block itself, or with offload a copy
// whose Linear weights are its slot's (fetched by a fetcher first).
func (m *Model) blk(i int) *block {
	if m.off == nil {
		return &m.blocks[i]
	}
	b := m.blocks[i]
	s := &m.off.slots[i%2]
	for l, x := range blockLinearsOf(&b) {
		x.w, x.scale = s[l][0], s[l][1]
	}
	return &b
}

// fetcher streams the chosen Linears of each block into the slots: blocks 0
// and 1 at start, block i+2 once block i's work is queued (the copy waits
// for it), and wait(i) makes the compute wait for block i's copies. A nil
// fetcher (no offload) does nothing.
type fetcher struct {
	m      *Model
	lins   []int
	fences [2]backend.Fence
}

func (m *Model) newFetcher(lins ...int) *fetcher {
	if m.off == nil {
		return nil
	}
	if len(lins) == 0 {
		for l := 0; l < numLinears; l++ {
			lins = append(lins, l)
		}
	}
	return &fetcher{m: m, lins: lins}
}

func (f *fetcher) copy(i int) backend.Fence {
	var dst []backend.Tensor
	var src []backend.HostTensor
	for _, l := range f.lins {
		for k, d := range f.m.off.slots[i%2][l] {
			if d == nil {
				continue
			}
			h := f.m.off.host[i][l][k]
			if h == nil {
				// The slot would keep another block's weights.
				backend.Fail("wan: block %d's %s weights are not in host memory (a SetLoRA that failed part-way; SetLoRA(src, nil) restores them)", i, blockLinears[l])
			}
			dst = append(dst, d)
			src = append(src, h)
		}
	}
	return f.m.off.st.CopyIn(dst, src)
}

func (f *fetcher) start() {
	if f == nil {
		return
	}
	for i := 0; i < min(2, len(f.m.blocks)); i++ {
		f.fences[i] = f.copy(i)
	}
}

func (f *fetcher) wait(i int) {
	if f == nil {
		return
	}
	f.m.off.st.Await(f.fences[i%2])
	f.fences[i%2] = nil
}

func (f *fetcher) next(i int) {
	if f == nil || i+2 >= len(f.m.blocks) {
		return
	}
	f.fences[i%2] = f.copy(i + 2)
}

// free releases the host copies (the backend drains its copies first) and
// the slots.
func (o *offload) free(be backend.DiT) {
	for _, hb := range o.host {
		for _, l := range hb {
			for _, h := range l {
				if h != nil {
					o.st.FreeHost(h)
				}
			}
		}
	}
	o.host = nil
	for s := range o.slots {
		for l := range o.slots[s] {
			for k, t := range o.slots[s][l] {
				if t != nil {
					be.Free(t)
					o.slots[s][l][k] = nil
				}
			}
		}
	}
}

// checkOffload reports whether be can stream weights.
func checkOffload(be backend.DiT) (backend.Streamer, error) {
	st, ok := be.(backend.Streamer)
	if !ok {
		return nil, fmt.Errorf("wan: --offload needs a backend that can stream weights from host memory; %s cannot", be.Name())
	}
	return st, nil
}
