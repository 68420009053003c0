// conv3d_sm90a.cu: the VAE's stride-1 bf16 convolution on Hopper (sm_90a
// only; wgmma, the bulk tensor copy engine and setmaxnreg).
//
// The input (history frames + chunk, channel-first) is first packed into a
// zero-padded channels-last scratch Xp [Tp*Hp*Wp rows][Cin] (conv_pack_cl).
// On that padded grid every tap (dt,dh,dw) is a constant row offset
// o = dt*Hp*Wp + dh*Wp + dw, so the implicit GEMM's A tile for output rows
// r0..r0+BM-1 and channels c0..c0+BK-1 is the plain 2-D box at (c0, r0+o) of
// Xp: one TMA copy per K step, no gather. Outputs are computed on the padded
// grid (row r = t*Hp*Wp + h*Wp + w; the rows with h >= Ho or w >= Wo are
// wasted work, a few percent) and the epilogue writes only the real ones,
// channel-first. The weight is repacked to [tap][Cout][Cin] so a B tile is a
// box too. M = positions (64 per wgmma), N = output channels (96 or 192 per
// tile), K = (tap, channel chunk of BK = 64 or 32).
//
// A block is one producer warpgroup (one thread issues the copies into NS
// mbarrier stages) and two consumer warpgroups, each owning 64·MW rows of
// the BM = 128·MW-row tile and all N columns. Numerics equal conv3d.cu:
// fp32 accumulation, the sum rounded to bf16, then the bias added and the
// result rounded again; an optional residual R [Cout,To,Ho,Wo] is then added
// and rounded (the VAE residual block's Add, fused into the epilogue).
#include "hopper.cuh"

__device__ __forceinline__ void cw_reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }
// Barrier 1 among the 256 consumer threads only (the producer never joins).
__device__ __forceinline__ void cw_consumers_sync() { asm volatile("bar.sync 1, 256;" ::: "memory"); }

// Descriptor of a K-major tile whose rows are BK bf16 (128 B with the
// 128-byte swizzle for BK = 64, 64 B with the 64-byte swizzle for BK = 32),
// 8-row groups one swizzle atom apart; addr already includes the k16 step's
// 32-byte offset inside the row.
template <int BK>
__device__ __forceinline__ u64 cw_desc(u32 addr) {
  constexpr u64 sbo = BK * 2 * 8, layout = BK == 64 ? 1 : 2;
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)1 << 16) | ((sbo >> 4) << 32) | (layout << 62);
}

// d[0..3] += A(smem desc)·B(smem desc), m64n8k16, both K-major.
__device__ __forceinline__ void cw_mma_n8(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "l"(da), "l"(db), "r"(1));
}

// d[0..47] += A(smem desc)·B(smem desc), m64n96k16, both K-major.
__device__ __forceinline__ void cw_mma_n96(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47}, %48, %49, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
      : "l"(da), "l"(db), "r"(1));
}

// d[0..95] += A(smem desc)·B(smem desc), m64n192k16, both K-major.
__device__ __forceinline__ void cw_mma_n192(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, %96, %97, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(da), "l"(db), "r"(1));
}

// d[0..31] += A(smem desc)·B(smem desc), m64n64k16, both K-major.
__device__ __forceinline__ void cw_mma_n64(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(1));
}

// d[0..63] += A(smem desc)·B(smem desc), m64n128k16, both K-major.
__device__ __forceinline__ void cw_mma_n128(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(1));
}

// d[0..127] += A(smem desc)·B(smem desc), m64n256k16, both K-major.
__device__ __forceinline__ void cw_mma_n256(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(da), "l"(db), "r"(1));
}

template <int N>
__device__ __forceinline__ void cw_mma(float* d, u64 da, u64 db);
template <>
__device__ __forceinline__ void cw_mma<8>(float* d, u64 da, u64 db) { cw_mma_n8(d, da, db); }
template <>
__device__ __forceinline__ void cw_mma<96>(float* d, u64 da, u64 db) { cw_mma_n96(d, da, db); }
template <>
__device__ __forceinline__ void cw_mma<192>(float* d, u64 da, u64 db) { cw_mma_n192(d, da, db); }
template <>
__device__ __forceinline__ void cw_mma<64>(float* d, u64 da, u64 db) { cw_mma_n64(d, da, db); }
template <>
__device__ __forceinline__ void cw_mma<128>(float* d, u64 da, u64 db) { cw_mma_n128(d, da, db); }
template <>
__device__ __forceinline__ void cw_mma<256>(float* d, u64 da, u64 db) { cw_mma_n256(d, da, db); }

// Repacks a weight [Cout][Cin][ntap] (any float dtype) into bf16
// [ntap][Cout][Cin]: the B operand, K-major, one box per (tap, chunk).
extern "C" __global__ void conv_wpack_tap_kernel(bf16* dst, const void* w, int wdt, int Cout, int Cin, int ntap) {
  const long long n = (long long)ntap * Cout * Cin;
  GRID_STRIDE(i, n) {
    int ci = (int)(i % Cin);
    long long r = i / Cin;
    int co = (int)(r % Cout), tap = (int)(r / Cout);
    dst[i] = f2bf(ldv(w, wdt, ((long long)co * Cin + ci) * ntap + tap));
  }
}

// Bulk copy of bytes contiguous bytes (a multiple of 16; both addresses
// 16-byte aligned) from global src into shared memory at dst, completing on
// mbarrier bar: one request for a whole run of rows, where a tensor-map
// copy of 16-byte-wide rows would issue one per row. No bounds: the source
// must be readable.
__device__ __forceinline__ void cw_bulk_load(u32 dst, const void* src, u32 bytes, u32 bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"((u64)src), "r"(bytes), "r"(bar)
               : "memory");
}

// Descriptor of a K-major tile without swizzle: 8-row × 16-byte core
// matrices, rows 16 bytes apart (SBO 128 between 8-row groups), the two
// 8-channel halves of a k16 step lbo bytes apart. addr needs only 16-byte
// alignment, so a tile may start at any row.
__device__ __forceinline__ u64 cw_desc_ns(u32 addr, u32 lbo) {
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)(lbo >> 4) << 16) | ((u64)(128 >> 4) << 32);
}

#define CP_W 64   // padded-grid positions per block
#define CP_C 64   // channels per block
#define CP_S 66   // shared row stride (bf16): 33 words, at most 2-way conflicts

// conv_pack_cl writes Xp [Tp][Hp][Wp][C] (bf16, channels last) from the
// channel-first history Xh [C,Th,Hi,Wi] and chunk X [C,Ti-Th,Hi,Wi]:
// Xp[tp,hp,wp,c] = input(c, tp-pt, hp-ph, wp-pw), zero outside. Grid
// (ceil(Wp/64), Tp*Hp, ceil(C/64)), 256 threads; C % 8 == 0.
//
// up = 1 packs the nearest 2x upsampling of X instead (Hi, Wi are then the
// upsampled sizes; X holds Hi/2 × Wi/2 frames, no history): the resample
// convs read the small tensor, and the upsampled one is never written.
//
// grow = G > 1 (no history) reads X [G·C, Ti/G, ...] as [C, Ti, ...]:
// frame G·t+g, channel c is X[g·C+c, t] (TAEHV's TGrow, whose 1x1 conv
// stacks G frames along channels), so the regrouped frames are never
// written either.
extern "C" __global__ void __launch_bounds__(256) conv_pack_cl(bf16* __restrict__ Xp, const bf16* __restrict__ X,
                                                               const bf16* __restrict__ Xh, int Th, int C, int Ti,
                                                               int Hi, int Wi, int pt, int ph, int pw, int Hp,
                                                               int Wp, int up, int grow) {
  __shared__ bf16 tile[CP_C * CP_S];
  const int tid = threadIdx.x;
  const int wp0 = blockIdx.x * CP_W, row = blockIdx.y, c0 = blockIdx.z * CP_C;
  const int tp = row / Hp, hp = row - tp * Hp;
  const int ti = tp - pt, hi = hp - ph;
  const bool live = ti >= 0 && ti < Ti && hi >= 0 && hi < Hi;
  if (live) {
    const int Hs = Hi >> up, Ws = Wi >> up;  // the stored frame's size
    const long long HWs = (long long)Hs * Ws;
    const bool hist = ti < Th;
    const bf16* src;
    long long cst;
    if (grow > 1) {
      cst = (long long)(Ti / grow) * HWs;
      src = X + (long long)(ti / grow) * HWs + (long long)(ti % grow) * C * cst + (long long)(hi >> up) * Ws;
    } else {
      cst = hist ? (long long)Th * HWs : (long long)(Ti - Th) * HWs;
      src = (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWs + (long long)(hi >> up) * Ws;
    }
    const int w = tid & 63, wi = wp0 + w - pw;
    const bool wok = wi >= 0 && wi < Wi;
    const int ws = wi >> up;
#pragma unroll
    for (int c = tid >> 6; c < CP_C; c += 4) {  // 16 loads in flight per thread
      bf16 v = 0;
      if (wok && c0 + c < C) v = src[(long long)(c0 + c) * cst + ws];
      tile[c * CP_S + w] = v;
    }
    __syncthreads();
  }
  // Each thread writes 8 channels (16 bytes) of one position per step;
  // eight lanes cover one position's 64 channels.
  for (int k = tid; k < CP_W * (CP_C / 8); k += 256) {
    const int g = k & 7, w = k >> 3, wp = wp0 + w, c = c0 + 8 * g;
    if (wp >= Wp || c >= C) continue;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (live) {
      const bf16* t = &tile[(8 * g) * CP_S + w];
      v.x = (u32)t[0] | ((u32)t[CP_S] << 16);
      v.y = (u32)t[2 * CP_S] | ((u32)t[3 * CP_S] << 16);
      v.z = (u32)t[4 * CP_S] | ((u32)t[5 * CP_S] << 16);
      v.w = (u32)t[6 * CP_S] | ((u32)t[7 * CP_S] << 16);
    }
    *(uint4*)&Xp[((long long)row * Wp + wp) * C + c] = v;
  }
}

// SiLU in float32 with the fast exponential and reciprocal (relative error
// ~1e-6, far below the bf16 rounding that follows).
__device__ __forceinline__ float cw_silu(float x) { return __fdividef(x, 1.f + __expf(-x)); }

#define CN_W 64  // padded-grid positions per block

// conv_pack_norm_cl is conv_pack_cl fused with the VAE's RMS norm + SiLU
// (vae.cu channel_rmsnorm_kernel, bf16): Xp[tp,hp,wp,c] =
// SiLU(x / max(‖x‖, 1e-12) · scale · γ[c]) of input position (tp-pt, hp-ph,
// wp-pw), each step rounded to bf16, the squared norm summed in float64
// (the quotient is x times the rounded reciprocal of the norm, the SiLU in
// fast float32: both differ from the float64 reference only where a value
// lands within an ulp of a bf16 rounding boundary); zero outside the input.
// When tail is not null, the raw input frames ti >= tail0 (of history +
// chunk) are also copied to tail [C, Ti-tail0, Hi, Wi]: the next chunk's
// history, without a separate slicing pass. A block holds all C channels of
// 64 positions of one padded row: shared [64][C+2] bf16 (odd word stride:
// conflict-free column writes), then C floats of γ and 64 reciprocal norms.
// Grid (ceil(Wp/64), Tp*Hp), 256 threads; C % 8 == 0.
extern "C" __global__ void __launch_bounds__(256) conv_pack_norm_cl(
    bf16* __restrict__ Xp, const bf16* __restrict__ X, const bf16* __restrict__ Xh, int Th, int C, int Ti, int Hi,
    int Wi, int pt, int ph, int pw, int Hp, int Wp, const void* gamma, int gdt, float scale, bf16* __restrict__ tail,
    int tail0) {
  extern __shared__ __align__(16) unsigned char cn_smem[];
  const int S = C + 2;
  bf16* tile = (bf16*)cn_smem;
  float* gs = (float*)(cn_smem + ((CN_W * S * 2 + 15) & ~15));
  float* dn = gs + C;
  const int tid = threadIdx.x;
  const int wp0 = blockIdx.x * CN_W, row = blockIdx.y;
  const int tp = row / Hp, hp = row - tp * Hp;
  const int ti = tp - pt, hi = hp - ph;
  const bool live = ti >= 0 && ti < Ti && hi >= 0 && hi < Hi;
  const int ng = C / 8;
  if (!live) {  // a padding row: zeros
    for (int k = tid; k < CN_W * ng; k += 256) {
      const int w = k / ng, g = k - w * ng, wp = wp0 + w;
      if (wp < Wp) *(uint4*)&Xp[((long long)row * Wp + wp) * C + 8 * g] = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  for (int c = tid; c < C; c += 256) gs[c] = ldv(gamma, gdt, c);
  const long long HWi = (long long)Hi * Wi;
  {
    const bool hist = ti < Th;
    const long long cst = hist ? (long long)Th * HWi : (long long)(Ti - Th) * HWi;
    const bf16* src = (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWi + (long long)hi * Wi;
    const int w = tid & 63, wi = wp0 + w - pw;
    const bool wok = wi >= 0 && wi < Wi;
#pragma unroll 8
    for (int c = tid >> 6; c < C; c += 4) tile[w * S + c] = wok ? src[(long long)c * cst + wi] : (bf16)0;
  }
  __syncthreads();
  if (tail != nullptr && ti >= tail0) {  // raw frame for the next chunk's history, channel-first
    const long long tst = (long long)(Ti - tail0) * HWi;
    bf16* dst = tail + (long long)(ti - tail0) * HWi + (long long)hi * Wi;
    for (int k = tid; k < C * CN_W; k += 256) {
      const int c = k >> 6, w = k & 63, wi = wp0 + w - pw;
      if (wi >= 0 && wi < Wi) dst[(long long)c * tst + wi] = tile[w * S + c];
    }
  }
  {  // squared norms: four threads per position, float64
    const int w = tid >> 2, q = tid & 3;
    double ss = 0.0;
    for (int c = q; c < C; c += 4) {
      const double v = (double)bf2f(tile[w * S + c]);
      ss += v * v;
    }
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    if (q == 0) dn[w] = __frcp_rn(fmaxf(rbf((float)sqrt(ss)), 1e-12f));
  }
  __syncthreads();
  for (int k = tid; k < CN_W * ng; k += 256) {
    const int w = k / ng, g = k - w * ng, wp = wp0 + w, c = 8 * g;
    if (wp >= Wp) continue;
    const int wi = wp - pw;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (wi >= 0 && wi < Wi) {
      const float rd = dn[w];
      const u32* t = (const u32*)&tile[w * S + c];  // 4-byte aligned: S and c are even
      u32 o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const u32 pr = t[j];
        float y[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float a = rbf(__fmul_rn(bf2f((bf16)(e ? pr >> 16 : pr & 0xffff)), rd));
          a = rbf(__fmul_rn(a, scale));
          a = rbf(__fmul_rn(a, gs[c + 2 * j + e]));
          y[e] = cw_silu(a);
        }
        o[j] = pack_bf2(y[0], y[1]);
      }
      v = make_uint4(o[0], o[1], o[2], o[3]);
    }
    *(uint4*)&Xp[((long long)row * Wp + wp) * C + c] = v;
  }
}

// conv_pack_norm_cl4 is conv_pack_norm_cl for Wi % 4 == 0 with 8-byte
// loads: a block holds input columns [64·bx, 64·bx + 64) of one padded row
// (so four columns of one channel are one aligned load), block 0 also
// writes the left padding columns and the last block the right ones; the
// tail is stored four columns at a time. The norms and every rounding are
// conv_pack_norm_cl's, in the same order, so Xp and tail are bit for bit
// the same. Grid (ceil(Wi/64), Tp*Hp), 256 threads; C % 8 == 0.
__device__ __forceinline__ void pack_norm_cl4(bf16* __restrict__ Xp, const bf16* __restrict__ X,
                                              const bf16* __restrict__ Xh, int Th, int C, int Ti, int Hi, int Wi,
                                              int pt, int ph, int pw, int Hp, int Wp, const void* gamma, int gdt,
                                              float scale, bf16* __restrict__ tail, int tail0) {
  extern __shared__ __align__(16) unsigned char cn_smem[];
  const int S = C + 2;
  bf16* tile = (bf16*)cn_smem;
  float* gs = (float*)(cn_smem + ((CN_W * S * 2 + 15) & ~15));
  float* dn = gs + C;
  const int tid = threadIdx.x;
  const int wi0 = blockIdx.x * CN_W, row = blockIdx.y;
  const int tp = row / Hp, hp = row - tp * Hp;
  const int ti = tp - pt, hi = hp - ph;
  const bool live = ti >= 0 && ti < Ti && hi >= 0 && hi < Hi;
  const int ng = C / 8;
  // Padded columns this block writes: its own, plus the borders.
  const int lo = blockIdx.x == 0 ? 0 : wi0 + pw;
  const int hiw = blockIdx.x == gridDim.x - 1 ? Wp : min(wi0 + CN_W + pw, Wp);
  const int npos = hiw - lo;
  if (!live) {  // a padding row: zeros
    for (int k = tid; k < npos * ng; k += 256) {
      const int w = k / ng, g = k - w * ng;
      *(uint4*)&Xp[((long long)row * Wp + lo + w) * C + 8 * g] = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  for (int c = tid; c < C; c += 256) gs[c] = ldv(gamma, gdt, c);
  const long long HWi = (long long)Hi * Wi;
  const int nq = C * (CN_W / 4);  // (channel, 4-column group) items
  {
    const bool hist = ti < Th;
    const long long cst = hist ? (long long)Th * HWi : (long long)(Ti - Th) * HWi;
    const bf16* src = (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWi + (long long)hi * Wi + wi0;
    for (int k0 = tid; k0 < nq; k0 += 256 * 8) {
      uint2 v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int k = k0 + 256 * u, c = k >> 4, j = k & 15;
        v[u] = (k < nq && wi0 + 4 * j < Wi) ? *(const uint2*)(src + (long long)c * cst + 4 * j) : make_uint2(0, 0);
      }
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int k = k0 + 256 * u, c = k >> 4, j = k & 15;
        if (k < nq) {
          bf16* t = &tile[4 * j * S + c];
          t[0] = (bf16)(v[u].x & 0xffff);
          t[S] = (bf16)(v[u].x >> 16);
          t[2 * S] = (bf16)(v[u].y & 0xffff);
          t[3 * S] = (bf16)(v[u].y >> 16);
        }
      }
    }
  }
  __syncthreads();
  if (tail != nullptr && ti >= tail0) {  // raw frame for the next chunk's history, channel-first
    const long long tst = (long long)(Ti - tail0) * HWi;
    bf16* dst = tail + (long long)(ti - tail0) * HWi + (long long)hi * Wi + wi0;
    for (int k = tid; k < nq; k += 256) {
      const int c = k >> 4, j = k & 15;
      if (wi0 + 4 * j < Wi) {
        const bf16* t = &tile[4 * j * S + c];
        *(uint2*)(dst + (long long)c * tst + 4 * j) =
            make_uint2((u32)t[0] | ((u32)t[S] << 16), (u32)t[2 * S] | ((u32)t[3 * S] << 16));
      }
    }
  }
  {  // squared norms: four threads per position, float64 (conv_pack_norm_cl's order)
    const int w = tid >> 2, q = tid & 3;
    double ss = 0.0;
    for (int c = q; c < C; c += 4) {
      const double v = (double)bf2f(tile[w * S + c]);
      ss += v * v;
    }
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    if (q == 0) dn[w] = __frcp_rn(fmaxf(rbf((float)sqrt(ss)), 1e-12f));
  }
  __syncthreads();
  for (int k = tid; k < npos * ng; k += 256) {
    const int p = k / ng, g = k - p * ng, wp = lo + p, c = 8 * g;
    const int wi = wp - pw, w = wi - wi0;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (wi >= 0 && wi < Wi && w >= 0 && w < CN_W) {
      const float rd = dn[w];
      const u32* t = (const u32*)&tile[w * S + c];  // 4-byte aligned: S and c are even
      u32 o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const u32 pr = t[j];
        float y[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float a = rbf(__fmul_rn(bf2f((bf16)(e ? pr >> 16 : pr & 0xffff)), rd));
          a = rbf(__fmul_rn(a, scale));
          a = rbf(__fmul_rn(a, gs[c + 2 * j + e]));
          y[e] = cw_silu(a);
        }
        o[j] = pack_bf2(y[0], y[1]);
      }
      v = make_uint4(o[0], o[1], o[2], o[3]);
    }
    *(uint4*)&Xp[((long long)row * Wp + wp) * C + c] = v;
  }
}

#define PACK_NORM_CL4_ARGS                                                                                     \
  bf16 *__restrict__ Xp, const bf16 *__restrict__ X, const bf16 *__restrict__ Xh, int Th, int C, int Ti, int Hi, \
      int Wi, int pt, int ph, int pw, int Hp, int Wp, const void *gamma, int gdt, float scale,                   \
      bf16 *__restrict__ tail, int tail0
extern "C" __global__ void __launch_bounds__(256) conv_pack_norm_cl4(PACK_NORM_CL4_ARGS) {
  pack_norm_cl4(Xp, X, Xh, Th, C, Ti, Hi, Wi, pt, ph, pw, Hp, Wp, gamma, gdt, scale, tail, tail0);
}
// conv_pack_norm_cl4b: the same with at most 40 registers (six blocks per
// SM instead of five), a variant for benchmarks.
extern "C" __global__ void __launch_bounds__(256, 6) conv_pack_norm_cl4b(PACK_NORM_CL4_ARGS) {
  pack_norm_cl4(Xp, X, Xh, Th, C, Ti, Hi, Wi, pt, ph, pw, Hp, Wp, gamma, gdt, scale, tail, tail0);
}

// The packing kernels again, writing the dw kernel's planar layout: Xp
// [C/8][Tp*Hp*Wp][8] (cw_xp_pl) instead of channels last, with the same
// arguments, values and grids (conv_pack_cl_pl ... conv_pack_norm_cl4b_pl).
// Copies rather than a shared template, so the channels-last builds above
// stay the code the default path has always run (same machine code).
__device__ __forceinline__ long long cw_xp_pl(int row, int wp, int Wp, int c) {
  return ((long long)(c >> 3) * gridDim.y * Wp + (long long)row * Wp + wp) * 8;
}

extern "C" __global__ void __launch_bounds__(256) conv_pack_cl_pl(bf16* __restrict__ Xp, const bf16* __restrict__ X,
                                                               const bf16* __restrict__ Xh, int Th, int C, int Ti,
                                                               int Hi, int Wi, int pt, int ph, int pw, int Hp,
                                                               int Wp, int up, int grow) {
  __shared__ bf16 tile[CP_C * CP_S];
  const int tid = threadIdx.x;
  const int wp0 = blockIdx.x * CP_W, row = blockIdx.y, c0 = blockIdx.z * CP_C;
  const int tp = row / Hp, hp = row - tp * Hp;
  const int ti = tp - pt, hi = hp - ph;
  const bool live = ti >= 0 && ti < Ti && hi >= 0 && hi < Hi;
  if (live) {
    const int Hs = Hi >> up, Ws = Wi >> up;  // the stored frame's size
    const long long HWs = (long long)Hs * Ws;
    const bool hist = ti < Th;
    const bf16* src;
    long long cst;
    if (grow > 1) {
      cst = (long long)(Ti / grow) * HWs;
      src = X + (long long)(ti / grow) * HWs + (long long)(ti % grow) * C * cst + (long long)(hi >> up) * Ws;
    } else {
      cst = hist ? (long long)Th * HWs : (long long)(Ti - Th) * HWs;
      src = (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWs + (long long)(hi >> up) * Ws;
    }
    const int w = tid & 63, wi = wp0 + w - pw;
    const bool wok = wi >= 0 && wi < Wi;
    const int ws = wi >> up;
#pragma unroll
    for (int c = tid >> 6; c < CP_C; c += 4) {  // 16 loads in flight per thread
      bf16 v = 0;
      if (wok && c0 + c < C) v = src[(long long)(c0 + c) * cst + ws];
      tile[c * CP_S + w] = v;
    }
    __syncthreads();
  }
  // Each thread writes 8 channels (16 bytes) of one position per step;
  // consecutive threads take consecutive positions of one plane.
  for (int k = tid; k < CP_W * (CP_C / 8); k += 256) {
    const int g = k / CP_W, w = k % CP_W, wp = wp0 + w, c = c0 + 8 * g;
    if (wp >= Wp || c >= C) continue;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (live) {
      const bf16* t = &tile[(8 * g) * CP_S + w];
      v.x = (u32)t[0] | ((u32)t[CP_S] << 16);
      v.y = (u32)t[2 * CP_S] | ((u32)t[3 * CP_S] << 16);
      v.z = (u32)t[4 * CP_S] | ((u32)t[5 * CP_S] << 16);
      v.w = (u32)t[6 * CP_S] | ((u32)t[7 * CP_S] << 16);
    }
    *(uint4*)&Xp[cw_xp_pl(row, wp, Wp, c)] = v;
  }
}

// conv_pack_norm_cl_pl: conv_pack_norm_cl with a planar Xp.
extern "C" __global__ void __launch_bounds__(256) conv_pack_norm_cl_pl(
    bf16* __restrict__ Xp, const bf16* __restrict__ X, const bf16* __restrict__ Xh, int Th, int C, int Ti, int Hi,
    int Wi, int pt, int ph, int pw, int Hp, int Wp, const void* gamma, int gdt, float scale, bf16* __restrict__ tail,
    int tail0) {
  extern __shared__ __align__(16) unsigned char cn_smem[];
  const int S = C + 2;
  bf16* tile = (bf16*)cn_smem;
  float* gs = (float*)(cn_smem + ((CN_W * S * 2 + 15) & ~15));
  float* dn = gs + C;
  const int tid = threadIdx.x;
  const int wp0 = blockIdx.x * CN_W, row = blockIdx.y;
  const int tp = row / Hp, hp = row - tp * Hp;
  const int ti = tp - pt, hi = hp - ph;
  const bool live = ti >= 0 && ti < Ti && hi >= 0 && hi < Hi;
  const int ng = C / 8;
  if (!live) {  // a padding row: zeros
    for (int k = tid; k < CN_W * ng; k += 256) {
      const int w = k / ng, g = k - w * ng, wp = wp0 + w;
      if (wp < Wp) *(uint4*)&Xp[cw_xp_pl(row, wp, Wp, 8 * g)] = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  for (int c = tid; c < C; c += 256) gs[c] = ldv(gamma, gdt, c);
  const long long HWi = (long long)Hi * Wi;
  {
    const bool hist = ti < Th;
    const long long cst = hist ? (long long)Th * HWi : (long long)(Ti - Th) * HWi;
    const bf16* src = (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWi + (long long)hi * Wi;
    const int w = tid & 63, wi = wp0 + w - pw;
    const bool wok = wi >= 0 && wi < Wi;
#pragma unroll 8
    for (int c = tid >> 6; c < C; c += 4) tile[w * S + c] = wok ? src[(long long)c * cst + wi] : (bf16)0;
  }
  __syncthreads();
  if (tail != nullptr && ti >= tail0) {  // raw frame for the next chunk's history, channel-first
    const long long tst = (long long)(Ti - tail0) * HWi;
    bf16* dst = tail + (long long)(ti - tail0) * HWi + (long long)hi * Wi;
    for (int k = tid; k < C * CN_W; k += 256) {
      const int c = k >> 6, w = k & 63, wi = wp0 + w - pw;
      if (wi >= 0 && wi < Wi) dst[(long long)c * tst + wi] = tile[w * S + c];
    }
  }
  {  // squared norms: four threads per position, float64
    const int w = tid >> 2, q = tid & 3;
    double ss = 0.0;
    for (int c = q; c < C; c += 4) {
      const double v = (double)bf2f(tile[w * S + c]);
      ss += v * v;
    }
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    if (q == 0) dn[w] = __frcp_rn(fmaxf(rbf((float)sqrt(ss)), 1e-12f));
  }
  __syncthreads();
  for (int k = tid; k < CN_W * ng; k += 256) {
    const int w = k % CN_W, g = k / CN_W, wp = wp0 + w, c = 8 * g;
    if (wp >= Wp) continue;
    const int wi = wp - pw;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (wi >= 0 && wi < Wi) {
      const float rd = dn[w];
      const u32* t = (const u32*)&tile[w * S + c];  // 4-byte aligned: S and c are even
      u32 o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const u32 pr = t[j];
        float y[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float a = rbf(__fmul_rn(bf2f((bf16)(e ? pr >> 16 : pr & 0xffff)), rd));
          a = rbf(__fmul_rn(a, scale));
          a = rbf(__fmul_rn(a, gs[c + 2 * j + e]));
          y[e] = cw_silu(a);
        }
        o[j] = pack_bf2(y[0], y[1]);
      }
      v = make_uint4(o[0], o[1], o[2], o[3]);
    }
    *(uint4*)&Xp[cw_xp_pl(row, wp, Wp, c)] = v;
  }
}

// pack_norm_cl4_pl: pack_norm_cl4 with a planar Xp.
__device__ __forceinline__ void pack_norm_cl4_pl(bf16* __restrict__ Xp, const bf16* __restrict__ X,
                                              const bf16* __restrict__ Xh, int Th, int C, int Ti, int Hi, int Wi,
                                              int pt, int ph, int pw, int Hp, int Wp, const void* gamma, int gdt,
                                              float scale, bf16* __restrict__ tail, int tail0) {
  extern __shared__ __align__(16) unsigned char cn_smem[];
  const int S = C + 2;
  bf16* tile = (bf16*)cn_smem;
  float* gs = (float*)(cn_smem + ((CN_W * S * 2 + 15) & ~15));
  float* dn = gs + C;
  const int tid = threadIdx.x;
  const int wi0 = blockIdx.x * CN_W, row = blockIdx.y;
  const int tp = row / Hp, hp = row - tp * Hp;
  const int ti = tp - pt, hi = hp - ph;
  const bool live = ti >= 0 && ti < Ti && hi >= 0 && hi < Hi;
  const int ng = C / 8;
  // Padded columns this block writes: its own, plus the borders.
  const int lo = blockIdx.x == 0 ? 0 : wi0 + pw;
  const int hiw = blockIdx.x == gridDim.x - 1 ? Wp : min(wi0 + CN_W + pw, Wp);
  const int npos = hiw - lo;
  if (!live) {  // a padding row: zeros
    for (int k = tid; k < npos * ng; k += 256) {
      const int w = k / ng, g = k - w * ng;
      *(uint4*)&Xp[cw_xp_pl(row, lo + w, Wp, 8 * g)] = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  for (int c = tid; c < C; c += 256) gs[c] = ldv(gamma, gdt, c);
  const long long HWi = (long long)Hi * Wi;
  const int nq = C * (CN_W / 4);  // (channel, 4-column group) items
  {
    const bool hist = ti < Th;
    const long long cst = hist ? (long long)Th * HWi : (long long)(Ti - Th) * HWi;
    const bf16* src = (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWi + (long long)hi * Wi + wi0;
    for (int k0 = tid; k0 < nq; k0 += 256 * 8) {
      uint2 v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int k = k0 + 256 * u, c = k >> 4, j = k & 15;
        v[u] = (k < nq && wi0 + 4 * j < Wi) ? *(const uint2*)(src + (long long)c * cst + 4 * j) : make_uint2(0, 0);
      }
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int k = k0 + 256 * u, c = k >> 4, j = k & 15;
        if (k < nq) {
          bf16* t = &tile[4 * j * S + c];
          t[0] = (bf16)(v[u].x & 0xffff);
          t[S] = (bf16)(v[u].x >> 16);
          t[2 * S] = (bf16)(v[u].y & 0xffff);
          t[3 * S] = (bf16)(v[u].y >> 16);
        }
      }
    }
  }
  __syncthreads();
  if (tail != nullptr && ti >= tail0) {  // raw frame for the next chunk's history, channel-first
    const long long tst = (long long)(Ti - tail0) * HWi;
    bf16* dst = tail + (long long)(ti - tail0) * HWi + (long long)hi * Wi + wi0;
    for (int k = tid; k < nq; k += 256) {
      const int c = k >> 4, j = k & 15;
      if (wi0 + 4 * j < Wi) {
        const bf16* t = &tile[4 * j * S + c];
        *(uint2*)(dst + (long long)c * tst + 4 * j) =
            make_uint2((u32)t[0] | ((u32)t[S] << 16), (u32)t[2 * S] | ((u32)t[3 * S] << 16));
      }
    }
  }
  {  // squared norms: four threads per position, float64 (conv_pack_norm_cl's order)
    const int w = tid >> 2, q = tid & 3;
    double ss = 0.0;
    for (int c = q; c < C; c += 4) {
      const double v = (double)bf2f(tile[w * S + c]);
      ss += v * v;
    }
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    if (q == 0) dn[w] = __frcp_rn(fmaxf(rbf((float)sqrt(ss)), 1e-12f));
  }
  __syncthreads();
  for (int k = tid; k < npos * ng; k += 256) {
    const int p = k % npos, g = k / npos, wp = lo + p, c = 8 * g;
    const int wi = wp - pw, w = wi - wi0;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (wi >= 0 && wi < Wi && w >= 0 && w < CN_W) {
      const float rd = dn[w];
      const u32* t = (const u32*)&tile[w * S + c];  // 4-byte aligned: S and c are even
      u32 o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const u32 pr = t[j];
        float y[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float a = rbf(__fmul_rn(bf2f((bf16)(e ? pr >> 16 : pr & 0xffff)), rd));
          a = rbf(__fmul_rn(a, scale));
          a = rbf(__fmul_rn(a, gs[c + 2 * j + e]));
          y[e] = cw_silu(a);
        }
        o[j] = pack_bf2(y[0], y[1]);
      }
      v = make_uint4(o[0], o[1], o[2], o[3]);
    }
    *(uint4*)&Xp[cw_xp_pl(row, wp, Wp, c)] = v;
  }
}

extern "C" __global__ void __launch_bounds__(256) conv_pack_norm_cl4_pl(PACK_NORM_CL4_ARGS) {
  pack_norm_cl4_pl(Xp, X, Xh, Th, C, Ti, Hi, Wi, pt, ph, pw, Hp, Wp, gamma, gdt, scale, tail, tail0);
}
extern "C" __global__ void __launch_bounds__(256, 6) conv_pack_norm_cl4b_pl(PACK_NORM_CL4_ARGS) {
  pack_norm_cl4_pl(Xp, X, Xh, Th, C, Ti, Hi, Wi, pt, ph, pw, Hp, Wp, gamma, gdt, scale, tail, tail0);
}

// Stride-1 convolution on the padded grid. tmA: Xp [Tp*Hp*Wp][Cin], box
// BK × BM; tmB: Wr [ntap*Cout][Cin], box BK × N. Tiles: ceil(To*Hp*Wp/BM) ·
// ceil(Cout/N), the N tiles of one row tile adjacent (they share A in L2);
// 384 threads. Block b takes tiles b, b + gridDim.x, ...: with one block per
// tile (PERSIST false) the epilogue stages the output in the tiles' memory;
// with a persistent grid (PERSIST true) the staging area is separate, so the
// producer already loads the next tile while the consumers store this one.
//
// BK = 96 (Cin = 96) is split: a stage holds channels 0-63 with the 128-byte
// swizzle and 64-95 with the 64-byte swizzle (maps tmA/tmB and tmA2/tmB2),
// so a K step is a whole tap and A rows move as 128 + 64 bytes instead of
// three 64-byte pieces.
//
// DW (BK = 32, N = 96, kw = 3): the three taps along w share one A load.
// Xp is planar (xq: [C/8][prow][8], cw_xp) and a stage holds, per consumer
// warpgroup, rows [r, r + 64·MW + 2) of a 32-channel chunk at tap (dt, dh)
// as four unswizzled 16-byte-wide planes, plus the B tiles of taps (dt, dh,
// 0..2) from wq (conv_wpack_dw_kernel: each (tap, chunk) tile already in
// its unswizzled shared-memory image, the three w taps adjacent). Tap dw
// reads the A rows from r + dw: an unswizzled descriptor may start at any
// row, so the shift is an address offset and each activation byte is
// copied from L2 once per (dt, dh) instead of three times (A bytes per
// tile 1.33 → 0.45 MB at Cin = 96, 256 rows). All copies are 1-D bulk
// copies (8 planes of 2080 bytes and one 18 KiB B run per stage) with no
// bounds: rows past the last plane are read from the slack the launcher
// allocates after Xp; they only reach output rows that are not written.
template <int BK, int N, int MW, int NS, bool PERSIST, bool DW = false>
__device__ __forceinline__ void conv_tma(const HpTmaDesc* tmA, const HpTmaDesc* tmB, const HpTmaDesc* tmA2,
                                         const HpTmaDesc* tmB2, bf16* __restrict__ Y,
                                         const void* bias, int bdt, const bf16* __restrict__ R, int Cin, int Cout,
                                         int kt, int kh, int kw, int Hp, int Wp, int To, int Ho, int Wo, int relu,
                                         int ycl, long long yoff, int rcl, long long roff,
                                         const bf16* __restrict__ xq = nullptr, long long prow = 0,
                                         const bf16* __restrict__ wq = nullptr) {
  constexpr int BM = 128 * MW;
  constexpr bool SPLIT = BK == 96;
  static_assert(!DW || (BK == 32 && N == 96), "DW: 32-channel steps, N 96");
  constexpr int AR = 64 * MW + 2;                             // DW: A rows per warpgroup (2 of halo)
  constexpr u32 AW = (4 * AR * 16 + 127) / 128 * 128;         // DW: a warpgroup's four planes
  constexpr u32 BT = N * BK * 2;                              // one tap's B tile
  constexpr u32 AB = DW ? 2 * AW : BM * BK * 2, BB = DW ? 3 * BT : BT;
  constexpr u32 SB = DW ? (AB + BB + 511) / 512 * 512 : AB + BB;  // DW: B first
  constexpr u32 TX = DW ? BB + 2 * 4 * AR * 16 : SB;           // bytes the copies of a stage deliver
  constexpr int SO = BM + 8;  // epilogue staging row stride (bf16)
  constexpr u32 STG = PERSIST ? (N * SO * 2 + 15) / 16 * 16 : 0;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 base = HP_ALIGN_SMEM(hp_smem(smem));
  unsigned char* gbase = smem + (base - hp_smem(smem));
  bf16* so = (bf16*)(gbase + (PERSIST ? NS * SB : 0));
  const u32 bars = base + NS * SB + STG;  // full[s] at bars + 8s, empty[s] at bars + 8(NS+s)
  const int tid = threadIdx.x, wg = tid >> 7;
  const int nNt = (Cout + N - 1) / N;
  const int HWp = Hp * Wp, nci = Cin / BK, nk = (DW ? kt * kh : kt * kh * kw) * nci;
  const int ntiles = ((To * HWp + BM - 1) / BM) * nNt;
  if (tid == 0) {
    for (int s = 0; s < NS; ++s) {
      hp_mbar_init(bars + 8 * s, 1);
      hp_mbar_init(bars + 8 * (NS + s), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");
    if (tid == 256) {
      int s = 0, ph = 0, issued = 0;
      for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        const int m0 = (tile / nNt) * BM, n0 = (tile % nNt) * N;
        int cic = 0, tap = 0, a = 0, bb = 0, c = 0;
        for (int ks = 0; ks < nk; ++ks, ++issued) {
          if (issued >= NS) hp_mbar_wait(bars + 8 * (NS + s), ph ^ 1);  // consumers released the stage
          const u32 full = bars + 8 * s;
          hp_mbar_expect_tx(full, TX);
          const int arow = m0 + a * HWp + bb * Wp + c, brow = tap * Cout + n0;
          if constexpr (DW) {
            const u32 st = base + s * SB;
            cw_bulk_load(st, wq + ((((long long)(n0 / N) * kt + a) * kh + bb) * nci + cic) * (3 * N * BK), BB, full);
#pragma unroll
            for (int w2 = 0; w2 < 2; ++w2)
#pragma unroll
              for (int pl = 0; pl < 4; ++pl)
                cw_bulk_load(st + BB + w2 * AW + pl * (AR * 16),
                             xq + ((long long)(cic * 4 + pl) * prow + arow + w2 * 64 * MW) * 8, AR * 16, full);
            if (++s == NS) s = 0, ph ^= 1;
            if (++cic == nci) {
              cic = 0;
              if (++bb == kh) bb = 0, ++a;
            }
            continue;
          } else if constexpr (SPLIT) {
            hp_tma_load_2d(base + s * SB, tmA, 0, arow, full);
            hp_tma_load_2d(base + s * SB + BM * 128, tmA2, 64, arow, full);
            hp_tma_load_2d(base + s * SB + AB, tmB, 0, brow, full);
            hp_tma_load_2d(base + s * SB + AB + N * 128, tmB2, 64, brow, full);
          } else {
            hp_tma_load_2d(base + s * SB, tmA, cic * BK, arow, full);
            hp_tma_load_2d(base + s * SB + AB, tmB, cic * BK, brow, full);
          }
          if (++s == NS) s = 0, ph ^= 1;
          if (++cic == nci) {
            cic = 0;
            ++tap;
            if (++c == kw) {
              c = 0;
              if (++bb == kh) bb = 0, ++a;
            }
          }
        }
      }
    }
  } else {  // consumers
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;");
    const int lane = tid & 31, w4 = (tid >> 5) & 3;
    const int g = lane >> 2, t4 = lane & 3;
    int s = 0, ph = 0;
    for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
      const int m0 = (tile / nNt) * BM, n0 = (tile % nNt) * N;
      float acc[MW][N / 2];
#pragma unroll
      for (int mi = 0; mi < MW; ++mi)
#pragma unroll
        for (int i = 0; i < N / 2; ++i) acc[mi][i] = 0.f;
      int prev = 0;
      for (int ks = 0; ks < nk; ++ks) {
        hp_mbar_wait(bars + 8 * s, ph);
        hp_wg_fence();
        if constexpr (DW) {
          const u32 sa = base + s * SB + BB + wg * AW, sb = base + s * SB;
#pragma unroll
          for (int d = 0; d < 3; ++d)
#pragma unroll
            for (int kk = 0; kk < 2; ++kk)
#pragma unroll
              for (int mi = 0; mi < MW; ++mi)
                cw_mma<N>(acc[mi], cw_desc_ns(sa + kk * 2 * (AR * 16) + (mi * 64 + d) * 16, AR * 16),
                          cw_desc_ns(sb + d * BT + kk * 2 * (N * 16), N * 16));
        } else if constexpr (SPLIT) {
          const u32 a0 = base + s * SB + wg * (64 * MW) * 128, a1 = base + s * SB + BM * 128 + wg * (64 * MW) * 64;
          const u32 b0 = base + s * SB + AB, b1 = b0 + N * 128;
#pragma unroll
          for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int mi = 0; mi < MW; ++mi)
              cw_mma<N>(acc[mi], cw_desc<64>(a0 + mi * 64 * 128 + kk * 32), cw_desc<64>(b0 + kk * 32));
#pragma unroll
          for (int kk = 0; kk < 2; ++kk)
#pragma unroll
            for (int mi = 0; mi < MW; ++mi)
              cw_mma<N>(acc[mi], cw_desc<32>(a1 + mi * 64 * 64 + kk * 32), cw_desc<32>(b1 + kk * 32));
        } else {
          const u32 sa = base + s * SB + wg * (64 * MW) * (BK * 2), sb = base + s * SB + AB;
#pragma unroll
          for (int kk = 0; kk < BK / 16; ++kk)
#pragma unroll
            for (int mi = 0; mi < MW; ++mi)
              cw_mma<N>(acc[mi], cw_desc<BK>(sa + mi * 64 * BK * 2 + kk * 32), cw_desc<BK>(sb + kk * 32));
        }
        hp_wg_commit();
        hp_wg_wait<1>();  // the previous step's MMAs are done: release its stage
        if (ks > 0 && lane == 0) hp_mbar_arrive(bars + 8 * (NS + prev));
        prev = s;
        if (++s == NS) s = 0, ph ^= 1;
      }
      hp_wg_wait<0>();
      if (nk > 0 && lane == 0) hp_mbar_arrive(bars + 8 * (NS + prev));
#pragma unroll
      for (int mi = 0; mi < MW; ++mi)
#pragma unroll
        for (int i = 0; i < N / 2; ++i) cw_reg_fence(acc[mi][i]);

      // Epilogue: the output tile transposed into shared memory [N][BM]
      // (channel rows, position columns), then coalesced channel-first
      // stores of the rows that are real output positions. The first
      // barrier also ends the previous tile's reads of the staging area
      // (and, without PERSIST, every MMA's reads of the stages it reuses).
      cw_consumers_sync();
#pragma unroll
      for (int j = 0; j < N / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = 8 * j + 2 * t4 + e, co = n0 + n;
          const float bv = (bdt && co < Cout) ? ldv(bias, bdt, co) : 0.f;
#pragma unroll
          for (int mi = 0; mi < MW; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int m = wg * 64 * MW + mi * 64 + w4 * 16 + g + 8 * h;
              float v = rbf(acc[mi][4 * j + 2 * h + e]);
              if (bdt) v = __fadd_rn(v, bv);
              so[n * SO + m] = f2bf(v);
            }
        }
      }
      cw_consumers_sync();
      const int m = tid % BM, r = m0 + m;
      const int t = r / HWp, rem = r - t * HWp, hh = rem / Wp, ww = rem - hh * Wp;
      if (ycl) {
        // Packed output (TAEHV's chained convolutions): Y is the next
        // convolution's zero-padded channels-last input, row r of this
        // grid landing at row r + yoff; rows that are no output position
        // are that layout's zero borders, so they are written as zeros.
        // Eight channels (16 bytes) per store.
        if (r < To * HWp) {
          constexpr int STEP = 256 / BM;
          const bool live = hh < Ho && ww < Wo;
          bf16* yr = Y + (long long)(r + yoff) * Cout;
          const long long P = (long long)To * Ho * Wo, off = ((long long)t * Ho + hh) * Wo + ww;
          for (int n8 = (tid / BM) * 8; n8 < N; n8 += 8 * STEP) {
            const int co = n0 + n8;
            if (co >= Cout) break;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (live) {
              float rv[8];
              if (R != nullptr) {
                if (rcl) {
                  const uint4 q = *(const uint4*)(R + (long long)(r + roff) * Cout + co);
                  const u32 qw[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                  for (int j = 0; j < 4; ++j) rv[2 * j] = bf2f((bf16)(qw[j] & 0xffff)), rv[2 * j + 1] = bf2f((bf16)(qw[j] >> 16));
                } else {
#pragma unroll
                  for (int j = 0; j < 8; ++j) rv[j] = bf2f(R[(long long)(co + j) * P + off]);
                }
              }
              u32 o[4];
#pragma unroll
              for (int j = 0; j < 4; ++j) {
                bf16 a = so[(n8 + 2 * j) * SO + m], b = so[(n8 + 2 * j + 1) * SO + m];
                if (R != nullptr) {
                  a = f2bf(__fadd_rn(bf2f(a), rv[2 * j]));
                  b = f2bf(__fadd_rn(bf2f(b), rv[2 * j + 1]));
                }
                if (relu && (a & 0x8000)) a = 0;
                if (relu && (b & 0x8000)) b = 0;
                o[j] = (u32)a | ((u32)b << 16);
              }
              v = make_uint4(o[0], o[1], o[2], o[3]);
            }
            *(uint4*)(yr + co) = v;
          }
        }
      } else if (t < To && hh < Ho && ww < Wo) {
        // U channels per step, the residual's loads issued together (one
        // global latency per step, not per channel). rcl: the residual is
        // in the packed layout (row r + roff, channels contiguous).
        constexpr int STEP = 256 / BM, U = N < 8 * STEP ? N / STEP : 8;
        const long long P = (long long)To * Ho * Wo, off = ((long long)t * Ho + hh) * Wo + ww;
        for (int nb = tid / BM; nb < N; nb += STEP * U) {
          bf16 rv[U];
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const int n = nb + u * STEP, co = n0 + n;
            rv[u] = (R != nullptr && n < N && co < Cout) ? R[rcl ? (long long)(r + roff) * Cout + co : (long long)co * P + off] : (bf16)0;
          }
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const int n = nb + u * STEP, co = n0 + n;
            if (n >= N || co >= Cout) continue;
            bf16 v = so[n * SO + m];
            if (R != nullptr) v = f2bf(__fadd_rn(bf2f(v), bf2f(rv[u])));  // the residual add, rounded as Add does
            if (relu && (v & 0x8000)) v = 0;  // ReLU: negatives (and -0) to +0; NaN with the sign bit too
            Y[(long long)co * P + off] = v;
          }
        }
      }
    }
  }
}

#define CONV_TMA_K(BK, N, MW, NS, PERSIST, SUF)                                                                \
  extern "C" __global__ void __launch_bounds__(384, 1) conv3d_tma_k##BK##_n##N##_m##MW##SUF(                    \
      const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB, bf16* Y, const void* bias, \
      int bdt, const bf16* R, int Cin, int Cout, int kt, int kh, int kw, int Hp, int Wp, int To, int Ho,         \
      int Wo, int relu, int ycl, long long yoff, int rcl, long long roff) {                                    \
    conv_tma<BK, N, MW, NS, PERSIST>(&tmA, &tmB, &tmA, &tmB, Y, bias, bdt, R, Cin, Cout, kt, kh, kw, Hp, Wp, To, \
                                     Ho, Wo, relu, ycl, yoff, rcl, roff);                                       \
  }
// conv3d_tma_k<BK>_n<N>_m<MW>: one block per tile; ..._p: persistent, NSP
// stages plus a separate staging area. Stage bytes: k64 n192 m1 40 KiB, k64
// n96 m2 44 KiB, k32 n96 m2 22 KiB, k32 n192 m1 20 KiB, n8 (Cout ≤ 8: the
// 96→3 head) 16.5 or 33 KiB. conv_sm90.go sizes the shared memory from the
// same numbers (convTMAPick).
#define CONV_TMA(BK, N, MW, NS, NSP)          \
  CONV_TMA_K(BK, N, MW, NS, false, )          \
  CONV_TMA_K(BK, N, MW, NSP, true, _p)
CONV_TMA(64, 192, 1, 5, 4)
CONV_TMA(64, 96, 2, 4, 3)
CONV_TMA(32, 96, 2, 8, 7)
CONV_TMA(32, 192, 1, 8, 8)
CONV_TMA(32, 8, 2, 8, 8)
CONV_TMA(64, 8, 2, 6, 6)
// TAEHV's widths (64, 128, 256): N 64 with 256-row tiles (stage 40 KiB), N
// 128 with 256-row tiles (48 KiB), N 256 with 128-row tiles (48 KiB); the
// persistent variants leave room for the [N][BM+8] staging tile.
CONV_TMA(64, 64, 2, 5, 4)
CONV_TMA(64, 128, 2, 4, 3)
CONV_TMA(64, 256, 1, 4, 3)
// conv3d_tma_k96_n96_m2: Cin = 96 with whole-tap K steps (stage 66 KiB,
// three stages, one block per tile).
extern "C" __global__ void __launch_bounds__(384, 1) conv3d_tma_k96_n96_m2(
    const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB,
    const __grid_constant__ HpTmaDesc tmA2, const __grid_constant__ HpTmaDesc tmB2, bf16* Y, const void* bias,
    int bdt, const bf16* R, int Cin, int Cout, int kt, int kh, int kw, int Hp, int Wp, int To, int Ho, int Wo,
    int relu, int ycl, long long yoff, int rcl, long long roff) {
  conv_tma<96, 96, 2, 3, false>(&tmA, &tmB, &tmA2, &tmB2, Y, bias, bdt, R, Cin, Cout, kt, kh, kw, Hp, Wp, To, Ho, Wo,
                                relu, ycl, yoff, rcl, roff);
}
// conv3d_tma_k32_n96_m2_dw: 32-channel steps of whole (dt, dh) tap rows,
// the three dw taps sharing one A load (DW above): Xp planar with prow rows
// per plane (and slack after it), Wq from conv_wpack_dw_kernel; stage 34.5
// KiB, six stages, one block per tile. ..._dw_p: persistent, five stages
// and the staging tile.
#define CONV_DW(NS, PERSIST, SUF)                                                                                     \
  extern "C" __global__ void __launch_bounds__(384, 1) conv3d_tma_k32_n96_m2_dw##SUF(                                  \
      const bf16* __restrict__ Xp, long long prow, const bf16* __restrict__ Wq, bf16* Y, const void* bias, int bdt,   \
      const bf16* R, int Cin, int Cout, int kt, int kh, int kw, int Hp, int Wp, int To, int Ho, int Wo, int relu,     \
      int ycl, long long yoff, int rcl, long long roff) {                                                             \
    conv_tma<32, 96, 2, NS, PERSIST, true>(nullptr, nullptr, nullptr, nullptr, Y, bias, bdt, R, Cin, Cout, kt, kh, kw, \
                                           Hp, Wp, To, Ho, Wo, relu, ycl, yoff, rcl, roff, Xp, prow, Wq);              \
  }
CONV_DW(6, false, )
CONV_DW(5, true, _p)

// conv_wpack_dw_kernel repacks a weight [Cout][Cin][kt][kh][3] (any float
// dtype) for conv3d_tma_k32_n96_m2_dw: tiles [Cout/96 rounded up][kt][kh]
// [Cin/32][dw 0..2], each the unswizzled K-major image of 96 output rows ×
// 32 input channels ([4 planes of 8 channels][96 rows][8]); rows past Cout
// are zeros.
extern "C" __global__ void conv_wpack_dw_kernel(bf16* dst, const void* w, int wdt, int Cout, int Cin, int ntap, int ntiles) {
  const long long n = (long long)ntiles * ntap * Cin * 96;
  const int nci = Cin / 32;
  GRID_STRIDE(i, n) {
    const int e = (int)(i & 7), r = (int)((i >> 3) % 96);
    long long q = i / (8 * 96);
    const int pl = (int)(q & 3);
    q >>= 2;
    const int d = (int)(q % 3);
    q /= 3;
    const int cic = (int)(q % nci);
    q /= nci;
    const int tq = (int)(q % (ntap / 3)), nt = (int)(q / (ntap / 3));
    const int co = nt * 96 + r, ci = cic * 32 + pl * 8 + e, tap = tq * 3 + d;
    dst[i] = co < Cout ? f2bf(ldv(w, wdt, ((long long)co * Cin + ci) * ntap + tap)) : (bf16)0;
  }
}
