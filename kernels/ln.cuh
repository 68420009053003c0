// ln.cuh: bf16 row helpers shared by vec.cu's row kernels and the fused
// LayerNorm+int8 quantiser (int8_act_sm90a.cu). The per-element arithmetic
// of the LayerNorm lives here once, so that both produce bit-identical
// values (the fused kernel's contract is "the same bf16 as AddLayerNorm,
// then the quantiser").
#pragma once
#include "common.cuh"

struct bf8 {
  uint4 u;
};

__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint4 pack8(const float* f) {
  uint4 u;
  u.x = pack_bf2(f[0], f[1]);
  u.y = pack_bf2(f[2], f[3]);
  u.z = pack_bf2(f[4], f[5]);
  u.w = pack_bf2(f[6], f[7]);
  return u;
}

// Loads 8 consecutive operand values from index c (c % 8 == 0) of a vector
// of run-time dtype dt: two float4 or one uint4 load instead of eight.
__device__ __forceinline__ void ld8v(const void* p, int dt, long long c, float* f) {
  if (dt == DT_BF16) {
    unpack8(((const uint4*)p)[c / 8], f);
  } else {
    const float4 a = ((const float4*)p)[c / 4], b = ((const float4*)p)[c / 4 + 1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  }
}

// GELU, tanh approximation, in float32 (ew_bf16_kernel op 2 and the int8
// GEMM's GELU epilogue: one definition, so both give the same bits).
__device__ __forceinline__ float gelu_tanh_f(float u) {
  const float k0 = 0.7978845608028654f;
  return 0.5f * u * (1.f + tanhf(k0 * (u + 0.044715f * u * u * u)));
}

// The residual update of a row element, rounded to bf16: x + y, or
// x + bf16(y·bf16(gate)) with a gate (TD's `x + y * e.type_as(x)`).
__device__ __forceinline__ float ln_add_elem(float x, float y, bool gated, float g) {
  return rbf(gated ? __fadd_rn(x, rbf(__fmul_rn(y, rbf(g)))) : x + y);
}

// One term of the variance sum: q + (v - mean)².
__device__ __forceinline__ float ln_sq_acc(float v, float mean, float q) {
  const float d = __fsub_rn(v, mean);
  return __fmaf_rn(d, d, q);
}

// One normalised element before its final bf16 rounding: (v - mean)·rstd,
// then ·w and +b when wdt/bdt are set, then with nv != 0 the DiT
// modulation bf16(·)·(1+scale)+shift. Every operation rounds on its own (no
// contraction), so each caller gets the same bits.
__device__ __forceinline__ float ln_elem(float v, float mean, float rstd, int wdt, float wv, int bdt, float bv,
                                         long long nv, float scv, float shv) {
  float r = __fmul_rn(__fsub_rn(v, mean), rstd);
  if (wdt) r = __fmul_rn(r, wv);
  if (bdt) r = __fadd_rn(r, bv);
  if (nv) r = __fadd_rn(__fmul_rn(rbf(r), 1.f + scv), shv);
  return r;
}
