// sla_linear.cu: the linear branch of SLA (docs/NUMERICS.md §6.4) around the
// cuBLASLt GEMMs the backend runs (KVᵀ = Vᵀ·Kf, num = Qf·KV, proj_l): the
// channel-softmax feature map, ks = Σ_L Kf, and the normalisation
// o = bf16(num / bf16(1e-5 + bf16(Σ_c bf16(Qf·ks)))). bf16 roundings as in
// package sla; operands bf16, head dim D (64 or 128; each lane of a warp
// holds D/32 channels of a row).
#include "sla_linear.cuh"

// φ(x) = softmax over the D channels of each (token, head) row, float32
// inside, bf16 out. x [B, L, H·D]; out [B, H, L, D] when headMajor, else
// [B, L, H·D]. One warp per row, 8 rows per 256-thread block.
extern "C" __global__ void sla_featmap_kernel(bf16* out, const bf16* x, long long rows, int L, int H, int headMajor,
                                              int D) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31, ne = D >> 5;
  const bf16* src = x + r * D;  // row r = (b·L + l)·H + h
  float v[4], m = -INFINITY;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = e < ne ? bf2f(src[lane + 32 * e]) : -INFINITY;
    m = fmaxf(m, v[e]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = e < ne ? expf(v[e] - m) : 0.f;
    s += v[e];
  }
  s = warp_sum(s);
  long long dst = r * D;
  if (headMajor) {
    const long long h = r % H, bl = r / H, l = bl % L, b = bl / L;
    dst = ((b * H + h) * L + l) * D;
  }
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < ne) out[dst + lane + 32 * e] = f2bf(v[e] / s);
}

// ks[row] = bf16(Σ_l kfT[row, l]) in float64 for kfT [rows, Lp] (zero
// padded past L). One 256-thread block per row.
extern "C" __global__ void sla_rowsum_kernel(float* ks, const bf16* kfT, int Lp) {
  __shared__ double sh[8];
  const bf16* src = kfT + (long long)blockIdx.x * Lp;
  double s = 0;
  for (int l = threadIdx.x; l < Lp; l += 256) s += (double)bf2f(src[l]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int w = 0; w < 8; ++w) t += sh[w];
    ks[blockIdx.x] = rbf((float)t);
  }
}

// o[b, l, h, :] = bf16(num / dn), dn = bf16(1e-5 + bf16(Σ_c bf16(qf·ks)))
// for num, qf [B, H, L, D] and ks [B, H, D]; the output [B, L, H·D] is
// proj_l's input. One warp per (b, h, l) row, 8 per block.
extern "C" __global__ void sla_linear_norm_kernel(bf16* o, const bf16* num, const bf16* qf, const float* ks,
                                                  long long rows, int L, int H, int D) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);  // (b·H + h)·L + l
  if (r >= rows) return;
  const int lane = threadIdx.x & 31, ne = D >> 5;
  const long long l = r % L, bh = r / L, h = bh % H, b = bh / H;
  double den = 0;
  float nv[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int c = lane + 32 * e;
    nv[e] = 0.f;
    if (e < ne) {
      den += (double)rbf(bf2f(qf[r * D + c]) * ks[bh * D + c]);
      nv[e] = bf2f(num[r * D + c]);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) den += __shfl_xor_sync(0xffffffffu, den, off);
  const float dn = rbf(1e-5f + rbf((float)den));
  bf16* dst = o + ((b * L + l) * H + h) * D;
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < ne) dst[lane + 32 * e] = f2bf(nv[e] / dn);
}

// ---- The fused linear branch: three kernels instead of the feature maps,
// transposes, per-head GEMMs, sums, the normalisation and the proj_l Linear
// above, with the same bf16 roundings (float32 sums in another order, and
// no atomics: the partial sums of KᵀV and ks are added in a fixed order).
// Tiles of rows stream through shared memory by cp.async in a ring of
// stages, so that each multiprocessor keeps tens of KB of loads in flight
// while it computes (the first fused version loaded each row's φ by one
// warp at a time and waited on memory); φ is computed in place by TPR = D/8
// threads per row, each holding one 16-byte word (8 channels). ----

// The mma.sync GEMM of step 1 (sla_lin_kv_body in sla_linear.cuh): v
// tiles in padded rows; warp w owns c1 rows (w&3)·D/4.. and c2 columns
// (w>>2)·D/2.. of KV, A = φ(k)ᵀ and B = v by transposed ldmatrix.
template <int D>
struct SlaLinKvMma {
  static constexpr int kThreads = 256, kAlign = 16, STR = D + 8, MT = D / 64, NT = D / 16;
  static constexpr int kVBytes = SLA_LIN_KV_ROWS * STR * 2;
  static constexpr int kPhiUnroll = 1;  // more spills at the 128 registers of two blocks per SM
  float acc[MT][NT][4];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int a = 0; a < MT; ++a)
#pragma unroll
      for (int x = 0; x < NT; ++x) acc[a][x][0] = acc[a][x][1] = acc[a][x][2] = acc[a][x][3] = 0.f;
  }
  static __device__ __forceinline__ u32 voff(int r, int c8) { return (r * STR + c8 * 8) * 2; }
  static __device__ __forceinline__ void fence() {}
  __device__ __forceinline__ void tile(const bf16* tk, const unsigned char* tvb, int lane, int warp) {
    const bf16* tv = (const bf16*)tvb;
    const int m0 = (warp & 3) * (D / 4), n0 = (warp >> 2) * (D / 2);
#pragma unroll
    for (int kk = 0; kk < SLA_LIN_KV_ROWS / 16; ++kk) {
      u32 af[MT][4];
#pragma unroll
      for (int a = 0; a < MT; ++a)  // A[m = c1][k = l] from φ(k) stored [l][c1]: transposed loads
        sp_ldsm_x4_t(af[a], &tk[(kk * 16 + (lane & 7) + (lane >> 4) * 8) * STR + m0 + a * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
      for (int dp = 0; dp < NT / 2; ++dp) {
        u32 bb[4];
        sp_ldsm_x4_t(bb, &tv[(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STR + n0 + dp * 16 + (lane >> 4) * 8]);
#pragma unroll
        for (int a = 0; a < MT; ++a) {
          sp_mma_bf16(acc[a][2 * dp], af[a], bb[0], bb[1]);
          sp_mma_bf16(acc[a][2 * dp + 1], af[a], bb[2], bb[3]);
        }
      }
    }
  }
  __device__ __forceinline__ void store(float* kv, int lane, int warp) const {
    const int m0 = (warp & 3) * (D / 4), n0 = (warp >> 2) * (D / 2), g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int a = 0; a < MT; ++a)
#pragma unroll
      for (int x = 0; x < NT; ++x) {
        const int c1 = m0 + a * 16 + g, c2 = n0 + x * 8 + 2 * t4;  // stored transposed: [c2][c1]
        kv[c2 * D + c1] = acc[a][x][0];
        kv[(c2 + 1) * D + c1] = acc[a][x][1];
        kv[c2 * D + c1 + 8] = acc[a][x][2];
        kv[(c2 + 1) * D + c1 + 8] = acc[a][x][3];
      }
  }
};

// Step 2: the chunks' partial sums added in chunk order (float64) and
// rounded as the reference stores them: kvt = bf16(KVᵀ) [B, H, D, D], ks =
// bf16(float(Σ)) [B, H, D]. grid (ceil(D²/256), B·H), 256 threads.
extern "C" __global__ void sla_lin_reduce_kernel(bf16* kvt, float* ks, const float* kvpart, const double* kspart,
                                                 int chunks, int D) {
  const long long bh = blockIdx.y;
  const int i = blockIdx.x * 256 + threadIdx.x;
  if (i < D * D) {
    double s = 0;
    for (int c = 0; c < chunks; ++c) s += (double)kvpart[(bh * chunks + c) * D * D + i];
    kvt[bh * D * D + i] = f2bf((float)s);
  }
  if (blockIdx.x == 0 && threadIdx.x < D) {
    double s = 0;
    for (int c = 0; c < chunks; ++c) s += kspart[(bh * chunks + c) * D + threadIdx.x];
    ks[bh * D + threadIdx.x] = rbf((float)s);
  }
}

// The mma.sync GEMMs of step 3 (sla_lin_out_body in sla_linear.cuh): KVᵀ
// and W in padded rows (ldmatrix without bank conflicts); each warp runs
// its MR m-tiles, each B fragment read from shared memory serving MR mma.
template <int D, int MR>
struct SlaLinMma {
  static constexpr int kAlign = 16, STR = D + 8, kOpBytes = 2 * D * STR * 2;
  static __device__ __forceinline__ void load(unsigned char* ops, const bf16* kvt, const bf16* W, int tid, int nth) {
    bf16* sKV = (bf16*)ops;  // [D][STR] KVᵀ (rows c2)
    bf16* sW = sKV + D * STR;  // [D][STR] W (rows n)
    for (int c = tid; c < D * (D / 8); c += nth) {
      const int r = c / (D / 8), col = (c % (D / 8)) * 8;
      sp_cp16(&sKV[r * STR + col], kvt + r * D + col, true);
      sp_cp16(&sW[r * STR + col], W + r * D + col, true);
    }
  }
  static __device__ __forceinline__ void fence() {}
  static __device__ __forceinline__ void run(float (&pa)[MR][D / 2], const bf16* mine, const float* dn,
                                             const unsigned char* ops, int lane) {
    const bf16* sKV = (const bf16*)ops;
    const bf16* sW = sKV + D * STR;
    const int g = lane >> 2;
    float acc[MR][D / 2];
#pragma unroll
    for (int m = 0; m < MR; ++m)
#pragma unroll
      for (int i = 0; i < D / 2; ++i) acc[m][i] = 0.f;
#pragma unroll 2  // (code size: the loop must stay in the instruction cache)
    for (int kk = 0; kk < D / 16; ++kk) {
      u32 af[MR][4];
#pragma unroll
      for (int m = 0; m < MR; ++m)
        sp_ldsm_x4(af[m], &mine[(m * 16 + (lane & 15)) * STR + kk * 16 + (lane >> 4) * 8]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        u32 bb[4];
        sp_ldsm_x4(bb, &sKV[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * STR + kk * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
        for (int m = 0; m < MR; ++m) {
          sp_mma_bf16(&acc[m][8 * np], af[m], bb[0], bb[1]);
          sp_mma_bf16(&acc[m][8 * np + 4], af[m], bb[2], bb[3]);
        }
      }
    }
    u32 of[MR][D / 16][4];
#pragma unroll
    for (int m = 0; m < MR; ++m) sla_lin_norm_frags<D>(of[m], acc[m], dn[m * 16 + g], dn[m * 16 + g + 8]);
#pragma unroll
    for (int m = 0; m < MR; ++m)
#pragma unroll
      for (int i = 0; i < D / 2; ++i) pa[m][i] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        u32 bb[4];
        sp_ldsm_x4(bb, &sW[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * STR + kk * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
        for (int m = 0; m < MR; ++m) {
          sp_mma_bf16(&pa[m][8 * np], of[m][kk], bb[0], bb[1]);
          sp_mma_bf16(&pa[m][8 * np + 4], of[m][kk], bb[2], bb[3]);
        }
      }
    }
  }
};

#define SLA_LIN_KV(D)                                                                                                 \
  extern "C" __global__ void __launch_bounds__(256, 2)                                                                \
      sla_lin_kv_d##D(float* kvpart, double* kspart, const bf16* K, const bf16* V, int L, int H, int rows) {          \
    sla_lin_kv_body<D, SlaLinKvMma<D>>(kvpart, kspart, K, V, L, H, rows);                                             \
  }
#define SLA_LIN_OUT(D, NW, S, MR)                                                                                     \
  extern "C" __global__ void __launch_bounds__(32 * NW) sla_lin_out_d##D##_w##NW##_s##S##_m##MR(                     \
      bf16* ol, const bf16* Q, const bf16* kvt, const float* ks, const bf16* W, const bf16* bias, int L, int H,       \
      int tilesPerBlock) {                                                                                            \
    sla_lin_out_body<D, NW, S, MR, SlaLinMma<D, MR>>(ol, Q, kvt, ks, W, bias, L, H, tilesPerBlock);                   \
  }
SLA_LIN_KV(128)
SLA_LIN_KV(64)
SLA_LIN_OUT(128, 8, 3, 1)
SLA_LIN_OUT(128, 8, 2, 1)
SLA_LIN_OUT(128, 4, 2, 1)
SLA_LIN_OUT(64, 8, 3, 1)
