// attention.cu: dense FlashAttention-2-style forward on tensor cores.
// bf16 q/k/v [L, heads*D] (row-major, head h at columns h*D..), fp32
// accumulation, online softmax in the exp2 domain, bf16 output.
// One block handles BM = 16*NW query rows of one head; each warp owns 16 rows
// and streams 64-key tiles of K and V through shared memory (cp.async, two
// stages). sla_sparse.cu and sla_sage.cuh run the same loop over a block list,
// with the same softmax and P·V helpers (softmax_mma.cuh).
#include "softmax_mma.cuh"

template <int D, int NW>
__device__ __forceinline__ void flash_fwd(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                          const bf16* __restrict__ V, bf16* __restrict__ O, int Lq, int Lk,
                                          int H, float scale_log2) {
  // blockIdx.z walks leading (batch) dims: q/o batches are Lq rows apart, k/v Lk.
  {
    const long long W = (long long)H * D, z = blockIdx.z;
    Q += z * Lq * W;
    O += z * Lq * W;
    K += z * Lk * W;
    V += z * Lk * W;
  }
  constexpr int BM = 16 * NW, BN = 64, STR = D + 8;  // +8 bf16 per row: ldmatrix rows hit distinct banks
  constexpr int NT = NW * 32;
  constexpr int CH = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = (bf16*)smem;
  bf16* sK = sQ + BM * STR;      // two stages of [BN][STR]
  bf16* sV = sK + 2 * BN * STR;  // two stages of [BN][STR]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int q0 = blockIdx.x * BM, h = blockIdx.y;
  const long long ld = (long long)H * D;
  const bf16* Qh = Q + (long long)h * D;
  const bf16* Kh = K + (long long)h * D;
  const bf16* Vh = V + (long long)h * D;

  for (int c = tid; c < BM * CH; c += NT) {
    int r = c / CH, col = (c % CH) * 8, g = q0 + r;
    sp_cp16(&sQ[r * STR + col], Qh + (long long)min(g, Lq - 1) * ld + col, g < Lq);
  }
  auto load_kv = [&](int j, int st) {
    bf16* dk = sK + st * BN * STR;
    bf16* dv = sV + st * BN * STR;
    for (int c = tid; c < BN * CH; c += NT) {
      int r = c / CH, col = (c % CH) * 8, g = j * BN + r;
      long long off = (long long)min(g, Lk - 1) * ld + col;
      sp_cp16(&dk[r * STR + col], Kh + off, g < Lk);
      sp_cp16(&dv[r * STR + col], Vh + off, g < Lk);
    }
  };
  load_kv(0, 0);
  sp_commit();
  sp_wait_all();
  __syncthreads();

  // Q fragments stay in registers for the whole key loop.
  u32 qf[D / 16][4];
  sp_load_q<D, STR>(qf, sQ, warp, lane);

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  // Running max and sum of rows g and g+8 of this warp (declared in this
  // order, NVVM numbers the loop's registers as before the shared helpers).
  float l1 = 0.f, l0 = 0.f, m1 = -INFINITY, m0 = -INFINITY;
  const int t4 = lane & 3;

  const int nkb = (Lk + BN - 1) / BN;
  for (int j = 0; j < nkb; ++j) {
    const int st = j & 1;
    if (j + 1 < nkb) load_kv(j + 1, st ^ 1);  // overlaps with this tile's math
    sp_commit();
    const bf16* k = sK + st * BN * STR;
    const bf16* v = sV + st * BN * STR;

    float s[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
    sp_qk_bf16<D, BN, STR>(s, qf, k, lane);
    if ((j + 1) * BN > Lk) {  // mask keys past the end
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt) {
        int key = j * BN + nt * 8 + 2 * t4;
        if (key >= Lk) s[nt][0] = s[nt][2] = -INFINITY;
        if (key + 1 >= Lk) s[nt][1] = s[nt][3] = -INFINITY;
      }
    }
    // Online softmax: m is kept in scaled log2 units, p = 2^(s·scale·log2e - m).
    sp_softmax_step(s, o, m0, m1, l0, l1, sp_scores_as_is(), [=](float x) { return x * scale_log2; });
    sp_pv_bf16<D, BN, STR>(o, s, v, lane);
    sp_wait_all();
    __syncthreads();
  }

  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  const int r0 = q0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
  bf16* Oh = O + (long long)h * D;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    int col = nt * 8 + 2 * t4;
    if (r0 < Lq) *(u32*)&Oh[(long long)r0 * ld + col] = pack_bf2(o[nt][0] * i0, o[nt][1] * i0);
    if (r1 < Lq) *(u32*)&Oh[(long long)r1 * ld + col] = pack_bf2(o[nt][2] * i1, o[nt][3] * i1);
  }
}

#define FLASH(D, NW)                                                                                           \
  extern "C" __global__ void __launch_bounds__(NW * 32) flash_d##D##_w##NW(                                   \
      const bf16* Q, const bf16* K, const bf16* V, bf16* O, int Lq, int Lk, int H, float scale_log2) {        \
    flash_fwd<D, NW>(Q, K, V, O, Lq, Lk, H, scale_log2);                                                        \
  }
FLASH(128, 4)
FLASH(128, 8)
FLASH(64, 4)
FLASH(64, 8)

// Float32 attention (the reference's fp32 mode and tests; not a fast path):
// one warp per query row, online softmax over single keys in float32. Each
// lane holds dims lane, lane+32, ... of q and of the accumulator (d ≤ 256).
// grid (ceil(Lq/4), H, B), 128 threads.
extern "C" __global__ void attention_f32_kernel(const float* __restrict__ Q, const float* __restrict__ K,
                                                const float* __restrict__ V, float* __restrict__ O, int Lq, int Lk,
                                                int H, int D, float scale) {
  const int lane = threadIdx.x & 31, row = blockIdx.x * 4 + (threadIdx.x >> 5), h = blockIdx.y, z = blockIdx.z;
  if (row >= Lq) return;
  const long long W = (long long)H * D;
  const float* q = Q + ((long long)z * Lq + row) * W + (long long)h * D;
  const float* k = K + (long long)z * Lk * W + (long long)h * D;
  const float* v = V + (long long)z * Lk * W + (long long)h * D;
  float qv[8], acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    int c = lane + 32 * i;
    qv[i] = c < D ? q[c] : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = 0; j < Lk; ++j) {
    const float* kr = k + (long long)j * W;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      int c = lane + 32 * i;
      if (c < D) s = fmaf(qv[i], kr[c], s);
    }
    s = warp_sum(s) * scale;
    const float mn = fmaxf(m, s), a = expf(m - mn), p = expf(s - mn);
    m = mn;
    l = l * a + p;
    const float* vr = v + (long long)j * W;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      int c = lane + 32 * i;
      if (c < D) acc[i] = fmaf(p, vr[c], acc[i] * a);
    }
  }
  float* o = O + ((long long)z * Lq + row) * W + (long long)h * D;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    int c = lane + 32 * i;
    if (c < D) o[c] = acc[i] / l;
  }
}
