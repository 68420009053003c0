// attention_wgmma.cuh: the pieces the Hopper (wgmma, sm_90a) dense
// attention kernels share; same math as attention.cu: bf16 in, fp32
// accumulation, online softmax in exp2 units. Three families use it, one
// file each (backend/cuda/attention_select.go picks the variant):
//   attention_tma_sm90a.cu     warp-specialised TMA kernels (flash_tma): the
//                              defaults "w2tivk128" (head dim 128) and "w3t"
//                              (head dim 64);
//   attention_persist_sm90a.cu the same consumer in a persistent kernel
//                              (flash_tma_p, "w2tivk128p": the default for
//                              the short cross-attention);
//   attention_cpasync_sm90a.cu cp.async kernels (flash_wgmma, "w3s3"), for
//                              drivers without tensor maps.
//
// S = Q·Kᵀ runs as m64nBNk16 with both operands in shared memory; P goes
// back in registers (the accumulator layout equals the A-fragment layout)
// for O += P·V as m64nDk16 with B = V (or Vᵀ) in shared memory, so P never
// touches shared memory. Shared-memory tiles use the 128-byte swizzle
// (about 25% faster than the no-swizzle "core matrix" layout, which the
// templates still take: docs/PERF.md). Shared TMA/mbarrier/wgmma helpers
// (hp_*) come from hopper.cuh; the softmax step, O rescale, P packing and
// V descriptor, shared with sla_sparse_sm90a.cu, from softmax_wgmma.cuh; the
// shared-memory constants (TD_*) from the generated smem.cuh
// (kernels/smem.go).
#pragma once
#include "softmax_wgmma.cuh"

__device__ __forceinline__ void cp16(u32 dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(pred ? 16 : 0));
}

// Byte offset of 16-byte chunk c8 of row r in a core-matrix tile of kc8
// chunks per row.
__device__ __forceinline__ u32 cm_off(int r, int c8, int kc8) { return ((r >> 3) * kc8 + c8) * 128 + (r & 7) * 16; }

// Matrix descriptor: start address, leading (K) and stride (M/N) byte
// offsets; swap exchanges the two fields (the backend checks at start-up
// which reading the hardware uses and keeps the right one).
__device__ __forceinline__ u64 make_desc(u32 addr, u32 lbo, u32 sbo, int swap) {
  if (swap) {
    u32 t = lbo;
    lbo = sbo;
    sbo = t;
  }
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)((lbo >> 4) & 0x3FFF) << 16) | ((u64)((sbo >> 4) & 0x3FFF) << 32);
}

// 128-byte-swizzle layout (SW): K-major rows of 64 bf16 (128 B); chunk c of
// row r sits at chunk c ^ (r % 8); a D-wide tile is stored as D/64 halves of
// [R rows][128 B]; 8-row groups are 1024 B apart. The tile base must be
// 1024-byte aligned. Offset of 16-byte chunk c8 of row r in an R-row tile
// with kc8 chunks per row:
template <bool SW>
__device__ __forceinline__ u32 tile_off(int r, int c8, int R, int kc8) {
  if (SW) return (c8 >> 3) * R * 128 + r * 128 + (((c8 & 7) ^ (r & 7)) << 4);
  return cm_off(r, c8, kc8);
}

// Descriptor of the 64-row (or N-row) operand starting at row0 of an R-row
// tile, for the k16 step kk.
template <bool SW>
__device__ __forceinline__ u64 tile_desc(u32 base, int row0, int kk, int R, int kc8, int swap) {
  if (SW) return hp_desc_sw128_rows(base, row0, kk, R);
  return make_desc(base + (row0 >> 3) * kc8 * 128 + kk * 256, 128, kc8 * 128, swap);
}

// d[0..31] += A(smem desc)·B(smem desc), m64n64k16, K-major A and B.
__device__ __forceinline__ void wgmma_ss_n64(float* d, u64 da, u64 db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(accumulate));
}

// d[0..63] += A(registers, mma.sync A-fragment layout per warp)·B(smem desc), m64n128k16.
__device__ __forceinline__ void wgmma_rs_n128(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// d[0..31] += A(registers, mma.sync A-fragment layout per warp)·B(smem desc), m64n64k16.
__device__ __forceinline__ void wgmma_rs_n64(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <int BN>
__device__ __forceinline__ void s_mma(float* s, u64 da, u64 db, int acc);
template <>
__device__ __forceinline__ void s_mma<64>(float* s, u64 da, u64 db, int acc) { wgmma_ss_n64(s, da, db, acc); }
template <>
__device__ __forceinline__ void s_mma<128>(float* s, u64 da, u64 db, int acc) { hp_wgmma_ss_n128_bf16(s, da, db, acc); }

template <int D>
__device__ __forceinline__ void pv_mma(float* o, const u32* a, u64 db);
template <>
__device__ __forceinline__ void pv_mma<128>(float* o, const u32* a, u64 db) { wgmma_rs_n128(o, a, db); }
template <>
__device__ __forceinline__ void pv_mma<64>(float* o, const u32* a, u64 db) { wgmma_rs_n64(o, a, db); }

// Issues S = Q·K(rows k_row0..+63)ᵀ for this warpgroup; the caller waits.
template <int D, int BM, int BN, bool SW>
__device__ __forceinline__ void qk_issue(float* s, u32 sQ, u32 kbase, int k_row0, int wg, int swap) {
  constexpr int SN = 64, DC = D / 8;
#pragma unroll
  for (int i = 0; i < SN / 2; ++i) s[i] = 0.f;
  hp_wg_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    s_mma<SN>(s, tile_desc<SW>(sQ, wg * 64, kk, BM, DC, swap), tile_desc<SW>(kbase, k_row0, kk, BN, DC, swap), kk > 0);
  hp_wg_commit();
}

// Masked online softmax of a finished S (keys key0..key0+SN-1), in place:
// s becomes the probabilities; updates the row maxima and sums and returns
// the factors a0, a1 that O must be scaled by before P·V is added.
template <int SN>
__device__ __forceinline__ void softmax_s(float* s, float& m0, float& m1, float& l0, float& l1, float& a0, float& a1,
                                          int key0, int Lk, float scale_log2, int t4) {
  if (key0 + SN > Lk) {  // mask keys past the end
#pragma unroll
    for (int c = 0; c < SN / 8; ++c) {
      int key = key0 + c * 8 + 2 * t4;
      if (key >= Lk) s[4 * c] = s[4 * c + 2] = -INFINITY;
      if (key + 1 >= Lk) s[4 * c + 1] = s[4 * c + 3] = -INFINITY;
    }
  }
  softmax_rows<SN, true>(s, m0, m1, l0, l1, a0, a1, scale_log2);
}

// Masked online softmax of a finished S (keys key0..key0+63), rescale of O,
// then issues O += P·V(sub-tile u of the stage's Vᵀ); the caller waits. The
// cp.async kernels' step; the TMA consumers call the same three pieces.
template <int D, int BN, bool SW>
__device__ __forceinline__ void softmax_pv(float* s, float* o, float& m0, float& m1, float& l0, float& l1, u32 vbase,
                                           int u, int key0, int Lk, float scale_log2, int swap, int t4) {
  constexpr int SN = 64, NC = BN / 8;
  float a0, a1;
  softmax_s<SN>(s, m0, m1, l0, l1, a0, a1, key0, Lk, scale_log2, t4);
  rescale_o<D>(o, a0, a1);
  u32 p[SN / 16][4];
  pack_p<SN>(s, p);
#pragma unroll
  for (int i = 0; i < D / 2; ++i) reg_fence(o[i]);
  hp_wg_fence();
#pragma unroll
  for (int kk = 0; kk < SN / 16; ++kk) pv_mma<D>(o, p[kk], tile_desc<SW>(vbase, 0, u * (SN / 16) + kk, D, NC, swap));
  hp_wg_commit();
}

// One warpgroup's work on one shared-memory stage of BN keys (64-key
// sub-tiles): S = Q·Kᵀ, masked online softmax, O += P·V. kbase/vbase are the
// stage's K and Vᵀ tiles, tile_key0 its first key.
template <int D, int BM, int BN, bool SW>
__device__ __forceinline__ void consume_stage(float* o, float& m0, float& m1, float& l0, float& l1, u32 sQ, u32 kbase,
                                              u32 vbase, int wg, int tile_key0, int Lk, float scale_log2, int swap,
                                              int t4) {
  constexpr int SN = 64;
#pragma unroll 1
  for (int u = 0; u < BN / SN; ++u) {
    float s[SN / 2];
    qk_issue<D, BM, BN, SW>(s, sQ, kbase, u * SN, wg, swap);
    hp_wg_wait<0>();
#pragma unroll
    for (int i = 0; i < SN / 2; ++i) reg_fence(s[i]);
    softmax_pv<D, BN, SW>(s, o, m0, m1, l0, l1, vbase, u, tile_key0 + u * SN, Lk, scale_log2, swap, t4);
    hp_wg_wait<0>();
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(o[i]);
  }
}

// ---- TMA + mbarrier producer/consumer version (warp-specialised) ----
// A producer warpgroup (one thread issues the copies) streams Q once and K,
// V (or Vᵀ) tiles through TD_ATTN_TMA_STAGES stages with the bulk tensor
// copy engine; each stage has a "full" barrier (the copy engine completes its byte count) and an
// "empty" barrier (every consumer warp arrives after its P·V finished), so
// the consumer warpgroups never wait on each other at a block barrier.
// Tensor maps use the 128-byte swizzle, the same layout as tile_off<true>.

// Shared-memory stages of the TMA kernels (kernels/smem.go; the 192-key
// variant that needed two is gone).
__host__ __device__ constexpr int tma_stages(int) { return TD_ATTN_TMA_STAGES; }

// Bytes an attention kernel lays out from its aligned base: the 64·NWG-row
// Q tile, NS K and V stages of BN keys, then nbar 8-byte mbarriers. Each
// kernel asserts its layout matches; the host reserves
// kernels.AttnSmemBytes, which TestAttnSmemCoversLayout (backend/cuda)
// checks against this plus the alignment slack.
__host__ __device__ constexpr u32 attn_layout_bytes(int D, int NWG, int BN, int NS, int nbar) {
  return (u32)(64 * NWG * D * 2 + NS * (BN * D * 2 + D * BN * 2) + 8 * nbar);
}

// ---- Options of the TMA consumer loop (flags FL, kernel-name letters) ----
// TF_IWO ("i"): FA3's intra-warpgroup overlap: S_{j+1} is issued before
//   P_j·V_j, and its softmax runs while P_j·V_j is still on the tensor cores
//   (O is rescaled after that MMA finished).
// TF_VN ("v"): V read in its own [keys][D] layout (the copy engine loads it
//   like K; wgmma reads B "MN-major", transpose bit set), so no transposed
//   copy of V is made per call. Keys past Lk of a batch entry other than the
//   last are the next entry's rows (the zero fill starts only past the whole
//   tensor): their P is exactly 0 (ex2 of -inf), so they add nothing unless
//   that V holds Inf/NaN.
// Tried and dropped (docs/PERF.md, "Attention, session 2"): "o" (P_j·V_j and
// S_{j+1} issued back to back), 192-key stages, a warpgroup ping-pong (FA3's
// named-barrier turns), and a quarter of the exp2s as a polynomial on the
// FMA pipe (FA4's trick). Without flags (FL = 0) the TMA kernel runs
// consume_stage on 64-key stages instead of consume_tma.
#define TF_IWO 2
#define TF_VN 4

// O += P·V for one stage of BN keys, V in its own layout (TF_VN).
template <int D, int BN, int FL>
__device__ __forceinline__ void pv_stage(float* o, const u32 (&p)[BN / 16][4], u32 vbase) {
  static_assert((FL & TF_VN) != 0, "consume_tma reads V in place");
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    const u64 db = vn_desc<BN>(vbase, kk);
    if constexpr (D == 128)
      hp_wgmma_rs_n128_bf16_tb(o, p[kk], db);
    else
      hp_wgmma_rs_n64_bf16_tb(o, p[kk], db);
  }
}

// The consumer loop of the flagged TMA variants (FL = TF_IWO | TF_VN, the
// only flags built). Tiles stream
// through NS stages: full[s] at bars + 8s, empty[s] at bars + 8(NS+s).
// g0 is the global number of the item's first tile in the ring (the
// persistent kernel's ring runs on across work items; 0 otherwise); with
// qempty != 0 each warp arrives there once the item's last S = Q·Kᵀ retired,
// so the producer may load the next item's Q while P·V and the output
// store of this one still run (IWO only).
template <int D, int NWG, int FL, int BN>
__device__ __forceinline__ void consume_tma(float* o, float& m0, float& m1, float& l0, float& l1, u32 sQ, u32 sK,
                                            u32 sV, u32 bars, int wg, int nkb, int Lk, float scale_log2, int t4,
                                            int lane, int g0 = 0, u32 qempty = 0) {
  constexpr int BM = 64 * NWG, NS = tma_stages(BN), DC = D / 8;
  constexpr u32 KB = BN * D * 2, VB = D * BN * 2;
  static_assert(FL == (TF_IWO | TF_VN), "only the intra-warpgroup-overlap consumer with V in place is built");
  auto qk = [&](float* s, int st) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      s_mma<BN>(s, tile_desc<true>(sQ, wg * 64, kk, BM, DC, 0), tile_desc<true>(sK + st * KB, 0, kk, BN, DC, 0),
                kk > 0);
  };
  auto fence_s = [&](float* s) {
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) reg_fence(s[i]);
  };
  auto fence_o = [&]() {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(o[i]);
  };
  auto release = [&](int st) {
    __syncwarp();
    if (lane == 0) hp_mbar_arrive(bars + 8 * (NS + st));  // this warp is done reading stage st
  };
  auto release_q = [&]() {
    if (qempty != 0) {
      __syncwarp();
      if (lane == 0) hp_mbar_arrive(qempty);  // this warp's Q·Kᵀ of the item are done
    }
  };
  float s[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) s[i] = 0.f;
  float a0, a1;
  // S_0 and its softmax first; then per tile j: issue S_{j+1}, issue
  // P_j·V_j, softmax of S_{j+1} (in place) while P_j·V_j runs; P_{j+1} is
  // packed only after that MMA retired, as FA3 does, since ptxas
  // serialises the MMAs when registers a wgmma in flight uses are written.
  u32 p[BN / 16][4];
  hp_mbar_wait(bars + 8 * (g0 % NS), (g0 / NS) & 1);
  hp_wg_fence();
  qk(s, g0 % NS);
  hp_wg_commit();
  hp_wg_wait<0>();
  fence_s(s);
  if (nkb == 1) release_q();
  softmax_s<BN>(s, m0, m1, l0, l1, a0, a1, 0, Lk, scale_log2, t4);  // O is zero: no rescale
  pack_p<BN>(s, p);
#pragma unroll 1
  for (int j = 0; j + 1 < nkb; ++j) {  // the last tile has no S_{j+1}: peeled below
    const int st = (g0 + j) % NS, sn = (g0 + j + 1) % NS;
    fence_o();
    hp_wg_fence();
    hp_mbar_wait(bars + 8 * sn, ((g0 + j + 1) / NS) & 1);  // tile j+1 landed
    qk(s, sn);
    hp_wg_commit();
    pv_stage<D, BN, FL>(o, p, sV + st * VB);
    hp_wg_commit();
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");  // S_{j+1} done, P_j·V_j may run on
    fence_s(s);
    if (j + 2 == nkb) release_q();
    softmax_s<BN>(s, m0, m1, l0, l1, a0, a1, (j + 1) * BN, Lk, scale_log2, t4);
    hp_wg_wait<0>();
    fence_o();
    release(st);
    rescale_o<D>(o, a0, a1);
    pack_p<BN>(s, p);
  }
  const int st = (g0 + nkb - 1) % NS;
  fence_o();
  hp_wg_fence();
  pv_stage<D, BN, FL>(o, p, sV + st * VB);
  hp_wg_commit();
  hp_wg_wait<0>();
  fence_o();
  release(st);
}

// Final O = acc / row sum of one consumer thread's two rows (r0 and r0+8
// of the item's head h, batch entry z), straight from registers.
template <int D>
__device__ __forceinline__ void store_o(const float* o, float l0, float l1, bf16* __restrict__ O, int r0, int z, int h,
                                        int Lq, int H, int t4) {
  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  const int r1 = r0 + 8;
  const long long W = (long long)H * D;
  bf16* Oh = O + (long long)z * Lq * W + (long long)h * D;
#pragma unroll
  for (int c = 0; c < D / 8; ++c) {
    int col = c * 8 + 2 * t4;
    if (r0 < Lq) *(u32*)&Oh[(long long)r0 * W + col] = pack_bf2(o[4 * c] * i0, o[4 * c + 1] * i0);
    if (r1 < Lq) *(u32*)&Oh[(long long)r1 * W + col] = pack_bf2(o[4 * c + 2] * i1, o[4 * c + 3] * i1);
  }
}
