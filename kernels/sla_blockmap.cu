// sla_blockmap.cu: SLA/SageSLA block selection (REFERENCE.md §4.1) the way
// package sla computes it: channel means of k over L, mean-pooled q blocks and
// smoothed k blocks, block scores, and torch.topk's choice per query block,
// written as a look-up table of the key blocks each query block visits.
// Sums run in float64 in the CPU's order where order matters, so maps are
// identical to the CPU's. Tensors are [B, L, H·128] (head h at columns
// h·128..); rnd says the inputs are bf16 (means, pooled blocks and scores
// are then rounded to bf16 as the reference stores them).
#include "common.cuh"

// Per-channel sums of x over rows [r0, r0+chunk) into sum [B, H, 128]
// (float64 atomics; the sums of bf16 values are exact in float64, so the
// order does not matter). grid (ceil(L/chunk), H, B), 128 threads. rnd
// rounds each value to bf16 first (SageSLA reads the bf16 copy).
extern "C" __global__ void sla_colsum_kernel(double* sum, const void* x, int xdt, int rnd, int L, int H, int chunk) {
  const int c = threadIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int r0 = blockIdx.x * chunk, r1 = min(r0 + chunk, L);
  const long long W = (long long)H * 128;
  const long long base = (long long)b * L * W + (long long)h * 128 + c;
  double s = 0;
  for (int l = r0; l < r1; ++l) {
    float v = ldv(x, xdt, base + (long long)l * W);
    if (rnd) v = rbf(v);
    s += (double)v;
  }
  atomicAdd(&sum[((long long)b * H + h) * 128 + c], s);
}

// Mean-pools blocks of blk rows: out = (Σ v) / count, v = x (rounded if rnd)
// or, with ksum, the smoothed rnd(rnd(x) − mean), mean = rnd(float(ksum/L)).
// Output [B, H, nb, 128], or with transposed [B, H, 128, nb]. grid (nb, H,
// B), 128 threads (one per channel).
extern "C" __global__ void sla_pool_kernel(float* out, const void* x, int xdt, int rnd, const double* ksum, int L,
                                           int H, int blk, int nb, int transposed) {
  const int c = threadIdx.x, i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const long long W = (long long)H * 128;
  const long long bh = (long long)b * H + h;
  float mean = 0.f;
  if (ksum) {
    mean = (float)(ksum[bh * 128 + c] / (double)L);
    if (rnd) mean = rbf(mean);
  }
  const int l0 = i * blk, l1 = min(l0 + blk, L);
  const long long base = (long long)b * L * W + (long long)h * 128 + c;
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
    out[(bh * 128 + c) * nb + i] = r;
  else
    out[(bh * nb + i) * 128 + c] = r;
}

// Scores and top-k of one query block (grid (Qb, H, B), 256 threads, dynamic
// shared memory Kb floats + Kb ints):
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
                      int Qb, int Kb, int H, int kk, int mode) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* S = (float*)smem;
  int* sel = (int*)(S + Kb);
  __shared__ float q[128];
  __shared__ float red[8];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const long long bh = (long long)b * H + h, row = bh * Qb + i;
  if (tid < 128) q[tid] = pq[(bh * Qb + i) * 128 + tid];
  __syncthreads();
  const float* pk = pkT + bh * 128 * Kb;
  for (int j = tid; j < Kb; j += 256) {
    double s = 0;
    for (int c = 0; c < 128; ++c) s += (double)q[c] * (double)pk[(long long)c * Kb + j];
    float f = (float)s;
    S[j] = rnd ? rbf(f) : f;
  }
  __syncthreads();
  for (int j = tid; j < Kb; j += 256) {
    int on;
    if (given) {
      on = given[((long long)h * Qb + i) * Kb + j] != 0.f;
    } else {
      const float sj = S[j];
      int rank = 0;
      for (int j2 = 0; j2 < Kb && rank < kk; ++j2) {
        const float s2 = S[j2];
        rank += (s2 > sj) || (s2 == sj && j2 < j);
      }
      on = rank < kk;
    }
    sel[j] = on;
    if (bmap) bmap[row * Kb + j] = (float)on;
  }
  __syncthreads();
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
