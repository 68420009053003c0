// sla_linear.cu: the linear branch of SLA (docs/NUMERICS.md §6.4) around the
// cuBLASLt GEMMs the backend runs (KVᵀ = Vᵀ·Kf, num = Qf·KV, proj_l): the
// channel-softmax feature map, ks = Σ_L Kf, and the normalisation
// o = bf16(num / bf16(1e-5 + bf16(Σ_c bf16(Qf·ks)))). bf16 roundings as in
// package sla; operands bf16, head dim D (64 or 128; each lane of a warp
// holds D/32 channels of a row).
#include "mma.cuh"

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
// transposes, per-head GEMMs, sums and the normalisation above, and proj_l
// (the same roundings; float32 sums in another order). ----

// Step 1: per (chunk of rows, head, batch) the partial sums over its rows of
// KV[c1][c2] = Σ_l φ(k)[l,c1]·v[l,c2] (mma.sync, float32, added into kvacc
// [B, H, D(c2), D(c1)] with atomics) and ks[c] = Σ_l φ(k)[l,c] (float64,
// into ks64 [B, H, D]). Tiles of 64 rows: φ(k) by one warp per row (as
// sla_featmap_kernel) into shared memory, v by cp.async; 8 warps, warp w
// owns c1 rows (w&3)·D/4.. and c2 columns (w>>2)·D/2... Both outputs must
// be zero before. grid (chunks, H, B), 256 threads; rows per chunk a
// multiple of 64.
template <int D>
__device__ __forceinline__ void sla_lin_kv(float* kvacc, double* ks64, const bf16* __restrict__ K,
                                           const bf16* __restrict__ V, int L, int H, int rowsPerChunk) {
  constexpr int BM = 64, STR = D + 8, MT = D / 64, NT = D / 16, NE = D / 32;
  __shared__ __align__(16) bf16 sK[BM * STR];
  __shared__ __align__(16) bf16 sV[BM * STR];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = blockIdx.y, b = blockIdx.z;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const int r0 = blockIdx.x * rowsPerChunk, r1 = min(r0 + rowsPerChunk, L);
  const int m0 = (warp & 3) * (D / 4), n0 = (warp >> 2) * (D / 2);
  float acc[MT][NT][4];
#pragma unroll
  for (int a = 0; a < MT; ++a)
#pragma unroll
    for (int x = 0; x < NT; ++x) acc[a][x][0] = acc[a][x][1] = acc[a][x][2] = acc[a][x][3] = 0.f;
  double ksum = 0;
  for (int t0 = r0; t0 < r1; t0 += BM) {
    for (int c = tid; c < BM * (D / 8); c += 256) {
      const int r = c / (D / 8), col = (c % (D / 8)) * 8, g = t0 + r;
      sp_cp16(&sV[r * STR + col], V + base + (long long)min(g, L - 1) * ld + col, g < r1);
    }
    sp_commit();
    for (int r = warp; r < BM; r += 8) {  // φ(k) of row t0 + r; zeros past the chunk
      const int g = t0 + r;
      float v[NE], m = -INFINITY, s = 0.f;
#pragma unroll
      for (int e = 0; e < NE; ++e) {
        v[e] = g < r1 ? bf2f(K[base + (long long)g * ld + lane + 32 * e]) : 0.f;
        m = fmaxf(m, v[e]);
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
#pragma unroll
      for (int e = 0; e < NE; ++e) {
        v[e] = expf(v[e] - m);
        s += v[e];
      }
      s = warp_sum(s);
#pragma unroll
      for (int e = 0; e < NE; ++e) sK[r * STR + lane + 32 * e] = g < r1 ? f2bf(v[e] / s) : (bf16)0;
    }
    sp_wait_all();
    __syncthreads();
    if (tid < D)
      for (int r = 0; r < BM; ++r) ksum += (double)bf2f(sK[r * STR + tid]);
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) {
      u32 af[MT][4];
#pragma unroll
      for (int a = 0; a < MT; ++a)  // A[m = c1][k = l] from φ(k) stored [l][c1]: transposed loads
        sp_ldsm_x4_t(af[a], &sK[(kk * 16 + (lane & 7) + (lane >> 4) * 8) * STR + m0 + a * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
      for (int dp = 0; dp < NT / 2; ++dp) {
        u32 bb[4];
        sp_ldsm_x4_t(bb, &sV[(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STR + n0 + dp * 16 + (lane >> 4) * 8]);
#pragma unroll
        for (int a = 0; a < MT; ++a) {
          sp_mma_bf16(acc[a][2 * dp], af[a], bb[0], bb[1]);
          sp_mma_bf16(acc[a][2 * dp + 1], af[a], bb[2], bb[3]);
        }
      }
    }
    __syncthreads();
  }
  const long long bh = (long long)b * H + h;
  if (tid < D) atomicAdd(&ks64[bh * D + tid], ksum);
  float* kv = kvacc + bh * D * D;
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int a = 0; a < MT; ++a)
#pragma unroll
    for (int x = 0; x < NT; ++x) {
      const int c1 = m0 + a * 16 + g, c2 = n0 + x * 8 + 2 * t4;  // stored transposed: [c2][c1]
      atomicAdd(&kv[c2 * D + c1], acc[a][x][0]);
      atomicAdd(&kv[(c2 + 1) * D + c1], acc[a][x][1]);
      atomicAdd(&kv[c2 * D + c1 + 8], acc[a][x][2]);
      atomicAdd(&kv[(c2 + 1) * D + c1 + 8], acc[a][x][3]);
    }
}

// Step 2: KVᵀ and ks to bf16 as the reference stores them: kvt = bf16(kvacc),
// ks = bf16(float(ks64)). grid (B·H), 256 threads.
extern "C" __global__ void sla_lin_finish_kernel(bf16* kvt, float* ks, const float* kvacc, const double* ks64, int D) {
  const long long bh = blockIdx.x;
  for (int i = threadIdx.x; i < D * D; i += 256) kvt[bh * D * D + i] = f2bf(kvacc[bh * D * D + i]);
  if (threadIdx.x < D) ks[bh * D + threadIdx.x] = rbf((float)ks64[bh * D + threadIdx.x]);
}

// Step 3: per (128 rows, head, batch): φ(q) (one warp per row, as
// sla_featmap_kernel) into shared memory with the row's denominator dn =
// bf16(1e-5 + bf16(Σ_c bf16(φ(q)·ks))) (float64 sum), num = φ(q)·KV on
// mma.sync, o = bf16(bf16(num)/dn) kept in registers as the A fragments of
// proj_l, ol = bf16(o·Wᵀ + bias) written to [B, L, H·D]. W [D, D] and
// bias [D] bf16 (bias may be null). grid (ceil(L/128), H, B), 256 threads.
template <int D>
__device__ __forceinline__ void sla_lin_out(bf16* ol, const bf16* __restrict__ Q, const bf16* __restrict__ kvt,
                                            const float* __restrict__ ks, const bf16* __restrict__ W,
                                            const bf16* __restrict__ bias, int L, int H) {
  constexpr int BM = 128, STR = D + 8, NE = D / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = (bf16*)smem;        // [BM][STR] φ(q)
  bf16* sKV = sQ + BM * STR;     // [D][STR] KVᵀ (rows c2)
  bf16* sW = sKV + D * STR;      // [D][STR] W (rows n)
  float* sdn = (float*)(sW + D * STR);  // [BM]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int q0 = blockIdx.x * BM, h = blockIdx.y, b = blockIdx.z;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const long long bh = (long long)b * H + h;
  for (int c = tid; c < D * (D / 8); c += 256) {
    const int r = c / (D / 8), col = (c % (D / 8)) * 8;
    sp_cp16(&sKV[r * STR + col], kvt + bh * D * D + r * D + col, true);
    sp_cp16(&sW[r * STR + col], W + r * D + col, true);
  }
  sp_commit();
  float ksv[NE];
#pragma unroll
  for (int e = 0; e < NE; ++e) ksv[e] = ks[bh * D + lane + 32 * e];
  for (int r = warp; r < BM; r += 8) {
    const int gq = q0 + r;
    float v[NE], m = -INFINITY, s = 0.f;
#pragma unroll
    for (int e = 0; e < NE; ++e) {
      v[e] = gq < L ? bf2f(Q[base + (long long)gq * ld + lane + 32 * e]) : 0.f;
      m = fmaxf(m, v[e]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
#pragma unroll
    for (int e = 0; e < NE; ++e) {
      v[e] = expf(v[e] - m);
      s += v[e];
    }
    s = warp_sum(s);
    double den = 0;
#pragma unroll
    for (int e = 0; e < NE; ++e) {
      const bf16 f = f2bf(v[e] / s);
      sQ[r * STR + lane + 32 * e] = f;
      den += (double)rbf(bf2f(f) * ksv[e]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) den += __shfl_xor_sync(0xffffffffu, den, o);
    if (lane == 0) sdn[r] = rbf(1e-5f + rbf((float)den));
  }
  sp_wait_all();
  __syncthreads();
  float acc[D / 8][4];
#pragma unroll
  for (int x = 0; x < D / 8; ++x) acc[x][0] = acc[x][1] = acc[x][2] = acc[x][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    u32 af[4];
    sp_ldsm_x4(af, &sQ[(warp * 16 + (lane & 15)) * STR + kk * 16 + (lane >> 4) * 8]);
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      u32 bb[4];
      sp_ldsm_x4(bb, &sKV[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * STR + kk * 16 + ((lane >> 3) & 1) * 8]);
      sp_mma_bf16(acc[2 * np], af, bb[0], bb[1]);
      sp_mma_bf16(acc[2 * np + 1], af, bb[2], bb[3]);
    }
  }
  const float dn0 = sdn[warp * 16 + g], dn1 = sdn[warp * 16 + g + 8];
  u32 of[D / 16][4];  // o as the A fragments of proj_l (accumulator layout = A layout)
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    of[kk][0] = pack_bf2(rbf(acc[2 * kk][0]) / dn0, rbf(acc[2 * kk][1]) / dn0);
    of[kk][1] = pack_bf2(rbf(acc[2 * kk][2]) / dn1, rbf(acc[2 * kk][3]) / dn1);
    of[kk][2] = pack_bf2(rbf(acc[2 * kk + 1][0]) / dn0, rbf(acc[2 * kk + 1][1]) / dn0);
    of[kk][3] = pack_bf2(rbf(acc[2 * kk + 1][2]) / dn1, rbf(acc[2 * kk + 1][3]) / dn1);
  }
#pragma unroll
  for (int x = 0; x < D / 8; ++x) acc[x][0] = acc[x][1] = acc[x][2] = acc[x][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      u32 bb[4];
      sp_ldsm_x4(bb, &sW[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * STR + kk * 16 + ((lane >> 3) & 1) * 8]);
      sp_mma_bf16(acc[2 * np], of[kk], bb[0], bb[1]);
      sp_mma_bf16(acc[2 * np + 1], of[kk], bb[2], bb[3]);
    }
  }
  const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
#pragma unroll
  for (int x = 0; x < D / 8; ++x) {
    const int col = x * 8 + 2 * t4;
    const float b0 = bias ? bf2f(bias[col]) : 0.f, b1 = bias ? bf2f(bias[col + 1]) : 0.f;
    if (r0 < L) *(u32*)&ol[base + (long long)r0 * ld + col] = pack_bf2(acc[x][0] + b0, acc[x][1] + b1);
    if (r1 < L) *(u32*)&ol[base + (long long)r1 * ld + col] = pack_bf2(acc[x][2] + b0, acc[x][3] + b1);
  }
}

#define SLA_LIN(D)                                                                                               \
  extern "C" __global__ void __launch_bounds__(256) sla_lin_kv_d##D(float* kvacc, double* ks64, const bf16* K,  \
                                                                    const bf16* V, int L, int H, int rows) {     \
    sla_lin_kv<D>(kvacc, ks64, K, V, L, H, rows);                                                               \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(256) sla_lin_out_d##D(                                           \
      bf16* ol, const bf16* Q, const bf16* kvt, const float* ks, const bf16* W, const bf16* bias, int L, int H) { \
    sla_lin_out<D>(ol, Q, kvt, ks, W, bias, L, H);                                                              \
  }
SLA_LIN(128)
SLA_LIN(64)
