// sla_sage.cu: the sparse branch of SageSLA (REFERENCE.md §4.3): int8 Q/K
// and e4m3 V quantisation, and the block-sparse kernel (same structure as
// sla_sparse.cu) running Q·Kᵀ on int8 codes (mma.sync m16n8k32 s8, exact
// int32) and P·V on e4m3 values: P and V are rounded to e4m3 and multiplied
// as bf16 (every e4m3 value and every product of two is exact there) with
// float32 accumulation, which is what the fp8 MMA computes, so the kernel
// needs only sm_80 and NVRTC 11.8 (which has no e4m3 mma).
#include "sla_mma.cuh"

// SageSLA quantisation of q (ksum null) or k (ksum set: smoothed by its bf16
// channel mean rbf(float(ksum/L))) per (b, h, block of blk rows):
// s = max|x|/127 + 1e-7, code = trunc(x/s ± 0.5) clamped to [-128, 127]
// (package sla's int8Block). x bf16 [B, L, H·128]; codes in the same layout,
// scales [B, H, nb]. grid (nb, H, B), 128 threads (one per channel).
extern "C" __global__ void sage_quant_kernel(signed char* xq, float* sc, const bf16* x, const double* ksum, int L,
                                             int H, int blk, int nb) {
  __shared__ float red[4];
  const int c = threadIdx.x, i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const long long W = (long long)H * 128, bh = (long long)b * H + h;
  const long long base = (long long)b * L * W + (long long)h * 128 + c;
  const float mean = ksum ? rbf((float)(ksum[bh * 128 + c] / (double)L)) : 0.f;
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
  amax = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
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
// zero it first). grid (ceil(L/chunk), H, B), 128 threads.
extern "C" __global__ void sage_vamax_kernel(unsigned* amax, const bf16* v, int L, int H, int chunk) {
  const int c = threadIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int r0 = blockIdx.x * chunk, r1 = min(r0 + chunk, L);
  const long long W = (long long)H * 128;
  const long long base = (long long)b * L * W + (long long)h * 128 + c;
  float m = 0.f;
  for (int l = r0; l < r1; ++l) m = fmaxf(m, fabsf(bf2f(v[base + (long long)l * W])));
  atomicMax(&amax[(long long)b * W + (long long)h * 128 + c], __float_as_uint(m));
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

// SageSLA sparse branch (sm90 kernel semantics, package sla's sageSparse):
// int32 S = qi·ki, c = sm·sq·sk (last visited block: S·(sq·sk) and c = sm),
// m starts at −5e6 and d at 1, p = exp2(fma(S, c, −m + 8.807)), d += p,
// o += e4m3(p)·v8, out = o·(1/d)·vs.
template <int NW, int BK>
__device__ __forceinline__ void sage_sparse(const signed char* __restrict__ Qi, const signed char* __restrict__ Ki,
                                            const bf16* __restrict__ V8, const float* __restrict__ sq,
                                            const float* __restrict__ sk, const float* __restrict__ vs,
                                            const bf16* __restrict__ OL, void* out, int odt,
                                            const int* __restrict__ lut, const int* __restrict__ cnt, int L, int H,
                                            int Qb, int Kb, float sm) {
  constexpr int D = 128, BM = 16 * NW, NT = NW * 32;
  constexpr int QSTR = D + 16;  // int8 rows: 144 bytes, fragment loads hit distinct banks
  constexpr int VSTR = D + 8;   // bf16 rows
  // Q's codes go to registers before the key loop, so when they fit, the
  // Q tile shares the second K stage (115 -> 106 KB at BQ 64/BK 128: two
  // CTAs per SM on sm_90).
  constexpr bool QinK = BM <= BK;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* sK = smem;                                     // two stages of [BK][QSTR]
  bf16* sV = (bf16*)(sK + 2 * BK * QSTR);                       // two stages of [BK][VSTR]
  unsigned char* sQ = QinK ? sK + BK * QSTR : (unsigned char*)(sV + 2 * BK * VSTR);  // [BM][QSTR]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = i * BM;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const long long bh = (long long)b * H + h, row = bh * Qb + i;
  const int* lr = lut + row * Kb;
  const int n = cnt[row];
  const float sqi = sq[row];

  for (int c = tid; c < BM * 8; c += NT) {
    const int r = c >> 3, col = (c & 7) * 16, gq = q0 + r;
    sp_cp16(sQ + r * QSTR + col, Qi + base + (long long)min(gq, L - 1) * ld + col, gq < L);
  }
  auto load_kv = [&](int j, int st) {
    unsigned char* dk = sK + st * BK * QSTR;
    bf16* dv = sV + st * BK * VSTR;
    for (int c = tid; c < BK * 8; c += NT) {
      const int r = c >> 3, col = (c & 7) * 16, gk = j * BK + r;
      sp_cp16(dk + r * QSTR + col, Ki + base + (long long)min(gk, L - 1) * ld + col, gk < L);
    }
    for (int c = tid; c < BK * 16; c += NT) {
      const int r = c >> 4, col = (c & 15) * 8, gk = j * BK + r;
      sp_cp16(&dv[r * VSTR + col], V8 + base + (long long)min(gk, L - 1) * ld + col, gk < L);
    }
  };
  if (n > 0) load_kv(lr[0], 0);
  sp_commit();
  sp_wait_all();
  __syncthreads();

  u32 qa[4][4];  // m16n8k32 A fragments of this warp's 16 rows, 4 k-steps of 32 channels
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const unsigned char* p = sQ + (warp * 16 + g) * QSTR + kk * 32 + t4 * 4;
    qa[kk][0] = *(const u32*)p;
    qa[kk][1] = *(const u32*)(p + 8 * QSTR);
    qa[kk][2] = *(const u32*)(p + 16);
    qa[kk][3] = *(const u32*)(p + 8 * QSTR + 16);
  }
  if (QinK) __syncthreads();  // every warp has its Q fragments before stage 1 is refilled
  float o[D / 8][4];
#pragma unroll
  for (int x = 0; x < D / 8; ++x) o[x][0] = o[x][1] = o[x][2] = o[x][3] = 0.f;
  float m0 = -5e6f, m1 = -5e6f;
  float d0 = t4 == 0 ? 1.f : 0.f, d1 = d0;  // per-thread partial sums; the quad's total starts at 1

  for (int it = 0; it < n; ++it) {
    const int st = it & 1, j = lr[it];
    const bool last = it == n - 1;
    if (it + 1 < n) load_kv(lr[it + 1], st ^ 1);
    sp_commit();
    const unsigned char* k = sK + st * BK * QSTR;
    const bf16* v = sV + st * BK * VSTR;
    int si[BK / 8][4];
#pragma unroll
    for (int x = 0; x < BK / 8; ++x) si[x][0] = si[x][1] = si[x][2] = si[x][3] = 0;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int np = 0; np < BK / 16; ++np) {  // an s8 k32 fragment is byte for byte a b16 k16 one
        u32 bb[4];
        sp_ldsm_x4(bb, k + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * QSTR + kk * 32 + ((lane >> 3) & 1) * 16);
        sp_mma_s8(si[2 * np], qa[kk], bb[0], bb[1]);
        sp_mma_s8(si[2 * np + 1], qa[kk], bb[2], bb[3]);
      }
    }
    const float dq = __fmul_rn(sqi, sk[bh * Kb + j]);
    const float c = last ? sm : __fmul_rn(sm, dq);
    float s[BK / 8][4];
    float mx0 = -5e6f, mx1 = -5e6f;
#pragma unroll
    for (int nt = 0; nt < BK / 8; ++nt) {
      const int key = j * BK + nt * 8 + 2 * t4;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = __int2float_rz(si[nt][e]);
        if (last) x = __fmul_rn(x, dq);
        s[nt][e] = (key + (e & 1) < L) ? x : -INFINITY;
      }
      mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
      mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float n0 = fmaxf(m0, __fmul_rn(mx0, c)), n1 = fmaxf(m1, __fmul_rn(mx1, c));
    const float a0 = exp2f(m0 - n0), a1 = exp2f(m1 - n1);
    m0 = n0;
    m1 = n1;
    d0 *= a0;
    d1 *= a1;
#pragma unroll
    for (int x = 0; x < D / 8; ++x) {
      o[x][0] *= a0;
      o[x][1] *= a0;
      o[x][2] *= a1;
      o[x][3] *= a1;
    }
    const float nm0 = -n0 + 8.807f, nm1 = -n1 + 8.807f;
#pragma unroll
    for (int nt = 0; nt < BK / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(fmaf(s[nt][e], c, e < 2 ? nm0 : nm1));
        if (e < 2)
          d0 += p;
        else
          d1 += p;
        s[nt][e] = e4m3r(p);
      }
    }
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      u32 a[4] = {pack_bf2(s[2 * kk][0], s[2 * kk][1]), pack_bf2(s[2 * kk][2], s[2 * kk][3]),
                  pack_bf2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        u32 bb[4];
        sp_ldsm_x4_t(bb, &v[(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * VSTR + dp * 16 + (lane >> 4) * 8]);
        sp_mma_bf16(o[2 * dp], a, bb[0], bb[1]);
        sp_mma_bf16(o[2 * dp + 1], a, bb[2], bb[3]);
      }
    }
    sp_wait_all();
    __syncthreads();
  }

  d0 += __shfl_xor_sync(0xffffffffu, d0, 1);
  d0 += __shfl_xor_sync(0xffffffffu, d0, 2);
  d1 += __shfl_xor_sync(0xffffffffu, d1, 1);
  d1 += __shfl_xor_sync(0xffffffffu, d1, 2);
  const float i0 = 1.f / d0, i1 = 1.f / d1;
  const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
  const float* vsh = vs + (long long)b * ld + (long long)h * D;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + 2 * t4;
    const float v0 = vsh[col], v1 = vsh[col + 1];
    const long long i0x = base + (long long)r0 * ld + col, i1x = base + (long long)r1 * ld + col;
    if (r0 < L) sp_store2(out, odt, OL, i0x, __fmul_rn(__fmul_rn(o[nt][0], i0), v0), __fmul_rn(__fmul_rn(o[nt][1], i0), v1));
    if (r1 < L) sp_store2(out, odt, OL, i1x, __fmul_rn(__fmul_rn(o[nt][2], i1), v0), __fmul_rn(__fmul_rn(o[nt][3], i1), v1));
  }
}

#define SAGE_SPARSE(BQ, BK)                                                                                      \
  extern "C" __global__ void __launch_bounds__(BQ * 2) sage_sparse_q##BQ##_k##BK(                               \
      const signed char* Qi, const signed char* Ki, const bf16* V8, const float* sq, const float* sk,            \
      const float* vs, const bf16* OL, void* out, int odt, const int* lut, const int* cnt, int L, int H, int Qb, \
      int Kb, float sm) {                                                                                         \
    sage_sparse<BQ / 16, BK>(Qi, Ki, V8, sq, sk, vs, OL, out, odt, lut, cnt, L, H, Qb, Kb, sm);                  \
  }
SAGE_SPARSE(64, 128)
SAGE_SPARSE(128, 64)
SAGE_SPARSE(128, 128)
SAGE_SPARSE(64, 64)
