package cuda

import (
	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// This file holds the umT5 encoder's ops (backend.TextOps), kernels in
// text.cu.

var _ backend.Text = (*Backend)(nil)

// relPosThreads is the block size of relpos_attn_kernel: one thread per key
// for the logits, one per channel for the output.
const relPosThreads = 128

// RelPosAttention implements backend.TextOps: one block per (query, head).
func (b *Backend) RelPosAttention(qt, kt, vt, rt backend.Tensor, heads, keyLen int) backend.Tensor {
	q, k, v, rb := T(qt), T(kt), T(vt), T(rt)
	checkFloat("RelPosAttention q", q)
	checkFloat("RelPosAttention k", k)
	checkFloat("RelPosAttention v", v)
	checkFloat("RelPosAttention relBias", rb)
	if len(q.shape) != 2 || len(k.shape) != 2 || !backend.SameShape(k.shape, v.shape) {
		backend.Fail("cuda: RelPosAttention: want q [Lq, heads·d] and k, v [Lk, heads·d], got q %v k %v v %v", q.shape, k.shape, v.shape)
	}
	if k.dt != q.dt || v.dt != q.dt {
		backend.Fail("cuda: RelPosAttention: q, k, v dtypes %v, %v, %v differ", q.dt, k.dt, v.dt)
	}
	lq, lk, hd := q.shape[0], k.shape[0], q.shape[1]
	if k.shape[1] != hd || heads <= 0 || hd%heads != 0 {
		backend.Fail("cuda: RelPosAttention: q %v and k %v do not split into %d heads", q.shape, k.shape, heads)
	}
	if !backend.SameShape(rb.shape, []int{heads, lq + lk - 1}) {
		backend.Fail("cuda: RelPosAttention: relBias shape %v, want [%d %d]", rb.shape, heads, lq+lk-1)
	}
	if keyLen < 1 || keyLen > lk {
		backend.Fail("cuda: RelPosAttention: keyLen %d outside [1, %d]", keyLen, lk)
	}
	if heads > 65535 {
		backend.Fail("cuda: RelPosAttention: %d heads, at most 65535", heads)
	}
	d := hd / heads
	smem := (d + keyLen) * 4
	defer b.enter()()
	out := b.newTensor(q.dt, q.shape)
	if lq == 0 || d == 0 {
		return out
	}
	if smem > b.info.MaxSmemOptin && b.info.MaxSmemOptin > 0 {
		backend.Fail("cuda: RelPosAttention: head dim %d with %d keys needs %d B of shared memory, the GPU has %d", d, keyLen, smem, b.info.MaxSmemOptin)
	}
	b.launch(b.fn("text.cu", "relpos_attn_kernel"), [3]int{lq, heads, 1}, [3]int{relPosThreads, 1, 1}, smem,
		out.buf.ptr, q.buf.ptr, k.buf.ptr, v.buf.ptr, rb.buf.ptr, dtCode(q.dt), dtCode(rb.dt),
		int32(lq), int32(lk), int32(heads), int32(d), int32(keyLen))
	return out
}

// GELUTanhSteps implements backend.TextOps.
func (b *Backend) GELUTanhSteps(xt backend.Tensor) backend.Tensor {
	x := T(xt)
	checkFloat("GELUTanhSteps x", x)
	defer b.enter()()
	y := b.newTensor(x.dt, x.shape)
	if n := x.n(); n > 0 {
		b.launch(b.fn("text.cu", "gelu_tanh_steps_kernel"), b.gridFor(n), block256, 0, y.buf.ptr, x.buf.ptr, dtCode(x.dt), n)
	}
	return y
}
