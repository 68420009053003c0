// attention_sm90a.cu: dense attention forward with Hopper warpgroup MMAs
// (wgmma, sm_90a only; compiled for "sm_90a", see kernels.go). Same math as
// attention.cu: bf16 in, fp32 accumulation, online softmax in exp2 units.
//
// A block has NWG consumer warpgroups, each owning 64 query rows; K tiles
// [64 keys][D] and pre-transposed V tiles Vᵀ [D][64 keys] stream through
// shared memory with cp.async (two or three stages, one block barrier per
// tile). S = Q·Kᵀ runs as m64n64k16 with both operands in shared memory; P
// goes back in registers (the accumulator layout equals the A-fragment
// layout) for O += P·V as m64nDk16 with B = Vᵀ in shared memory, so P never
// touches shared memory.
//
// Shared-memory tiles use either the no-swizzle "core matrix" layout (8 rows
// × 16 bytes per 128-byte core matrix) or the 128-byte swizzle, which is
// about 25% faster (docs/PERF.md). The block map of SLA/SageAttention can
// later skip key tiles in the same loop.
//
// The cp.async kernels above are fallbacks and comparisons; the defaults are
// the warp-specialised TMA kernels further down (flash_tma, consume_tma): a
// producer warpgroup feeds mbarrier stages, and for head dim 128 two
// consumer warpgroups run FA3's intra-warpgroup overlap on 128-key stages
// with V read in place ("w2tivk128"; backend/cuda/attention_select.go).
// flash_tma_p ("w2tivk128p") is the same consumer in a persistent kernel
// (one block per SM walks the work items; the default for the short
// cross-attention, where per-tile start and store costs dominate). Shared
// TMA/mbarrier/wgmma helpers (hp_*) come from hopper.cuh.
#include "hopper.cuh"

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
  if (SW) {
    u32 a = base + (kk >> 2) * R * 128 + row0 * 128 + (kk & 3) * 32;
    return (u64)((a & 0x3FFFF) >> 4) | ((u64)1 << 16) | ((u64)(1024 >> 4) << 32) | ((u64)1 << 62);
  }
  return make_desc(base + (row0 >> 3) * kc8 * 128 + kk * 256, 128, kc8 * 128, swap);
}

// Keeps the compiler from moving accumulator reads/writes across wgmma.
__device__ __forceinline__ void reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }

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

// d[0..63] += A(smem desc)·B(smem desc), m64n128k16, K-major A and B.
__device__ __forceinline__ void wgmma_ss_n128(float* d, u64 da, u64 db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(accumulate));
}

template <int BN>
__device__ __forceinline__ void s_mma(float* s, u64 da, u64 db, int acc);
template <>
__device__ __forceinline__ void s_mma<64>(float* s, u64 da, u64 db, int acc) { wgmma_ss_n64(s, da, db, acc); }
template <>
__device__ __forceinline__ void s_mma<128>(float* s, u64 da, u64 db, int acc) { wgmma_ss_n128(s, da, db, acc); }

// 2^x on the special-function unit, flushing subnormal results to zero
// (such probabilities are below bf16's resolution of the row sum anyway).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

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

// Probabilities of a finished softmax as bf16 A fragments for P·V (the
// accumulator layout of S equals the A-fragment layout).
template <int SN>
__device__ __forceinline__ void pack_p(const float* s, u32 (&p)[SN / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < SN / 16; ++kk) {
    p[kk][0] = pack_bf2(s[8 * kk], s[8 * kk + 1]);
    p[kk][1] = pack_bf2(s[8 * kk + 2], s[8 * kk + 3]);
    p[kk][2] = pack_bf2(s[8 * kk + 4], s[8 * kk + 5]);
    p[kk][3] = pack_bf2(s[8 * kk + 6], s[8 * kk + 7]);
  }
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
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int c = 0; c < SN / 8; ++c) {
    mx0 = fmaxf(mx0, fmaxf(s[4 * c], s[4 * c + 1]));
    mx1 = fmaxf(mx1, fmaxf(s[4 * c + 2], s[4 * c + 3]));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float n0 = fmaxf(m0, mx0 * scale_log2), n1 = fmaxf(m1, mx1 * scale_log2);
  a0 = ex2(m0 - n0);
  a1 = ex2(m1 - n1);
  m0 = n0;
  m1 = n1;
  float r0 = 0.f, r1 = 0.f;
#pragma unroll
  for (int c = 0; c < SN / 8; ++c) {
    s[4 * c] = ex2(fmaf(s[4 * c], scale_log2, -n0));
    s[4 * c + 1] = ex2(fmaf(s[4 * c + 1], scale_log2, -n0));
    s[4 * c + 2] = ex2(fmaf(s[4 * c + 2], scale_log2, -n1));
    s[4 * c + 3] = ex2(fmaf(s[4 * c + 3], scale_log2, -n1));
    r0 += s[4 * c] + s[4 * c + 1];
    r1 += s[4 * c + 2] + s[4 * c + 3];
  }
  l0 = l0 * a0 + r0;
  l1 = l1 * a1 + r1;
}

// O *= a (per row half), skipped once the running maxima settle and every
// factor of the warp is exactly 1 (exact, not an approximation).
template <int D>
__device__ __forceinline__ void rescale_o(float* o, float a0, float a1) {
  if (__any_sync(0xffffffffu, a0 != 1.f || a1 != 1.f)) {
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      o[4 * c] *= a0;
      o[4 * c + 1] *= a0;
      o[4 * c + 2] *= a1;
      o[4 * c + 3] *= a1;
    }
  }
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

// Q, K: [B, L, H*D]; Vt: [B*H, D, Lkp] (keys contiguous, zero past Lk,
// Lkp a multiple of BN); O: [B, Lq, H*D]. NWG consumer warpgroups of 64 rows
// each: grid (ceil(Lq/(64*NWG)), H, B), 128*NWG threads; BN keys per stage.
template <int D, int NWG, int BN, bool SW, int NS>
__device__ __forceinline__ void flash_wgmma(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                            const bf16* __restrict__ Vt, bf16* __restrict__ O, int Lq, int Lk,
                                            int Lkp, int H, float scale_log2, int swap) {
  constexpr int BM = 64 * NWG, NT = 128 * NWG;
  constexpr int DC = D / 8, NC = BN / 8;  // 16-byte chunks per row of Q/K and of Vᵀ
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = D * BN * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = SW ? (hp_smem(smem) + 1023) & ~1023u : hp_smem(smem), sK = sQ + QB, sV = sK + NS * KB;

  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int q0 = blockIdx.x * BM, h = blockIdx.y, z = blockIdx.z;
  const long long W = (long long)H * D;
  const bf16* Qh = Q + (long long)z * Lq * W + (long long)h * D;
  const bf16* Kh = K + (long long)z * Lk * W + (long long)h * D;
  const bf16* Vh = Vt + ((long long)z * H + h) * D * Lkp;

  for (int c = tid; c < BM * DC; c += NT) {
    int r = c / DC, c8 = c % DC, g = q0 + r;
    cp16(sQ + tile_off<SW>(r, c8, BM, DC), Qh + (long long)min(g, Lq - 1) * W + c8 * 8, g < Lq);
  }
  auto load_kv = [&](int j, int st) {
    for (int c = tid; c < BN * DC; c += NT) {
      int r = c / DC, c8 = c % DC, g = j * BN + r;
      cp16(sK + st * KB + tile_off<SW>(r, c8, BN, DC), Kh + (long long)min(g, Lk - 1) * W + c8 * 8, g < Lk);
    }
    for (int c = tid; c < D * NC; c += NT) {
      int r = c / NC, c8 = c % NC;
      cp16(sV + st * VB + tile_off<SW>(r, c8, D, NC), Vh + (long long)r * Lkp + j * BN + c8 * 8, true);
    }
  };
  const int nkb = (Lk + BN - 1) / BN;
  load_kv(0, 0);
  asm volatile("cp.async.commit_group;");
  if (NS == 3) {  // keep two tiles in flight
    if (nkb > 1) load_kv(1, 1);
    asm volatile("cp.async.commit_group;");
  }

  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int t4 = lane & 3;

  for (int j = 0; j < nkb; ++j) {
    const int st = NS == 3 ? j % 3 : j & 1;
    if (NS == 3)
      asm volatile("cp.async.wait_group 1;" ::: "memory");  // tile j landed; j+1 may still fly
    else
      asm volatile("cp.async.wait_all;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // cp.async writes -> wgmma reads
    __syncthreads();  // also: every warpgroup is done with the stage reloaded next
    if (NS == 3) {
      if (j + 2 < nkb) load_kv(j + 2, (j + 2) % 3);
    } else if (j + 1 < nkb) {
      load_kv(j + 1, st ^ 1);
    }
    asm volatile("cp.async.commit_group;");

    consume_stage<D, BM, BN, SW>(o, m0, m1, l0, l1, sQ, sK + st * KB, sV + st * VB, wg, j * BN, Lk, scale_log2, swap, t4);
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  const int r0 = q0 + wg * 64 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
  bf16* Oh = O + (long long)z * Lq * W + (long long)h * D;
#pragma unroll
  for (int c = 0; c < D / 8; ++c) {
    int col = c * 8 + 2 * t4;
    if (r0 < Lq) *(u32*)&Oh[(long long)r0 * W + col] = pack_bf2(o[4 * c] * i0, o[4 * c + 1] * i0);
    if (r1 < Lq) *(u32*)&Oh[(long long)r1 * W + col] = pack_bf2(o[4 * c + 2] * i1, o[4 * c + 3] * i1);
  }
}

// ---- TMA + mbarrier producer/consumer version (warp-specialised) ----
// A producer warpgroup (one thread issues the copies) streams Q once and K,
// V (or Vᵀ) tiles through two or three stages with the bulk tensor copy
// engine; each stage
// has a "full" barrier (the copy engine completes its byte count) and an
// "empty" barrier (every consumer warp arrives after its P·V finished), so
// the consumer warpgroups never wait on each other at a block barrier.
// Tensor maps use the 128-byte swizzle, the same layout as tile_off<true>.

// Shared-memory stages of the TMA kernels: three up to 128 keys, two for
// 192-key tiles (three would not fit in 227 KB with a 128-row Q tile).
__host__ __device__ constexpr int tma_stages(int bn) { return bn > 128 ? 2 : 3; }

// d[0..95] += A(smem desc)·B(smem desc), m64n192k16, K-major A and B.
__device__ __forceinline__ void wgmma_ss_n192(float* d, u64 da, u64 db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, %96, %97, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(da), "l"(db), "r"(accumulate));
}
template <>
__device__ __forceinline__ void s_mma<192>(float* s, u64 da, u64 db, int acc) { wgmma_ss_n192(s, da, db, acc); }

// ---- Variants of the TMA consumer loop (flags FL, kernel-name letters) ----
// TF_OVL ("o"): O += P_j·V_j and S_{j+1} = Q·K_{j+1}ᵀ go to the tensor cores
//   back to back with one wait per tile, instead of two round trips.
// TF_IWO ("i"): FA3's intra-warpgroup overlap: S_{j+1} is issued before
//   P_j·V_j, and its softmax runs while P_j·V_j is still on the tensor cores
//   (O is rescaled after that MMA finished).
// TF_VN ("v"): V read in its own [keys][D] layout (the copy engine loads it
//   like K; wgmma reads B "MN-major", transpose bit set), so no transposed
//   copy of V is made per call. Keys past Lk of a batch entry other than the
//   last are the next entry's rows (the zero fill starts only past the whole
//   tensor): their P is exactly 0 (ex2 of -inf), so they add nothing unless
//   that V holds Inf/NaN.
// Tried and dropped (docs/PERF.md, "Attention, session 2"): a warpgroup
// ping-pong (FA3's named-barrier turns) on top of TF_OVL, and a quarter of
// the exp2s as a polynomial on the FMA pipe (FA4's trick).
#define TF_OVL 1
#define TF_IWO 2
#define TF_VN 4

// P (bf16, A-fragment layout) from the probabilities in s.
// d[0..63] += A(registers)·B(smem desc, MN-major: transpose bit set), m64n128k16.
__device__ __forceinline__ void wgmma_rs_n128_tb(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// d[0..31] += A(registers)·B(smem desc, MN-major: transpose bit set), m64n64k16.
__device__ __forceinline__ void wgmma_rs_n64_tb(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// Descriptor of k16 step kk of a V tile in its own layout: BN key rows of
// 128 bytes per 64-wide half of D (halves BN·128 bytes apart, 128-byte
// swizzle, as the copy engine lays out K). MN-major reading: the leading
// offset steps between 64-column halves of D, the stride offset between
// 8-key groups (the exchanged reading faulted on H100, docs/PERF.md).
template <int BN>
__device__ __forceinline__ u64 vn_desc(u32 base, int kk) {
  const u32 a = base + kk * 16 * 128;
  const u64 lead = (BN * 128) >> 4, stride = 1024 >> 4;
  return (u64)((a & 0x3FFFF) >> 4) | (lead << 16) | (stride << 32) | ((u64)1 << 62);
}

// O += P·V for one stage of BN keys.
template <int D, int BN, int FL>
__device__ __forceinline__ void pv_stage(float* o, const u32 (&p)[BN / 16][4], u32 vbase) {
  constexpr int NC = BN / 8;
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    if constexpr ((FL & TF_VN) != 0) {
      const u64 db = vn_desc<BN>(vbase, kk);
      if constexpr (D == 128)
        wgmma_rs_n128_tb(o, p[kk], db);
      else
        wgmma_rs_n64_tb(o, p[kk], db);
    } else {
      pv_mma<D>(o, p[kk], tile_desc<true>(vbase, 0, kk, D, NC, 0));
    }
  }
}

// The consumer loop of the flagged TMA variants (FL != 0). Tiles stream
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
  constexpr bool OVL = (FL & TF_OVL) != 0, IWO = (FL & TF_IWO) != 0;
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
  if constexpr (IWO) {
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
  } else {
    if constexpr (OVL) {  // S_0 on its own; later S_{j+1} rides with P_j·V_j
      hp_mbar_wait(bars, 0);
      hp_wg_fence();
      qk(s, 0);
      hp_wg_commit();
      hp_wg_wait<0>();
      fence_s(s);
    }
#pragma unroll 1
    for (int j = 0; j < nkb; ++j) {
      const int st = j % NS;
      if constexpr (!OVL) {
        hp_mbar_wait(bars + 8 * st, (j / NS) & 1);  // tile j landed
        hp_wg_fence();
        qk(s, st);
        hp_wg_commit();
        hp_wg_wait<0>();
        fence_s(s);
      }
      u32 p[BN / 16][4];
      softmax_s<BN>(s, m0, m1, l0, l1, a0, a1, j * BN, Lk, scale_log2, t4);
      pack_p<BN>(s, p);
      rescale_o<D>(o, a0, a1);
      fence_o();
      hp_wg_fence();
      pv_stage<D, BN, FL>(o, p, sV + st * VB);
      if constexpr (OVL) {
        if (j + 1 < nkb) {
          const int sn = (j + 1) % NS;
          hp_mbar_wait(bars + 8 * sn, ((j + 1) / NS) & 1);  // tile j+1 landed
          qk(s, sn);
        }
      }
      hp_wg_commit();
      hp_wg_wait<0>();
      fence_o();
      fence_s(s);
      release(st);
    }
  }
}

// tmQ: [B*Lq rows][H*D] box 64×BM; tmK: [B*Lk rows][H*D] box 64×BN;
// tmV: [B*H*D rows][Lkp] box 64×D. grid (ceil(Lq/BM), H, B), 128*(NWG+1)
// threads; REGS is the consumers' register budget after setmaxnreg; BN
// keys per stage (128 only with FL != 0).
template <int D, int NWG, int REGS, int FL, int BN>
__device__ __forceinline__ void flash_tma(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                          bf16* __restrict__ O, int Lq, int Lk, int H, float scale_log2) {
  static_assert(BN == 64 || FL != 0, "128-key stages need consume_tma");
  constexpr int BM = 64 * NWG, NS = tma_stages(BN), DH = D / 64;
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = D * BN * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = (hp_smem(smem) + 1023) & ~1023u, sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qbar = bars + 16 * NS;  // full[s] at bars + 8s, empty[s] at bars + 8(NS+s)
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int q0 = blockIdx.x * BM, h = blockIdx.y, z = blockIdx.z;
  const int nkb = (Lk + BN - 1) / BN;
  if (tid == 0) {
    for (int st = 0; st < NS; ++st) {
      hp_mbar_init(bars + 8 * st, 1);
      hp_mbar_init(bars + 8 * (NS + st), NWG * 4);
    }
    hp_mbar_init(qbar, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == NWG) {  // producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");
    if (tid == NWG * 128) {
      hp_mbar_expect_tx(qbar, QB);
#pragma unroll
      for (int hf = 0; hf < DH; ++hf) hp_tma_load_2d(sQ + hf * BM * 128, tmQ, h * D + hf * 64, z * Lq + q0, qbar);
      for (int j = 0; j < nkb; ++j) {
        const int st = j % NS;
        if (j >= NS) hp_mbar_wait(bars + 8 * (NS + st), ((j / NS) - 1) & 1);  // consumers released the stage
        hp_mbar_expect_tx(bars + 8 * st, KB + VB);
#pragma unroll
        for (int hf = 0; hf < DH; ++hf)
          hp_tma_load_2d(sK + st * KB + hf * BN * 128, tmK, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
        if constexpr ((FL & TF_VN) != 0) {  // V as it is: [keys][D], like K
#pragma unroll
          for (int hf = 0; hf < DH; ++hf)
            hp_tma_load_2d(sV + st * VB + hf * BN * 128, tmV, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
        } else {  // Vᵀ: [D][keys]
#pragma unroll
          for (int vh = 0; vh < BN / 64; ++vh)
            hp_tma_load_2d(sV + st * VB + vh * D * 128, tmV, j * BN + vh * 64, (z * H + h) * D, bars + 8 * st);
        }
      }
    }
  } else {  // consumer warpgroups
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    const int t4 = lane & 3;
    hp_mbar_wait(qbar, 0);
    if constexpr (FL != 0) {
      consume_tma<D, NWG, FL, BN>(o, m0, m1, l0, l1, sQ, sK, sV, bars, wg, nkb, Lk, scale_log2, t4, lane);
    } else {
      for (int j = 0; j < nkb; ++j) {
        const int st = j % NS;
        hp_mbar_wait(bars + 8 * st, (j / NS) & 1);  // tile j landed
        consume_stage<D, BM, BN, true>(o, m0, m1, l0, l1, sQ, sK + st * KB, sV + st * VB, wg, j * BN, Lk, scale_log2,
                                       0, t4);
        __syncwarp();
        if (lane == 0) hp_mbar_arrive(bars + 8 * (NS + st));  // this warp is done reading the stage
      }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.f / l0, i1 = 1.f / l1;
    const int r0 = q0 + wg * 64 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
    const long long W = (long long)H * D;
    bf16* Oh = O + (long long)z * Lq * W + (long long)h * D;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      int col = c * 8 + 2 * t4;
      if (r0 < Lq) *(u32*)&Oh[(long long)r0 * W + col] = pack_bf2(o[4 * c] * i0, o[4 * c + 1] * i0);
      if (r1 < Lq) *(u32*)&Oh[(long long)r1 * W + col] = pack_bf2(o[4 * c + 2] * i1, o[4 * c + 3] * i1);
    }
  }
}

// Final O = acc / row sum of one consumer thread's two rows (r0 and r0+8
// of the item's head h, batch entry z), straight from registers.
template <int D>
__device__ __forceinline__ void store_o(const float* o, float l0, float l1, bf16* __restrict__ O, int r0, int z, int h,
                                        int Lq, int H, int t4) {
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
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

// Persistent version of flash_tma (kernel suffix "p"): gridDim.x blocks (one
// per SM) walk the work items t = blockIdx.x, +gridDim.x, ... < nqt·H·B,
// item t = query tile t % nqt of head (t / nqt) % H, batch t / (nqt·H):
// the blocks in flight work on neighbouring query tiles of one head, so its
// K and V stay in L2. The K/V ring runs on across items (the producer loads
// the next item's first stages while the consumers finish this one), and
// the single Q buffer is refilled as soon as the item's last Q·Kᵀ retired
// (qempty), so neither the Q load nor the K/V pipeline fill nor the output
// store of an item stalls the tensor cores, and a block's start-up
// (barrier init, setmaxnreg) is paid once per SM instead of once per tile.
template <int D, int NWG, int REGS, int FL, int BN>
__device__ __forceinline__ void flash_tma_p(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                            bf16* __restrict__ O, int Lq, int Lk, int H, int B, float scale_log2) {
  static_assert((FL & TF_IWO) != 0, "the persistent kernel uses the intra-warpgroup-overlap consumer");
  constexpr int BM = 64 * NWG, NS = tma_stages(BN), DH = D / 64;
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = D * BN * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = (hp_smem(smem) + 1023) & ~1023u, sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qfull = bars + 16 * NS, qempty = qfull + 8;  // after full[s] (bars + 8s), empty[s] (bars + 8(NS+s))
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int nkb = (Lk + BN - 1) / BN, nqt = (Lq + BM - 1) / BM, items = nqt * H * B;
  if (tid == 0) {
    for (int st = 0; st < NS; ++st) {
      hp_mbar_init(bars + 8 * st, 1);
      hp_mbar_init(bars + 8 * (NS + st), NWG * 4);
    }
    hp_mbar_init(qfull, 1);
    hp_mbar_init(qempty, NWG * 4);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == NWG) {  // producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");
    if (tid == NWG * 128) {
      int g = 0;  // tiles loaded so far, over all items: ring slot g % NS
      for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it) {
        const int q0 = (t % nqt) * BM, h = (t / nqt) % H, z = t / (nqt * H);
        for (int j = 0; j < nkb; ++j, ++g) {
          const int st = g % NS;
          if (g >= NS) hp_mbar_wait(bars + 8 * (NS + st), ((g / NS) - 1) & 1);  // consumers released the slot
          hp_mbar_expect_tx(bars + 8 * st, KB + VB);
#pragma unroll
          for (int hf = 0; hf < DH; ++hf) {
            hp_tma_load_2d(sK + st * KB + hf * BN * 128, tmK, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
            hp_tma_load_2d(sV + st * VB + hf * BN * 128, tmV, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
          }
          if (j == 0) {  // Q after the first K/V tile: its buffer frees only late in the previous item
            if (it > 0) hp_mbar_wait(qempty, (it - 1) & 1);
            hp_mbar_expect_tx(qfull, QB);
#pragma unroll
            for (int hf = 0; hf < DH; ++hf) hp_tma_load_2d(sQ + hf * BM * 128, tmQ, h * D + hf * 64, z * Lq + q0, qfull);
          }
        }
      }
    }
  } else {  // consumer warpgroups
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
    const int t4 = lane & 3;
    int g = 0;
#pragma unroll 1
    for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it, g += nkb) {
      const int q0 = (t % nqt) * BM, h = (t / nqt) % H, z = t / (nqt * H);
      float o[D / 2];
#pragma unroll
      for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
      float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
      hp_mbar_wait(qfull, it & 1);
      consume_tma<D, NWG, FL, BN>(o, m0, m1, l0, l1, sQ, sK, sV, bars, wg, nkb, Lk, scale_log2, t4, lane, g, qempty);
      store_o<D>(o, l0, l1, O, q0 + wg * 64 + w4 * 16 + (lane >> 2), z, h, Lq, H, t4);
    }
  }
}

#define FLASH_TMA_P(D, NWG, REGS, FL, BN, SUF)                                                                  \
  extern "C" __global__ void __launch_bounds__(128 * (NWG + 1), 1) flash_wgmma_d##D##_w##NWG##_##SUF(          \
      const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,                                 \
      const __grid_constant__ HpTmaDesc tmV, bf16* O, int Lq, int Lk, int H, int B, float scale_log2) {           \
    flash_tma_p<D, NWG, REGS, FL, BN>(&tmQ, &tmK, &tmV, O, Lq, Lk, H, B, scale_log2);                           \
  }
FLASH_TMA_P(128, 2, 240, TF_IWO | TF_VN, 128, tivk128p)
FLASH_TMA_P(64, 2, 240, TF_IWO | TF_VN, 128, tivk128p)

#define FLASH_TMA(D, NWG, REGS, FL, BN, SUF)                                                                    \
  extern "C" __global__ void __launch_bounds__(128 * (NWG + 1), 1) flash_wgmma_d##D##_w##NWG##_##SUF(          \
      const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,                                 \
      const __grid_constant__ HpTmaDesc tmV, bf16* O, int Lq, int Lk, int H, float scale_log2) {                  \
    flash_tma<D, NWG, REGS, FL, BN>(&tmQ, &tmK, &tmV, O, Lq, Lk, H, scale_log2);                                \
  }
// Suffix letters after "t" (see consume_tma): o = TF_OVL, i = TF_IWO,
// v = TF_VN; "k128"/"k192": 128/192-key stages. Every
// variant exists for head dims 128 and 64.
#define FLASH_TMA_D(NWG, REGS, FL, BN, SUF) \
  FLASH_TMA(128, NWG, REGS, FL, BN, SUF)    \
  FLASH_TMA(64, NWG, REGS, FL, BN, SUF)
FLASH_TMA_D(3, 160, 0, 64, t)
FLASH_TMA_D(2, 240, 0, 64, t)
FLASH_TMA_D(3, 160, TF_OVL, 64, to)
FLASH_TMA_D(2, 240, TF_OVL, 128, tok128)
FLASH_TMA_D(2, 240, TF_OVL | TF_VN, 128, tovk128)
FLASH_TMA_D(2, 240, TF_IWO, 128, tik128)
FLASH_TMA_D(2, 240, TF_IWO | TF_VN, 128, tivk128)
FLASH_TMA_D(2, 240, TF_OVL | TF_VN, 192, tovk192)

#define FLASH_WG(D, NWG, MINB, BN, SW, NS, NAME)                                                             \
  extern "C" __global__ void __launch_bounds__(128 * NWG, MINB) NAME(                                         \
      const bf16* Q, const bf16* K, const bf16* Vt, bf16* O, int Lq, int Lk, int Lkp, int H, float scale_log2, \
      int swap) {                                                                                            \
    flash_wgmma<D, NWG, BN, SW, NS>(Q, K, Vt, O, Lq, Lk, Lkp, H, scale_log2, swap);                           \
  }
// Variants: _w<NWG> consumer warpgroups; _b1 no-swizzle tiles, _s 128-byte
// swizzled tiles, _s3 swizzled with three K/Vᵀ stages. docs/PERF.md has the
// measurements behind this list (and the variants tried and dropped: 2 blocks
// per SM, 4 warpgroups, 128-key tiles, next-tile Q·Kᵀ during the softmax).
FLASH_WG(128, 3, 1, 64, false, 2, flash_wgmma_d128_w3_b1)
FLASH_WG(128, 3, 1, 64, true, 2, flash_wgmma_d128_w3_s)
FLASH_WG(128, 2, 1, 64, true, 2, flash_wgmma_d128_w2_s)
FLASH_WG(128, 3, 1, 64, true, 3, flash_wgmma_d128_w3_s3)
FLASH_WG(128, 2, 1, 64, true, 3, flash_wgmma_d128_w2_s3)
FLASH_WG(64, 3, 1, 64, false, 2, flash_wgmma_d64_w3_b1)
FLASH_WG(64, 3, 1, 64, true, 2, flash_wgmma_d64_w3_s)
FLASH_WG(64, 2, 1, 64, true, 2, flash_wgmma_d64_w2_s)
FLASH_WG(64, 2, 1, 64, true, 3, flash_wgmma_d64_w2_s3)
FLASH_WG(64, 3, 1, 64, true, 3, flash_wgmma_d64_w3_s3)
