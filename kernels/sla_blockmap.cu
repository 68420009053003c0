// sla_blockmap.cu: SLA/SageSLA block selection (docs/NUMERICS.md §6.1) the way
// package sla computes it: channel means of k over L, mean-pooled q blocks and
// smoothed k blocks, block scores, and torch.topk's choice per query block,
// written as a look-up table of the key blocks each query block visits.
// Sums run in float64 in the CPU's order where order matters, so maps are
// identical to the CPU's. Tensors are [B, L, H·D] (head h at columns h·D..;
// D, at most 128, is blockDim.x of the per-channel kernels); rnd says the
// inputs are bf16 (means, pooled blocks and scores are then rounded to bf16
// as the reference stores them).
#include "common.cuh"

// Per-channel sums of x over rows [r0, r0+chunk) into sum [B, H, D]
// (float64 atomics; the sums of bf16 values are exact in float64, so the
// order does not matter). grid (ceil(L/chunk), H, B), D threads. rnd
// rounds each value to bf16 first (SageSLA reads the bf16 copy).
extern "C" __global__ void sla_colsum_kernel(double* sum, const void* x, int xdt, int rnd, int L, int H, int chunk) {
  const int c = threadIdx.x, h = blockIdx.y, b = blockIdx.z, D = blockDim.x;
  const int r0 = blockIdx.x * chunk, r1 = min(r0 + chunk, L);
  const long long W = (long long)H * D;
  const long long base = (long long)b * L * W + (long long)h * D + c;
  double s = 0;
  for (int l = r0; l < r1; ++l) {
    float v = ldv(x, xdt, base + (long long)l * W);
    if (rnd) v = rbf(v);
    s += (double)v;
  }
  atomicAdd(&sum[((long long)b * H + h) * D + c], s);
}

// Mean-pools blocks of blk rows: out = (Σ v) / count, v = x (rounded if rnd)
// or, with ksum, the smoothed rnd(rnd(x) − mean), mean = rnd(float(ksum/L)).
// Output [B, H, nb, D], or with transposed [B, H, D, nb]. grid (nb, H,
// B), D threads (one per channel).
extern "C" __global__ void sla_pool_kernel(float* out, const void* x, int xdt, int rnd, const double* ksum, int L,
                                           int H, int blk, int nb, int transposed) {
  const int c = threadIdx.x, i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, D = blockDim.x;
  const long long W = (long long)H * D;
  const long long bh = (long long)b * H + h;
  float mean = 0.f;
  if (ksum) {
    mean = (float)(ksum[bh * D + c] / (double)L);
    if (rnd) mean = rbf(mean);
  }
  const int l0 = i * blk, l1 = min(l0 + blk, L);
  const long long base = (long long)b * L * W + (long long)h * D + c;
  double acc = 0;
  for (int l = l0; l < l1; ++l) {
    float v = ldv(x, xdt, base + (long long)l * W);
    if (rnd) v = rbf(v);
    if (ksum) {
      v = v - mean;
      if (rnd) v = rbf(v);
    }
    acc += (double)v;
  }
  float r = (float)acc / (float)(l1 - l0);
  if (rnd) r = rbf(r);
  if (transposed)
    out[(bh * D + c) * nb + i] = r;
  else
    out[(bh * nb + i) * D + c] = r;
}

// Scores and top-k of one query block (grid (Qb, H, B), 256 threads, dynamic
// shared memory Kb floats + Kb ints + 2^⌈log2 Kb⌉ 64-bit sort keys; head dim
// D ≤ 128):
//   S[j] = rnd(Σ_c pq[i,c]·pk[j,c])        (float64 sum in channel order)
//   selected: given map (if non-null, [H, Qb, Kb] shared by the batch, !=0)
//             or rank(j) < kk, rank = #{S > S[j]} + #{j' < j: S[j'] == S[j]}
//             (torch.topk: strictly greater first, ties in ascending index)
//   lut[row, :cnt] = the selected blocks in visiting order: mode 0 (SLA
//             kernel) blocks scoring above the smallest selected score in
//             ascending order, then those equal to it; mode 1 (SageSLA)
//             ascending.
// bmap (optional, [B, H, Qb, Kb] float 0/1) records the selection.
extern "C" __global__ void __launch_bounds__(256)
    sla_select_kernel(int* lut, int* cnt, float* bmap, const float* given, const float* pq, const float* pkT, int rnd,
                      int Qb, int Kb, int H, int kk, int mode, int D) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* S = (float*)smem;
  int* sel = (int*)(S + Kb);
  __shared__ float q[128];
  __shared__ float red[8];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const long long bh = (long long)b * H + h, row = bh * Qb + i;
  if (tid < D) q[tid] = pq[(bh * Qb + i) * D + tid];
  __syncthreads();
  const float* pk = pkT + bh * D * Kb;
  for (int j = tid; j < Kb; j += 256) {
    double s = 0;
    for (int c = 0; c < D; ++c) s += (double)q[c] * (double)pk[(long long)c * Kb + j];
    float f = (float)s;
    S[j] = rnd ? rbf(f) : f;
  }
  __syncthreads();
  if (given) {
    for (int j = tid; j < Kb; j += 256) sel[j] = given[((long long)h * Qb + i) * Kb + j] != 0.f;
  } else {
    // torch.topk's choice: sort (score descending, index ascending) as one
    // 64-bit key, ascending, in a bitonic network over P = 2^⌈log2 Kb⌉
    // entries (padding sorts last); the first kk entries are selected.
    u64* key = (u64*)(sel + Kb);  // 8·Kb bytes in: 8-byte aligned
    int P = 1;
    while (P < Kb) P <<= 1;
    for (int x = tid; x < P; x += 256) {
      u64 v = ~0ull;
      if (x < Kb) {
        float f = S[x];
        if (f == 0.f) f = 0.f;  // -0 ties with +0, as the float comparison does
        u32 u = __float_as_uint(f);
        u ^= (u >> 31) ? 0xFFFFFFFFu : 0x80000000u;  // unsigned order = float order
        v = ((u64)~u << 32) | (u32)x;
      }
      key[x] = v;
      if (x < Kb) sel[x] = 0;
    }
    __syncthreads();
    for (int k = 2; k <= P; k <<= 1) {
      for (int jj = k >> 1; jj > 0; jj >>= 1) {
        for (int x = tid; x < P; x += 256) {
          const int y = x ^ jj;
          if (y > x) {
            const u64 a = key[x], c = key[y];
            if ((a > c) == ((x & k) == 0)) {
              key[x] = c;
              key[y] = a;
            }
          }
        }
        __syncthreads();
      }
    }
    for (int x = tid; x < kk; x += 256) sel[(u32)key[x]] = 1;
  }
  __syncthreads();
  if (bmap)
    for (int j = tid; j < Kb; j += 256) bmap[row * Kb + j] = (float)sel[j];
  // kth = the smallest selected score
  float mn = INFINITY;
  for (int j = tid; j < Kb; j += 256)
    if (sel[j]) mn = fminf(mn, S[j]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
  if (lane == 0) red[warp] = mn;
  __syncthreads();
  if (warp == 0) {
    float kth = red[0];
#pragma unroll
    for (int w = 1; w < 8; ++w) kth = fminf(kth, red[w]);
    int* lr = lut + row * Kb;
    int base = 0;
    for (int pass = 0; pass < (mode == 0 ? 2 : 1); ++pass) {
      for (int j0 = 0; j0 < Kb; j0 += 32) {
        const int j = j0 + lane;
        bool f = j < Kb && sel[j];
        if (mode == 0) f = f && ((S[j] > kth) == (pass == 0));
        const unsigned m = __ballot_sync(0xffffffffu, f);
        if (f) lr[base + __popc(m & ((1u << lane) - 1u))] = j;
        base += __popc(m);
      }
    }
    if (lane == 0) cnt[row] = base;
  }
}
