// sla_linear_sm90a.cu: the last step of the fused SLA linear branch
// (sla_lin_out_body, sla_linear.cuh: φ(q)·KV, the normalisation, proj_l)
// with its two small GEMMs on wgmma instead of mma.sync: a warpgroup's 64
// rows read each KVᵀ and W operand from shared memory once, where mma.sync
// reads it once per warp of 16 rows. A comes from registers (φ(q) by
// ldmatrix, then o, which stays in registers as with mma.sync: the
// accumulator layout is the A layout), B = KVᵀ or W from 128-byte-swizzled
// tiles. Same roundings as the mma.sync builds.
#include "attention_wgmma.cuh"
#include "sla_linear.cuh"

// The wgmma GEMMs of step 3: MR must be 1 (a warpgroup's 4 warps hold its
// 64 rows, 16 each) and the block whole warpgroups.
template <int D, int MR>
struct SlaLinWgmma {
  static_assert(MR == 1, "a wgmma warp holds one m-tile");
  static constexpr int kAlign = TD_SMEM_ALIGN, DC = D / 8, STR = D + 8, kOpBytes = 2 * D * D * 2;
  // KVᵀ [c2][c1] and W [n][k]: K-major B operands, swizzled (tile_off).
  static __device__ __forceinline__ void load(unsigned char* ops, const bf16* kvt, const bf16* W, int tid, int nth) {
    const u32 a = sp_smem_addr(ops);
    for (int c = tid; c < D * DC; c += nth) {
      const int r = c / DC, c8 = c % DC;
      const u32 off = tile_off<true>(r, c8, D, DC);
      cp16(a + off, kvt + r * D + c8 * 8, true);
      cp16(a + D * D * 2 + off, W + r * D + c8 * 8, true);
    }
  }
  // cp.async writes, then wgmma (async proxy) reads.
  static __device__ __forceinline__ void fence() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
  static __device__ __forceinline__ void run(float (&pa)[MR][D / 2], const bf16* mine, const float* dn,
                                             const unsigned char* ops, int lane) {
    const u32 kvA = sp_smem_addr(ops), wA = kvA + D * D * 2;
    const int g = lane >> 2;
    u32 af[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) sp_ldsm_x4(af[kk], &mine[(lane & 15) * STR + kk * 16 + (lane >> 4) * 8]);
    float acc[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc[i] = 0.f;
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(acc[i]);
    hp_wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) pv_mma<D>(acc, af[kk], tile_desc<true>(kvA, 0, kk, D, DC, 0));
    hp_wg_commit();
    hp_wg_wait<0>();
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(acc[i]);
    u32 of[D / 16][4];
    sla_lin_norm_frags<D>(of, acc, dn[g], dn[g + 8]);
    float* p = pa[0];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) p[i] = 0.f;
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(p[i]);
    hp_wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) pv_mma<D>(p, of[kk], tile_desc<true>(wA, 0, kk, D, DC, 0));
    hp_wg_commit();
    hp_wg_wait<0>();
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(p[i]);
  }
};

#define SLA_LIN_OUT_WG(D, NW, S)                                                                                      \
  extern "C" __global__ void __launch_bounds__(32 * NW) sla_lin_out_wg_d##D##_w##NW##_s##S(                          \
      bf16* ol, const bf16* Q, const bf16* kvt, const float* ks, const bf16* W, const bf16* bias, int L, int H,       \
      int tilesPerBlock) {                                                                                            \
    sla_lin_out_body<D, NW, S, 1, SlaLinWgmma<D, 1>>(ol, Q, kvt, ks, W, bias, L, H, tilesPerBlock);                   \
  }
SLA_LIN_OUT_WG(128, 8, 3)
SLA_LIN_OUT_WG(128, 4, 2)
SLA_LIN_OUT_WG(64, 8, 3)

// The wgmma GEMM of step 1 (sla_lin_kv_body): warpgroup g owns KV's c1 rows
// 64g.., all D columns (so D/64 warpgroups); A = φ(k)ᵀ from registers
// (transposed ldmatrix of the padded φ(k) tile, warp w holding c1 rows
// 16w..), B = the v tile read in place: 128-byte-swizzled halves of 64
// columns, MN-major (transpose bit set, vn_desc). Each v byte is read from
// shared memory once per warpgroup instead of once per warp.
template <int D>
struct SlaLinKvWgmma {
  static constexpr int kThreads = 128 * (D / 64), kAlign = TD_SMEM_ALIGN, DC = D / 8, STR = D + 8;
  static constexpr int kVBytes = SLA_LIN_KV_ROWS * D * 2;
  static constexpr int kPhiUnroll = 2;  // row pairs of φ interleaved
  float acc[D / 2];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc[i] = 0.f;
  }
  static __device__ __forceinline__ u32 voff(int r, int c8) { return tile_off<true>(r, c8, SLA_LIN_KV_ROWS, DC); }
  // cp.async writes, then wgmma (async proxy) reads.
  static __device__ __forceinline__ void fence() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
  __device__ __forceinline__ void tile(const bf16* tk, const unsigned char* tvb, int lane, int warp) {
    constexpr int KS = SLA_LIN_KV_ROWS / 16;
    u32 af[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)  // A[m = c1][k = l] from φ(k) stored [l][c1]: transposed loads
      sp_ldsm_x4_t(af[kk], &tk[(kk * 16 + (lane & 7) + (lane >> 4) * 8) * STR + warp * 16 + ((lane >> 3) & 1) * 8]);
    const u32 vb = sp_smem_addr(tvb);
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(acc[i]);
    hp_wg_fence();
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      const u64 db = vn_desc<SLA_LIN_KV_ROWS>(vb, kk);
      if constexpr (D == 128)
        hp_wgmma_rs_n128_bf16_tb(acc, af[kk], db);
      else
        hp_wgmma_rs_n64_bf16_tb(acc, af[kk], db);
    }
    hp_wg_commit();
    hp_wg_wait<0>();  // before the stage is refilled and af rewritten
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(acc[i]);
  }
  __device__ __forceinline__ void store(float* kv, int lane, int warp) const {
    const int c1 = warp * 16 + (lane >> 2), t4 = lane & 3;
#pragma unroll
    for (int x = 0; x < D / 8; ++x) {
      const int c2 = x * 8 + 2 * t4;  // stored transposed: [c2][c1]
      kv[c2 * D + c1] = acc[4 * x];
      kv[(c2 + 1) * D + c1] = acc[4 * x + 1];
      kv[c2 * D + c1 + 8] = acc[4 * x + 2];
      kv[(c2 + 1) * D + c1 + 8] = acc[4 * x + 3];
    }
  }
};

#define SLA_LIN_KV_WG(D)                                                                                              \
  extern "C" __global__ void __launch_bounds__(128 * (D / 64), 2)                                                     \
      sla_lin_kv_wg_d##D(float* kvpart, double* kspart, const bf16* K, const bf16* V, int L, int H, int rows) {       \
    sla_lin_kv_body<D, SlaLinKvWgmma<D>>(kvpart, kspart, K, V, L, H, rows);                                           \
  }
SLA_LIN_KV_WG(128)
SLA_LIN_KV_WG(64)
