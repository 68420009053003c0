package backend

// SLAShape checks the q, k, v arguments of SparseLinearAttention, which
// every backend takes alike: equal shapes [L, heads·d] or [B, L, heads·d]
// with the width divisible into heads. It returns the batch count, the
// sequence length and the head dim, and fails naming op otherwise.
func SLAShape(op string, q, k, v Tensor, heads int) (batches, L, d int) {
	qs := q.Shape()
	for _, x := range []struct {
		name string
		t    Tensor
	}{{"k", k}, {"v", v}} {
		if !SameShape(x.t.Shape(), qs) {
			Fail("%s: %s shape %v differs from q's %v", op, x.name, x.t.Shape(), qs)
		}
	}
	nd := len(qs)
	if nd != 2 && nd != 3 {
		Fail("%s: q must be [L, heads·d] or [B, L, heads·d], got %v", op, qs)
	}
	hd := qs[nd-1]
	if heads <= 0 || hd%heads != 0 {
		Fail("%s: width %d is not divisible into %d heads", op, hd, heads)
	}
	batches = 1
	if nd == 3 {
		batches = qs[0]
	}
	return batches, qs[nd-2], hd / heads
}

// Blocks returns the query and key block sizes of c: BlockQ and BlockK
// where set, else the reference's defaults (SLA 128/64, SageSLA 64/128, the
// sm90 kernel's), and whether the kind is SageSLA. It fails naming op when
// the kind is neither SLA nor SageSLA.
func (c SLAConfig) Blocks(op string) (blockQ, blockK int, sage bool) {
	switch c.Kind {
	case SLA:
		blockQ, blockK = 128, 64
	case SageSLA:
		sage = true
		blockQ, blockK = 64, 128
	default:
		Fail("%s: attention kind %v is not SLA or SageSLA", op, c.Kind)
	}
	if c.BlockQ != 0 {
		blockQ = c.BlockQ
	}
	if c.BlockK != 0 {
		blockK = c.BlockK
	}
	return blockQ, blockK, sage
}
