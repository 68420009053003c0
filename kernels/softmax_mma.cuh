// softmax_mma.cuh: the online-softmax step and the P·V product shared by
// the mma.sync flash kernels: attention.cu (dense), sla_sparse.cu (SLA's
// sparse branch) and sla_sage.cuh (SageSLA's). A warp owns 16 query rows; in
// the m16n8 accumulator layout a thread holds, per 8-key tile nt, keys
// 8nt+2·t4 and +1 of row g (elements 0, 1) and of row g+8 (elements 2, 3),
// so a row's values lie in the four threads of a quad. Each kernel keeps
// its own scaling, masking and exp arithmetic (passed in as functions),
// which is where their numerics differ (docs/NUMERICS.md §6).
#pragma once
#include "mma.cuh"

// Q fragments (A of m16n8k16) of this warp's 16 rows of a [rows][STR] bf16
// tile; they stay in registers for the whole key loop.
template <int D, int STR>
__device__ __forceinline__ void sp_load_q(u32 (&qf)[D / 16][4], const bf16* sQ, int warp, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    sp_ldsm_x4(qf[kk], &sQ[(warp * 16 + (lane & 15)) * STR + kk * 16 + (lane >> 4) * 8]);
}

// S += Q·Kᵀ in float32 for BN keys of a [BN][STR] bf16 K tile (the caller
// zeroes s).
template <int D, int BN, int STR>
__device__ __forceinline__ void sp_qk_bf16(float (&s)[BN / 8][4], const u32 (&qf)[D / 16][4], const bf16* k,
                                           int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < BN / 16; ++np) {
      u32 b[4];
      sp_ldsm_x4(b, &k[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * STR + kk * 16 + ((lane >> 3) & 1) * 8]);
      sp_mma_bf16(s[2 * np], qf[kk], b[0], b[1]);
      sp_mma_bf16(s[2 * np + 1], qf[kk], b[2], b[3]);
    }
  }
}

// The f of sp_row_max for scores that need no change (attention.cu masks
// only its last tile, before the step). A tag rather than an identity
// function: the no-op stores of one made NVVM order the code differently.
struct sp_scores_as_is {};
template <class F>
struct sp_keep {
  enum { value = 0 };
};
template <>
struct sp_keep<sp_scores_as_is> {
  enum { value = 1 };
};

// Sets s[nt][e] = f(nt, e) (the kernel's scaling and masking of a score,
// or its conversion from int32) and returns the row maxima of rows g and
// g+8 over the quad (mx0, mx1 start at the caller's initial value).
template <int NT, class F>
__device__ __forceinline__ void sp_row_max(float (&s)[NT][4], float& mx0, float& mx1, const F& f) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if constexpr (!sp_keep<F>::value) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = f(nt, e);
    }
    mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
    mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
  }
  mx0 = quad_max(mx0);
  mx1 = quad_max(mx1);
}

// Moves the running maxima to max(m, sc(mx)) (sc: the kernel's score
// scaling, in exp2 units) and returns the factors a = 2^(m_old − m_new) by
// which O and the row sums shrink (0 on the first tile, where m = −inf).
template <class Sc>
__device__ __forceinline__ void sp_max_update(float& m0, float& m1, float mx0, float mx1, float& a0, float& a1,
                                              const Sc& sc) {
  const float n0 = fmaxf(m0, sc(mx0)), n1 = fmaxf(m1, sc(mx1));
  a0 = exp2f(m0 - n0);
  a1 = exp2f(m1 - n1);
  m0 = n0;
  m1 = n1;
}

// O *= a, row g by a0 and row g+8 by a1.
template <int ND>
__device__ __forceinline__ void sp_rescale_o(float (&o)[ND][4], float a0, float a1) {
#pragma unroll
  for (int x = 0; x < ND; ++x) {
    o[x][0] *= a0;
    o[x][1] *= a0;
    o[x][2] *= a1;
    o[x][3] *= a1;
  }
}

// One flash-attention online-softmax step over a score tile (FlashAttention
// -2, exp2 domain): s[nt][e] = f(nt, e), m = max(m, sc(row max)), p =
// 2^(sc(s) − m) in place, l = l·a + Σp and O *= a. attention.cu passes sc =
// ·scale·log2e (fused into the exponent's FMA), sla_sparse.cu scales and
// masks in f and passes the identity.
template <int NT, int ND, class F, class Sc>
__device__ __forceinline__ void sp_softmax_step(float (&s)[NT][4], float (&o)[ND][4], float& m0, float& m1, float& l0,
                                                float& l1, const F& f, const Sc& sc) {
  float mx0 = -INFINITY, mx1 = -INFINITY, a0, a1;
  sp_row_max(s, mx0, mx1, f);
  sp_max_update(m0, m1, mx0, mx1, a0, a1, sc);
  const float n0 = m0, n1 = m1;
  float r0 = 0.f, r1 = 0.f;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    s[nt][0] = exp2f(sc(s[nt][0]) - n0);
    s[nt][1] = exp2f(sc(s[nt][1]) - n0);
    s[nt][2] = exp2f(sc(s[nt][2]) - n1);
    s[nt][3] = exp2f(sc(s[nt][3]) - n1);
    r0 += s[nt][0] + s[nt][1];
    r1 += s[nt][2] + s[nt][3];
  }
  l0 = l0 * a0 + r0;
  l1 = l1 * a1 + r1;
  sp_rescale_o(o, a0, a1);
}

// O += P·V with P (float probabilities, rounded to bf16 here) from
// registers: the m16n8 accumulator layout of P is exactly the A-fragment
// layout. v: the stage's [BN keys][STR] bf16 V tile.
template <int D, int BN, int STR>
__device__ __forceinline__ void sp_pv_bf16(float (&o)[D / 8][4], const float (&p)[BN / 8][4], const bf16* v,
                                           int lane) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    u32 a[4] = {pack_bf2(p[2 * kk][0], p[2 * kk][1]), pack_bf2(p[2 * kk][2], p[2 * kk][3]),
                pack_bf2(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack_bf2(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      u32 b[4];
      sp_ldsm_x4_t(b, &v[(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STR + dp * 16 + (lane >> 4) * 8]);
      sp_mma_bf16(o[2 * dp], a, b[0], b[1]);
      sp_mma_bf16(o[2 * dp + 1], a, b[2], b[3]);
    }
  }
}
