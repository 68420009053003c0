// sla_sparse.cu: the sparse branch of SLA (docs/NUMERICS.md §6.2),
// block-sparse flash attention over the key blocks that sla_select_kernel
// listed per query block (lut, cnt), with the linear branch's output added
// in the epilogue: out = bf16(bf16(o_s) + o_l). Head dim D (128 or 64); q/k/v/o_l
// [B, L, H·D]; one CTA per (query block, head, batch), 16 query rows per
// warp, key blocks through shared memory with cp.async (two stages), the
// same tile structure and softmax/P·V helpers (softmax_mma.cuh) as
// attention.cu.
#include "softmax_mma.cuh"

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
  sp_load_q<D, STR>(qf, sQ, warp, lane);
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
    sp_qk_bf16<D, BK, STR>(s, qf, k, lane);
    // s = (q·k)·scale rounded to float32, keys past L masked; already in
    // exp2 units, so the step's own scaling is the identity.
    sp_softmax_step(
        s, o, m0, m1, l0, l1,
        [&](int nt, int e) {
          const int key = j * BK + nt * 8 + 2 * t4;
          return (key + (e & 1) < L) ? __fmul_rn(s[nt][e], scale) : -INFINITY;
        },
        [](float x) { return x; });
    sp_pv_bf16<D, BK, STR>(o, s, v, lane);
    sp_wait_all();
    __syncthreads();
  }

  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
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
