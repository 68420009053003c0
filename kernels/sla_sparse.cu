// sla_sparse.cu: the sparse branch of SLA (docs/NUMERICS.md §6.2),
// block-sparse flash attention over the key blocks that sla_select_kernel
// listed per query block (lut, cnt), with the linear branch's output added
// in the epilogue: out = bf16(bf16(o_s) + o_l). Head dim D (128 or 64); q/k/v/o_l
// [B, L, H·D]; one CTA per (query block, head, batch), 16 query rows per
// warp, key blocks through shared memory with cp.async (two stages), the
// same tile structure as attention.cu.
#include "mma.cuh"

// SLA (Triton kernel semantics): s = (q·k)·scale in float32 (scale =
// d^-0.5·log2 e), online softmax p = exp2(s − m), o += bf16(p)·v, o/l.
template <int NW, int BK, int D>
__device__ __forceinline__ void sla_sparse(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                           const bf16* __restrict__ V, const bf16* __restrict__ OL, void* out, int odt,
                                           const int* __restrict__ lut, const int* __restrict__ cnt, int L, int H,
                                           int Qb, int Kb, float scale) {
  constexpr int BM = 16 * NW, STR = D + 8, NT = NW * 32, CH = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = (bf16*)smem;
  bf16* sK = sQ + BM * STR;      // two stages of [BK][STR]
  bf16* sV = sK + 2 * BK * STR;  // two stages of [BK][STR]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t4 = lane & 3;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = i * BM;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const long long row = ((long long)b * H + h) * Qb + i;
  const int* lr = lut + row * Kb;
  const int n = cnt[row];

  for (int c = tid; c < BM * CH; c += NT) {
    const int r = c / CH, col = (c % CH) * 8, g = q0 + r;
    sp_cp16(&sQ[r * STR + col], Q + base + (long long)min(g, L - 1) * ld + col, g < L);
  }
  auto load_kv = [&](int j, int st) {
    bf16* dk = sK + st * BK * STR;
    bf16* dv = sV + st * BK * STR;
    for (int c = tid; c < BK * CH; c += NT) {
      const int r = c / CH, col = (c % CH) * 8, g = j * BK + r;
      const long long off = base + (long long)min(g, L - 1) * ld + col;
      sp_cp16(&dk[r * STR + col], K + off, g < L);
      sp_cp16(&dv[r * STR + col], V + off, g < L);
    }
  };
  if (n > 0) load_kv(lr[0], 0);
  sp_commit();
  sp_wait_all();
  __syncthreads();

  u32 qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    sp_ldsm_x4(qf[kk], &sQ[(warp * 16 + (lane & 15)) * STR + kk * 16 + (lane >> 4) * 8]);
  float o[D / 8][4];
#pragma unroll
  for (int x = 0; x < D / 8; ++x) o[x][0] = o[x][1] = o[x][2] = o[x][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // rows g and g+8 of this warp

  for (int it = 0; it < n; ++it) {
    const int st = it & 1, j = lr[it];
    if (it + 1 < n) load_kv(lr[it + 1], st ^ 1);
    sp_commit();
    const bf16* k = sK + st * BK * STR;
    const bf16* v = sV + st * BK * STR;
    float s[BK / 8][4];
#pragma unroll
    for (int x = 0; x < BK / 8; ++x) s[x][0] = s[x][1] = s[x][2] = s[x][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < BK / 16; ++np) {
        u32 bb[4];
        sp_ldsm_x4(bb, &k[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * STR + kk * 16 + ((lane >> 3) & 1) * 8]);
        sp_mma_bf16(s[2 * np], qf[kk], bb[0], bb[1]);
        sp_mma_bf16(s[2 * np + 1], qf[kk], bb[2], bb[3]);
      }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < BK / 8; ++nt) {
      const int key = j * BK + nt * 8 + 2 * t4;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = (key + (e & 1) < L) ? __fmul_rn(s[nt][e], scale) : -INFINITY;
      }
      mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
      mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
    const float a0 = exp2f(m0 - n0), a1 = exp2f(m1 - n1);  // 0 on the first block (m = -inf)
    m0 = n0;
    m1 = n1;
    float r0 = 0.f, r1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < BK / 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - n0);
      s[nt][1] = exp2f(s[nt][1] - n0);
      s[nt][2] = exp2f(s[nt][2] - n1);
      s[nt][3] = exp2f(s[nt][3] - n1);
      r0 += s[nt][0] + s[nt][1];
      r1 += s[nt][2] + s[nt][3];
    }
    l0 = l0 * a0 + r0;
    l1 = l1 * a1 + r1;
#pragma unroll
    for (int x = 0; x < D / 8; ++x) {
      o[x][0] *= a0;
      o[x][1] *= a0;
      o[x][2] *= a1;
      o[x][3] *= a1;
    }
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      u32 a[4] = {pack_bf2(s[2 * kk][0], s[2 * kk][1]), pack_bf2(s[2 * kk][2], s[2 * kk][3]),
                  pack_bf2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        u32 bb[4];
        sp_ldsm_x4_t(bb, &v[(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STR + dp * 16 + (lane >> 4) * 8]);
        sp_mma_bf16(o[2 * dp], a, bb[0], bb[1]);
        sp_mma_bf16(o[2 * dp + 1], a, bb[2], bb[3]);
      }
    }
    sp_wait_all();
    __syncthreads();
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const int r0 = q0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
  const long long ob = (long long)b * L * ld + (long long)h * D;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + 2 * t4;
    if (r0 < L) sp_store2(out, odt, OL, ob + (long long)r0 * ld + col, o[nt][0] / l0, o[nt][1] / l0);
    if (r1 < L) sp_store2(out, odt, OL, ob + (long long)r1 * ld + col, o[nt][2] / l1, o[nt][3] / l1);
  }
}

// sla_sparse_q<BQ>_k<BK> (head dim 128) and sla_sparse_d64_q<BQ>_k<BK>.
#define SLA_SPARSE(BQ, BK, D, NAME)                                                                             \
  extern "C" __global__ void __launch_bounds__(BQ * 2) NAME(                                                     \
      const bf16* Q, const bf16* K, const bf16* V, const bf16* OL, void* out, int odt, const int* lut,          \
      const int* cnt, int L, int H, int Qb, int Kb, float scale) {                                              \
    sla_sparse<BQ / 16, BK, D>(Q, K, V, OL, out, odt, lut, cnt, L, H, Qb, Kb, scale);                           \
  }
#define SLA_SPARSE_D(BQ, BK)                               \
  SLA_SPARSE(BQ, BK, 128, sla_sparse_q##BQ##_k##BK)        \
  SLA_SPARSE(BQ, BK, 64, sla_sparse_d64_q##BQ##_k##BK)
SLA_SPARSE_D(128, 64)
SLA_SPARSE_D(64, 128)
SLA_SPARSE_D(128, 128)
SLA_SPARSE_D(64, 64)
