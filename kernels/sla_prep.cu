// sla_prep.cu: everything SLA/SageSLA compute before the sparse kernel, in
// three launches that read q once, k twice and v twice (the unfused path of
// sla_blockmap.cu + sla_sage.cu reads q 3×, k 4×, v 2×):
//   sla_prep_stats_d*: k's channel sums over L (the smoothing mean) and v's
//                      channel maxima (the e4m3 scales), one pass;
//   sla_prep_d*:       per (query or key block, head): the pooled means
//                      (k smoothed), SageSLA's int8 codes and block scale,
//                      and for key blocks the e4m3 Vᵀ bytes;
//   sla_topk_kernel:   scores and torch.topk's choice, 8 query blocks per
//                      CTA, written as the look-up table the kernels read.
// Every output is the unfused kernels' value, byte for byte: the same bf16
// roundings and float expressions (docs/NUMERICS.md §6.1, §6.3). Sums run in
// float64, whose partial sums of bf16 (float32) values are exact while the
// values summed span fewer than ~53 − 8 − log2(rows) (53 − 24 − log2(rows))
// binades, so their order, which differs here (rows split over threads, then
// summed in row-group order), does not change them; the unfused colsum
// already sums its chunks in atomic (arbitrary) order on the same grounds. Tensors are [B, L, H·D], D 64 or 128.
#define SAGE_NO_FP8
#include "sla_sage.cuh"  // e4m3r, e4m3_bits, kperm

#define PREP_T 256

// Row-group partials of channel c = 8·cg + e sit at e·(D/8 + 1) + cg of a
// shared row: the 8-channel writers store consecutive words and the
// per-channel readers hit few banks.
#define PSLOT(D, c) (((c) & 7) * ((D) / 8 + 1) + ((c) >> 3))

// Loads x[i..i+8) (i a multiple of 8) of a bf16 or float32 tensor as floats.
__device__ __forceinline__ void ld8(float* o, const void* x, int dt, long long i) {
  if (dt == DT_BF16) {
    const uint4 u = *(const uint4*)((const bf16*)x + i);
    const u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o[2 * e] = __uint_as_float(w[e] << 16);
      o[2 * e + 1] = __uint_as_float(w[e] & 0xFFFF0000u);
    }
  } else {
    const float4 a = *(const float4*)((const float*)x + i), b = *(const float4*)((const float*)x + i + 4);
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
  }
}

// The 8 bf16 values of one 16-byte load as floats.
__device__ __forceinline__ void unpack8(float* o, uint4 u) {
  const u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    o[2 * e] = __uint_as_float(w[e] << 16);
    o[2 * e + 1] = __uint_as_float(w[e] & 0xFFFF0000u);
  }
}

// Loads are issued in batches before any of them is used (all rows of a
// block, four rows of a chunk): the kernels are memory-bound and a load per
// round trip left the bandwidth idle.

// Pass 1, grid (ceil(L/chunk), H, B), 256 threads (D/8 per row, 8 channels
// each): ksum += Σ_rows x (x rounded to bf16 when rnd), as sla_colsum_kernel;
// ksum16 (if set) += Σ rbf(x) (the bf16 copy SageSLA quantises, needed apart
// from ksum only when rnd is 0); vamax (if set) = max |v| per channel as
// float bits, as sage_vamax_kernel. Zero the outputs first.
template <int D>
__device__ __forceinline__ void prep_stats(double* ksum, double* ksum16, unsigned* vamax, const void* k, int kdt,
                                           int rnd, const bf16* v, int L, int H, int chunk) {
  constexpr int TPR = D / 8, RG = PREP_T / TPR;
  __shared__ double red[RG][D + 8];
  __shared__ float redf[RG][D + 8];
  const int tid = threadIdx.x, cg = tid % TPR, rg = tid / TPR, h = blockIdx.y, b = blockIdx.z;
  const int r0 = blockIdx.x * chunk, r1 = min(r0 + chunk, L);
  const long long W = (long long)H * D, bh = (long long)b * H + h;
  const long long base = (long long)b * L * W + (long long)h * D + cg * 8;
  const bool rk = rnd && kdt != DT_BF16;  // bf16 loads are already rounded
  double s[8], s16[8];
  float m[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) s[e] = 0, s16[e] = 0, m[e] = 0.f;
  for (int l0 = r0 + rg; l0 < r1; l0 += 4 * RG) {
    uint4 kr[4], vr[4];
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int l = l0 + u * RG;
      kr[u] = l < r1 && kdt == DT_BF16 ? *(const uint4*)((const bf16*)k + base + (long long)l * W) : z;
      vr[u] = l < r1 && vamax ? *(const uint4*)(v + base + (long long)l * W) : z;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int l = l0 + u * RG;
      if (l >= r1) break;
      float f[8];
      if (kdt == DT_BF16)
        unpack8(f, kr[u]);
      else
        ld8(f, k, kdt, base + (long long)l * W);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        s[e] += (double)(rk ? rbf(f[e]) : f[e]);
        if (ksum16) s16[e] += (double)rbf(f[e]);
      }
      if (vamax) {
        float g[8];
        unpack8(g, vr[u]);
#pragma unroll
        for (int e = 0; e < 8; ++e) m[e] = fmaxf(m[e], fabsf(g[e]));
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) red[rg][PSLOT(D, cg * 8 + e)] = s[e], redf[rg][PSLOT(D, cg * 8 + e)] = m[e];
  __syncthreads();
  if (tid < D) {
    double t = 0;
    float mx = 0.f;
    for (int g = 0; g < RG; ++g) t += red[g][PSLOT(D, tid)], mx = fmaxf(mx, redf[g][PSLOT(D, tid)]);
    atomicAdd(&ksum[bh * D + tid], t);
    if (vamax) atomicMax(&vamax[bh * D + tid], __float_as_uint(mx));
  }
  if (ksum16) {
    __syncthreads();
#pragma unroll
    for (int e = 0; e < 8; ++e) red[rg][PSLOT(D, cg * 8 + e)] = s16[e];
    __syncthreads();
    if (tid < D) {
      double t = 0;
      for (int g = 0; g < RG; ++g) t += red[g][PSLOT(D, tid)];
      atomicAdd(&ksum16[bh * D + tid], t);
    }
  }
}

extern "C" __global__ void __launch_bounds__(PREP_T)
    sla_prep_stats_d128(double* ksum, double* ksum16, unsigned* vamax, const void* k, int kdt, int rnd, const bf16* v,
                        int L, int H, int chunk) {
  prep_stats<128>(ksum, ksum16, vamax, k, kdt, rnd, v, L, H, chunk);
}
extern "C" __global__ void __launch_bounds__(PREP_T)
    sla_prep_stats_d64(double* ksum, double* ksum16, unsigned* vamax, const void* k, int kdt, int rnd, const bf16* v,
                       int L, int H, int chunk) {
  prep_stats<64>(ksum, ksum16, vamax, k, kdt, rnd, v, L, H, chunk);
}

// Pass 2, grid (Qb + Kb, H, B), 256 threads: CTA x < Qb is query block x,
// else key block x − Qb. Per block of n rows and head:
//   pool:  mean of x (q; or k smoothed: rdt(rdt(k) − mean), mean =
//          rdt(float(ksum/L))), rounded when rnd, as sla_pool_kernel: pq
//          [B, H, Qb, D], pkT [B, H, D, Kb];
//   quant: (qi/ki set, SageSLA) codes of the bf16 copy (k smoothed by
//          rbf(float(ksum16/L))) with one scale per block, as
//          sage_quant_kernel: codes [B, L, W], scales [B, H, nb];
//   V:     (key blocks, v8t set) e4m3(v·(2.25/amax_c)) as bytes [B, W, Lp]
//          in kperm order per 32 keys, 0 past L, and vs = amax_c/2.25, as
//          sage_v8t_kernel.
// Thread t holds channels 8·(t mod D/8).. of rows t/(D/8) + i·(256/(D/8)), so
// a block's codes wait in registers for its scale.
template <int D>
__device__ __forceinline__ void prep_blocks(float* pq, float* pkT, signed char* qi, float* sq, signed char* ki,
                                            float* sk, unsigned char* v8t, float* vs, const void* q, int qdt,
                                            const void* k, int kdt, int rnd, const double* ksum, const double* ksum16,
                                            const bf16* v, const unsigned* vamax, int L, int H, int BQ, int BK, int Qb,
                                            int Kb, int Lp) {
  constexpr int TPR = D / 8, RG = PREP_T / TPR, NIT = 128 / RG, NCG = D / 8;
  __shared__ double red[RG][D + 8];
  __shared__ float wmax[PREP_T / 32];
  __shared__ u32 vt[D][128 / 4 + 1];  // Vᵀ bytes, 4 keys a word; +1: conflict-free stores
  __shared__ float vam[D], vinv[D];     // amax_c and 2.25/amax_c
  const int tid = threadIdx.x, cg = tid % TPR, rg = tid / TPR, h = blockIdx.y, b = blockIdx.z;
  const bool isQ = blockIdx.x < Qb;
  const int blk = isQ ? BQ : BK, i = isQ ? blockIdx.x : blockIdx.x - Qb;
  const void* x = isQ ? q : k;
  const int xdt = isQ ? qdt : kdt;
  const long long W = (long long)H * D, bh = (long long)b * H + h;
  const int l0 = i * blk, n = min(l0 + blk, L) - l0, c0 = cg * 8;
  signed char* xq = isQ ? qi : ki;
  // bf16 loads are already rounded; with rnd, ksum16 is ksum and the
  // quantiser's smoothed value is the pool's.
  const bool rx = rnd && xdt != DT_BF16, shareK = rnd && ksum16 == ksum;
  __shared__ __align__(16) float mM[D], m16[D];  // the pool's and the quantiser's smoothing means
  if (!isQ && tid < D) {
    float m = (float)(ksum[bh * D + tid] / (double)L);
    mM[tid] = rnd ? rbf(m) : m;
    m16[tid] = xq ? rbf((float)(ksum16[bh * D + tid] / (double)L)) : 0.f;
  }
  __syncthreads();
  double acc[8];
  // bf16 rows as loaded (all issued at once), then the quantiser's inputs,
  // bf16-exact (rbf), two per word.
  uint4 xv[NIT];
  float amax = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0;
  const bool xbf = xdt == DT_BF16;
#pragma unroll
  for (int it = 0; it < NIT; ++it) {
    const int r = rg + it * RG;
    xv[it] = r < n && xbf ? *(const uint4*)((const bf16*)x + ((long long)b * L + l0 + r) * W + (long long)h * D + c0)
                          : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int it = 0; it < NIT; ++it) {
    const int r = rg + it * RG;
    if (r < n) {
      float f[8];
      if (xbf)
        unpack8(f, xv[it]);
      else
        ld8(f, x, xdt, ((long long)b * L + l0 + r) * W + (long long)h * D + c0);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        float vp = rx ? rbf(f[e]) : f[e];
        float vq = xdt == DT_BF16 ? f[e] : rbf(f[e]);
        if (!isQ) {
          vp = vp - mM[c0 + e];
          if (rnd) vp = rbf(vp);
          if (xq) vq = shareK ? vp : rbf(vq - m16[c0 + e]);
        }
        acc[e] += (double)vp;
        amax = fmaxf(amax, fabsf(vq));
        f[e] = vq;
      }
      u32 w[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) w[e] = (__float_as_uint(f[2 * e]) >> 16) | (__float_as_uint(f[2 * e + 1]) & 0xFFFF0000u);
      xv[it] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) red[rg][PSLOT(D, c0 + e)] = acc[e];
  __syncthreads();
  if (tid < D) {
    double s = 0;
    for (int g = 0; g < RG; ++g) s += red[g][PSLOT(D, tid)];
    float r = (float)s / (float)n;
    if (rnd) r = rbf(r);
    if (isQ)
      pq[(bh * Qb + i) * D + tid] = r;
    else
      pkT[(bh * D + tid) * Kb + i] = r;
  }
  if (xq) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if ((tid & 31) == 0) wmax[tid >> 5] = amax;
    __syncthreads();
    amax = wmax[0];
#pragma unroll
    for (int w = 1; w < PREP_T / 32; ++w) amax = fmaxf(amax, wmax[w]);
    const float s = amax / 127.f + 1e-7f;
#pragma unroll
    for (int it = 0; it < NIT; ++it) {
      const int r = rg + it * RG;
      if (r < n) {
        u32 c[2] = {0, 0};
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const u32 wv = (e >> 1) == 0 ? xv[it].x : (e >> 1) == 1 ? xv[it].y : (e >> 1) == 2 ? xv[it].z : xv[it].w;
          float y = __uint_as_float((e & 1) ? wv & 0xFFFF0000u : wv << 16) / s;
          y = y >= 0.f ? y + 0.5f : y - 0.5f;
          const int code = min(127, max(-128, __float2int_rz(y)));
          c[e >> 2] |= ((u32)code & 0xFFu) << (8 * (e & 3));
        }
        *(uint2*)&xq[((long long)b * L + l0 + r) * W + (long long)h * D + c0] = make_uint2(c[0], c[1]);
      }
    }
    if (tid == 0) (isQ ? sq : sk)[bh * (isQ ? Qb : Kb) + i] = s;
  }
  if (isQ || !v8t) return;
  if (tid < D) {
    const float am = __uint_as_float(vamax[bh * D + tid]);
    vam[tid] = am;
    vinv[tid] = 2.25f / am;
    if (i == 0) vs[bh * D + tid] = am / 2.25f;
  }
  __syncthreads();
  // V: item (channel group, m) makes output bytes 4m..4m+3 of 8 channels
  // (keys kperm(p) of their 32-key chunk); 4 channel groups × 8 m per warp
  // keep the loads in full sectors and the shared stores on distinct banks.
  const int nm = BK / 4;
  for (int idx0 = tid; idx0 < NCG * nm; idx0 += 2 * PREP_T) {
    uint4 vr[2][4];  // two items' rows, loaded before use
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int idx = idx0 + u * PREP_T, rest = idx >> 5;
      const int g = (rest % (NCG / 4)) * 4 + (idx & 3), m = (rest / (NCG / 4)) * 8 + ((idx >> 2) & 7);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int p = 4 * m + j, l = l0 + (p & ~31) + kperm(p & 31);
        vr[u][j] = idx < NCG * nm && l < L ? *(const uint4*)(v + ((long long)b * L + l) * W + (long long)h * D + g * 8)
                                           : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int idx = idx0 + u * PREP_T, rest = idx >> 5;
      if (idx >= NCG * nm) break;
      const int g = (rest % (NCG / 4)) * 4 + (idx & 3), m = (rest / (NCG / 4)) * 8 + ((idx >> 2) & 7);
      u32 w[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) w[e] = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int p = 4 * m + j, l = l0 + (p & ~31) + kperm(p & 31);
        float f[8];
        unpack8(f, vr[u][j]);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          float r = 0.f;
          if (l < L && vam[g * 8 + e] != 0.f) r = e4m3r(f[e] * vinv[g * 8 + e]);
          w[e] |= e4m3_bits(r) << (8 * j);
        }
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) vt[g * 8 + e][m] = w[e];
    }
  }
  __syncthreads();
  for (int idx = tid; idx < D * nm; idx += PREP_T) {
    const int c = idx / nm, m = idx % nm;
    *(u32*)&v8t[(bh * D + c) * Lp + l0 + 4 * m] = vt[c][m];
  }
}

#define PREP_BLOCKS(D)                                                                                                 \
  extern "C" __global__ void __launch_bounds__(PREP_T, 3) sla_prep_d##D(                                                \
      float* pq, float* pkT, signed char* qi, float* sq, signed char* ki, float* sk, unsigned char* v8t, float* vs,    \
      const void* q, int qdt, const void* k, int kdt, int rnd, const double* ksum, const double* ksum16,               \
      const bf16* v, const unsigned* vamax, int L, int H, int BQ, int BK, int Qb, int Kb, int Lp) {                    \
    prep_blocks<D>(pq, pkT, qi, sq, ki, sk, v8t, vs, q, qdt, k, kdt, rnd, ksum, ksum16, v, vamax, L, H, BQ, BK, Qb, Kb, \
                   Lp);                                                                                                \
  }
PREP_BLOCKS(128)
PREP_BLOCKS(64)

// The order key of a score: unsigned order = float order, -0 as +0 (the
// float comparison ties them), as sla_select_kernel's sort keys.
__device__ __forceinline__ u32 score_key(float f) {
  if (f == 0.f) f = 0.f;
  const u32 u = __float_as_uint(f);
  return u ^ ((u >> 31) ? 0xFFFFFFFFu : 0x80000000u);
}

__device__ __forceinline__ int warp_isum(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Selection, grid (ceil(Qb/G), H, B), 256 threads, G ≤ 8 query blocks per
// CTA (one warp each), dynamic shared memory 8·128 doubles + G·Kb floats +
// G·Kb bytes; the same outputs as sla_select_kernel (see there):
//   S[j] = rnd(Σ_c pq[i,c]·pk[j,c]) (float64, channel order), one thread per
//          key block for all G rows, so pkT is read once per G rows;
//   top-k: T = the kk-th largest order key (bit by bit from the top: the
//          largest t with #{key ≥ t} ≥ kk), then every key > T and the first
//          kk − #{key > T} keys equal to T in ascending block order, which is
//          torch.topk's choice;
//   lut/cnt/bmap as sla_select_kernel (mode 0: above the smallest selected
//          score first, mode 1: ascending).
extern "C" __global__ void __launch_bounds__(256)
    sla_topk_kernel(int* lut, int* cnt, float* bmap, const float* given, const float* pq, const float* pkT, int rnd,
                    int Qb, int Kb, int H, int kk, int mode, int D, int G) {
  extern __shared__ __align__(16) unsigned char smem[];
  double* qs = (double*)smem;     // [c][8], converted once
  float* S = (float*)(qs + 8 * 128);  // [G][Kb]
  unsigned char* sel = (unsigned char*)(S + G * Kb);
  const int i0 = blockIdx.x * G, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const long long bh = (long long)b * H + h;
  const int ng = min(G, Qb - i0);
  for (int x = tid; x < 8 * D; x += 256) {
    const int c = x >> 3, r = x & 7;
    qs[x] = r < ng ? (double)pq[(bh * Qb + i0 + r) * D + c] : 0.0;
  }
  __syncthreads();
  const float* pk = pkT + bh * D * Kb;
  for (int j = tid; j < Kb; j += 256) {
    double s[8];
#pragma unroll
    for (int r = 0; r < 8; ++r) s[r] = 0;
#pragma unroll 8
    for (int c = 0; c < D; ++c) {
      const double kv = (double)pk[(long long)c * Kb + j];
#pragma unroll
      for (int r = 0; r < 8; r += 2) {
        const double2 a = *(const double2*)&qs[c * 8 + r];
        s[r] += a.x * kv, s[r + 1] += a.y * kv;
      }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r)
      if (r < ng) {
        const float f = (float)s[r];
        S[r * Kb + j] = rnd ? rbf(f) : f;
      }
  }
  __syncthreads();
  if (warp >= ng) return;
  const int i = i0 + warp;
  const long long row = bh * Qb + i;
  const float* Sr = S + warp * Kb;
  unsigned char* sr = sel + warp * Kb;
  if (given) {
    for (int j = lane; j < Kb; j += 32) sr[j] = given[((long long)h * Qb + i) * Kb + j] != 0.f;
  } else {
    u32 kr[8];  // the keys of blocks lane + 32t, t < 8, in registers
#pragma unroll
    for (int t = 0; t < 8; ++t) kr[t] = lane + 32 * t < Kb ? score_key(Sr[lane + 32 * t]) : 0u;
    // bf16 scores (rnd): a key's low 16 bits follow from its sign (0 for
    // keys ≥ 2^31, else 0xFFFF), so the top 16 bits decide T.
    u32 T = 0;
    for (int bit = 31; bit >= (rnd ? 16 : 0); --bit) {
      const u32 cand = T | (1u << bit);
      int c = 0;
#pragma unroll
      for (int t = 0; t < 8; ++t) c += lane + 32 * t < Kb && kr[t] >= cand;
      for (int j = lane + 256; j < Kb; j += 32) c += score_key(Sr[j]) >= cand;
      if (warp_isum(c) >= kk) T = cand;
    }
    if (rnd && !(T >> 31)) T |= 0xFFFFu;
    int gt = 0;
    for (int j = lane; j < Kb; j += 32) gt += score_key(Sr[j]) > T;
    const int need = kk - warp_isum(gt);
    int base = 0;
    for (int j0 = 0; j0 < Kb; j0 += 32) {
      const int j = j0 + lane;
      const u32 u = j < Kb ? score_key(Sr[j]) : 0u;
      const bool eq = j < Kb && u == T;
      const unsigned m = __ballot_sync(0xffffffffu, eq);
      if (j < Kb) sr[j] = u > T || (eq && base + __popc(m & ((1u << lane) - 1u)) < need);
      base += __popc(m);
    }
  }
  __syncwarp();
  if (bmap)
    for (int j = lane; j < Kb; j += 32) bmap[row * Kb + j] = (float)sr[j];
  float mn = INFINITY;
  for (int j = lane; j < Kb; j += 32)
    if (sr[j]) mn = fminf(mn, Sr[j]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
  const float kth = mn;
  int* lr = lut + row * Kb;
  int base = 0;
  for (int pass = 0; pass < (mode == 0 ? 2 : 1); ++pass) {
    for (int j0 = 0; j0 < Kb; j0 += 32) {
      const int j = j0 + lane;
      bool f = j < Kb && sr[j];
      if (mode == 0) f = f && ((Sr[j] > kth) == (pass == 0));
      const unsigned m = __ballot_sync(0xffffffffu, f);
      if (f) lr[base + __popc(m & ((1u << lane) - 1u))] = j;
      base += __popc(m);
    }
  }
  if (lane == 0) cnt[row] = base;
}
