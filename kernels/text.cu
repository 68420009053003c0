// text.cu: the umT5 encoder's own ops: T5 attention with a relative-position
// bias and T5's GELU written as separate rounded tensor ops. Both follow the
// CPU backend's summation order and roundings (backend/text.go), with
// explicit _rn arithmetic so the compiler cannot fuse a rounding away and
// exp/tanh in float64, so results match the CPU to the last bit in all but
// rare ties.
#include "common.cuh"

// One block per (query i, head h). q [Lq, H·d], k, v [Lk, H·d], relBias
// [H, Lq+Lk−1] (offset j−i at column j−i+Lq−1). Dynamic shared memory:
// d + keyLen floats.
//   logit_j = rnd(rnd(q·k_j) + bias), p_j = rnd(exp(logit_j − max) / Σ),
//   out = rnd(Σ_j p_j v_j)
// Dot products and the output sum run sequentially in index order, one
// thread per key resp. output channel; the softmax sum is sequential too.
extern "C" __global__ void relpos_attn_kernel(void* out, const void* q, const void* k, const void* v,
                                              const void* bias, int dt, int bdt, int Lq, int Lk, int H, int d,
                                              int keyLen) {
  extern __shared__ float sm[];
  float* qs = sm;      // d
  float* ps = sm + d;  // keyLen
  __shared__ float red[33];
  __shared__ float total;
  const int i = blockIdx.x, h = blockIdx.y;
  const long long hd = (long long)H * d;
  const long long qoff = (long long)i * hd + (long long)h * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) qs[c] = ldv(q, dt, qoff + c);
  __syncthreads();
  const long long boff = (long long)h * (Lq + Lk - 1) + (Lq - 1 - i);
  // Key rows are 16-byte aligned when d and H·d are multiples of 16 bytes
  // (the tensor itself is pool-aligned).
  const int es = dt == DT_BF16 ? 2 : 4;
  const bool vec = ((long long)d * es) % 16 == 0;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < keyLen; j += blockDim.x) {
    const long long koff = (long long)j * hd + (long long)h * d;
    float s = 0.f;
    if (vec) {  // 16-byte loads of the key row, same summation order
      const uint4* kr = (const uint4*)((const char*)k + koff * es);
      for (int c = 0; c < d; c += 16 / es) {
        uint4 u = kr[c / (16 / es)];
        u32 w[4] = {u.x, u.y, u.z, u.w};
        if (es == 2) {
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            float kv = __uint_as_float(e & 1 ? w[e >> 1] & 0xffff0000u : w[e >> 1] << 16);
            s = __fadd_rn(s, __fmul_rn(qs[c + e], kv));
          }
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) s = __fadd_rn(s, __fmul_rn(qs[c + e], __uint_as_float(w[e])));
        }
      }
    } else {
      for (int c = 0; c < d; ++c) s = __fadd_rn(s, __fmul_rn(qs[c], ldv(k, dt, koff + c)));
    }
    float l = rdt(dt, __fadd_rn(rdt(dt, s), ldv(bias, bdt, boff + j)));
    ps[j] = l;
    mx = fmaxf(mx, l);
  }
  // Block max (the sum below is sequential, as on the CPU).
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mx;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) m = fmaxf(m, red[w]);
    red[32] = m;
  }
  __syncthreads();
  mx = red[32];
  for (int j = threadIdx.x; j < keyLen; j += blockDim.x) ps[j] = (float)exp((double)__fsub_rn(ps[j], mx));
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int j = 0; j < keyLen; ++j) s = __fadd_rn(s, ps[j]);
    total = s;
  }
  __syncthreads();
  const float sum = total;
  for (int j = threadIdx.x; j < keyLen; j += blockDim.x) ps[j] = rdt(dt, __fdiv_rn(ps[j], sum));
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float a = 0.f;
    const long long voff = (long long)h * d + c;
    for (int j = 0; j < keyLen; ++j) a = __fadd_rn(a, __fmul_rn(ps[j], ldv(v, dt, (long long)j * hd + voff)));
    stv(out, dt, qoff + c, a);
  }
}

// T5's GELU as separate ops, each rounded to dt (constants float32):
// p = x·x·x, c = 0.044715·p, s = x + c, t = √(2/π)·s, th = tanh t,
// o = 1 + th, y = (0.5·x)·o.
extern "C" __global__ void gelu_tanh_steps_kernel(void* y, const void* x, int dt, long long n) {
  const float c0 = 0.044715f, c1 = 0.7978845608028654f;
  GRID_STRIDE(i, n) {
    float v = ldv(x, dt, i);
    float p = rdt(dt, __fmul_rn(rdt(dt, __fmul_rn(v, v)), v));
    float s = rdt(dt, __fadd_rn(v, rdt(dt, __fmul_rn(c0, p))));
    float th = rdt(dt, (float)tanh((double)rdt(dt, __fmul_rn(c1, s))));
    stv(y, dt, i, __fmul_rn(rdt(dt, __fmul_rn(0.5f, v)), rdt(dt, __fadd_rn(1.f, th))));
  }
}
