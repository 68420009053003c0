// mma.cuh: shared-memory copies, ldmatrix and mma.sync wrappers shared by
// the mma.sync tensor-core kernels (attention.cu, sla_sparse.cu,
// sla_sage.cu), and the e4m3 rounding and epilogue store of the SLA/SageSLA
// kernels.
#pragma once
#include "common.cuh"

__device__ __forceinline__ u32 sp_smem_addr(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}
// 16-byte async copy; pred false writes zeros (rows past L must be finite).
__device__ __forceinline__ void sp_cp16(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(sp_smem_addr(dst)), "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void sp_commit() { asm volatile("cp.async.commit_group;"); }
__device__ __forceinline__ void sp_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }
__device__ __forceinline__ void sp_ldsm_x4(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sp_smem_addr(p)));
}
__device__ __forceinline__ void sp_ldsm_x4_t(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sp_smem_addr(p)));
}
__device__ __forceinline__ void sp_mma_bf16(float* c, const u32* a, u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void sp_mma_s8(int* c, const u32* a, u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Rounds to the nearest float8 e4m3fn value (ties to even), saturating to
// ±448, as tensor.E4M3FromF32 (and cvt.rn.satfinite.e4m3x2).
__device__ __forceinline__ float e4m3r(float x) {
  if (x != x) return x;
  const float a = fabsf(x);
  float r;
  if (a < 0.015625f) {  // subnormal range: steps of 2^-9
    r = rintf(a * 512.f) * (1.f / 512.f);
  } else {  // keep 3 mantissa bits, round half to even
    u32 u = __float_as_uint(a);
    u += 0x7FFFFu + ((u >> 20) & 1u);
    r = __uint_as_float(u & 0xFFF00000u);
  }
  return copysignf(fminf(r, 448.f), x);
}

// Epilogue: out[row, col..col+1] = bf16(bf16(a) + o_l) in dtype odt.
__device__ __forceinline__ void sp_store2(void* out, int odt, const bf16* ol, long long i, float a0, float a1) {
  float x0 = rbf(a0), x1 = rbf(a1);
  if (ol) {
    x0 = rbf(x0 + bf2f(ol[i]));
    x1 = rbf(x1 + bf2f(ol[i + 1]));
  }
  stv(out, odt, i, x0);
  stv(out, odt, i + 1, x1);
}
