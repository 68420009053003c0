// sla_sage.cu: the sparse branch of SageSLA (docs/NUMERICS.md §6.3): int8 Q/K
// and e4m3 V quantisation, and the block-sparse kernel (sla_sage.cuh) with
// Q·Kᵀ on int8 codes (mma.sync m16n8k32 s8, exact int32) and P·V on e4m3
// values: P and V are rounded to e4m3 and multiplied as bf16 (every e4m3
// value and every product of two is exact there) with float32
// accumulation, which is what the fp8 MMA computes, so this module needs
// only sm_80 and NVRTC 11.8 (which has no e4m3 mma; see sla_sage_fp8.cu).
#define SAGE_NO_FP8
#include "sla_sage.cuh"

// SageSLA quantisation of q (ksum null) or k (ksum set: smoothed by its bf16
// channel mean rbf(float(ksum/L))) per (b, h, block of blk rows):
// s = max|x|/127 + 1e-7, code = trunc(x/s ± 0.5) clamped to [-128, 127]
// (package sla's int8Block). x bf16 [B, L, H·D]; codes in the same layout,
// scales [B, H, nb]. grid (nb, H, B), D threads (one per channel, D 64 or
// 128).
extern "C" __global__ void sage_quant_kernel(signed char* xq, float* sc, const bf16* x, const double* ksum, int L,
                                             int H, int blk, int nb) {
  __shared__ float red[4];
  const int c = threadIdx.x, i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, D = blockDim.x;
  const long long W = (long long)H * D, bh = (long long)b * H + h;
  const long long base = (long long)b * L * W + (long long)h * D + c;
  const float mean = ksum ? rbf((float)(ksum[bh * D + c] / (double)L)) : 0.f;
  const int l0 = i * blk, l1 = min(l0 + blk, L);
  float amax = 0.f;
  for (int l = l0; l < l1; ++l) {
    float v = bf2f(x[base + (long long)l * W]);
    if (ksum) v = rbf(v - mean);
    amax = fmaxf(amax, fabsf(v));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((c & 31) == 0) red[c >> 5] = amax;
  __syncthreads();
  amax = red[0];
  for (int w = 1; w < D / 32; ++w) amax = fmaxf(amax, red[w]);
  const float s = amax / 127.f + 1e-7f;
  for (int l = l0; l < l1; ++l) {
    float v = bf2f(x[base + (long long)l * W]);
    if (ksum) v = rbf(v - mean);
    float y = v / s;
    y = y >= 0.f ? y + 0.5f : y - 0.5f;
    xq[base + (long long)l * W] = (signed char)min(127, max(-128, __float2int_rz(y)));
  }
  if (c == 0) sc[bh * nb + i] = s;
}

// Per-channel max|v| over rows [r0, r0+chunk) into amax [B, H·128] (float
// bits as unsigned: non-negative floats order like their bit patterns;
// zero it first). grid (ceil(L/chunk), H, B), D threads.
extern "C" __global__ void sage_vamax_kernel(unsigned* amax, const bf16* v, int L, int H, int chunk) {
  const int c = threadIdx.x, h = blockIdx.y, b = blockIdx.z, D = blockDim.x;
  const int r0 = blockIdx.x * chunk, r1 = min(r0 + chunk, L);
  const long long W = (long long)H * D;
  const long long base = (long long)b * L * W + (long long)h * D + c;
  float m = 0.f;
  for (int l = r0; l < r1; ++l) m = fmaxf(m, fabsf(bf2f(v[base + (long long)l * W])));
  atomicMax(&amax[(long long)b * W + (long long)h * D + c], __float_as_uint(m));
}

// v8 = e4m3(v·(2.25/amax_c)) (stored as bf16, exact), vs = amax_c/2.25 per
// (b, channel); an all-zero channel gets codes 0. v, v8 [B, L, W].
extern "C" __global__ void sage_v8_kernel(bf16* v8, float* vs, const bf16* v, const unsigned* amax, long long n,
                                          long long LW, int W) {
  GRID_STRIDE(i, n) {
    const long long w = i % W, b = i / LW;
    const float am = __uint_as_float(amax[b * W + w]);
    float r = 0.f;
    if (am != 0.f) r = e4m3r(bf2f(v[i]) * (2.25f / am));
    v8[i] = f2bf(r);
    if (i < n / LW * W) vs[i] = __uint_as_float(amax[i]) / 2.25f;
  }
}

// sage_sparse_q<BQ>_k<BK> (head dim 128) and sage_sparse_d64_q<BQ>_k<BK>.
#define SAGE_SPARSE(BQ, BK, D, NAME)                                                                             \
  extern "C" __global__ void __launch_bounds__(BQ * 2) NAME(                                                      \
      const signed char* Qi, const signed char* Ki, const bf16* V8, const float* sq, const float* sk,            \
      const float* vs, const bf16* OL, void* out, int odt, const int* lut, const int* cnt, int L, int H, int Qb, \
      int Kb, float sm) {                                                                                         \
    sage_sparse<BQ / 16, BK, false, D>(Qi, Ki, V8, 0, sq, sk, vs, OL, out, odt, lut, cnt, L, H, Qb, Kb, sm);     \
  }
#define SAGE_SPARSE_D(BQ, BK)                            \
  SAGE_SPARSE(BQ, BK, 128, sage_sparse_q##BQ##_k##BK)    \
  SAGE_SPARSE(BQ, BK, 64, sage_sparse_d64_q##BQ##_k##BK)
SAGE_SPARSE_D(64, 128)
SAGE_SPARSE_D(128, 64)
SAGE_SPARSE_D(128, 128)
SAGE_SPARSE_D(64, 64)
