// softmax_wgmma.cuh: the online-softmax step and the register-level pieces
// around it shared by the Hopper (wgmma, sm_90a) flash kernels: dense
// attention (attention_wgmma.cuh) and SLA's sparse branch
// (sla_sparse_sm90a.cu). A warpgroup's m64nN accumulator gives each thread,
// per 8-column group c, columns 8c+2·t4 and +1 of row r (elements 4c, 4c+1)
// and of row r+8 (4c+2, 4c+3), so a row lies in the four threads of a quad,
// as in the mma.sync kernels (softmax_mma.cuh).
#pragma once
#include "hopper.cuh"

// Keeps the compiler from moving accumulator reads/writes across wgmma.
__device__ __forceinline__ void reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void reg_fence(int& r) { asm volatile("" : "+r"(r)::"memory"); }

// 2^x on the special-function unit, flushing subnormal results to zero
// (such probabilities are below bf16's resolution of the row sum anyway).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Online softmax of a finished, masked S of SN keys, in place: s becomes
// the probabilities p = 2^(s' − m); updates the row maxima and sums and
// returns the factors a0, a1 that O must be scaled by before P·V is added
// (0 on the first tile, where m = −inf). SCALE (attention): s' = s·scale_log2,
// fused into the exponent's FMA; otherwise (SLA) s is already s'.
template <int SN, bool SCALE>
__device__ __forceinline__ void softmax_rows(float* s, float& m0, float& m1, float& l0, float& l1, float& a0,
                                             float& a1, float scale_log2) {
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int c = 0; c < SN / 8; ++c) {
    mx0 = fmaxf(mx0, fmaxf(s[4 * c], s[4 * c + 1]));
    mx1 = fmaxf(mx1, fmaxf(s[4 * c + 2], s[4 * c + 3]));
  }
  mx0 = quad_max(mx0);
  mx1 = quad_max(mx1);
  const float n0 = fmaxf(m0, SCALE ? mx0 * scale_log2 : mx0), n1 = fmaxf(m1, SCALE ? mx1 * scale_log2 : mx1);
  a0 = ex2(m0 - n0);
  a1 = ex2(m1 - n1);
  m0 = n0;
  m1 = n1;
  float r0 = 0.f, r1 = 0.f;
#pragma unroll
  for (int c = 0; c < SN / 8; ++c) {
    if (SCALE) {
      s[4 * c] = ex2(fmaf(s[4 * c], scale_log2, -n0));
      s[4 * c + 1] = ex2(fmaf(s[4 * c + 1], scale_log2, -n0));
      s[4 * c + 2] = ex2(fmaf(s[4 * c + 2], scale_log2, -n1));
      s[4 * c + 3] = ex2(fmaf(s[4 * c + 3], scale_log2, -n1));
    } else {
      s[4 * c] = ex2(s[4 * c] - n0);
      s[4 * c + 1] = ex2(s[4 * c + 1] - n0);
      s[4 * c + 2] = ex2(s[4 * c + 2] - n1);
      s[4 * c + 3] = ex2(s[4 * c + 3] - n1);
    }
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
