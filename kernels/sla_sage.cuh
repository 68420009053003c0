// sla_sage.cuh: the SageSLA sparse kernel template (docs/NUMERICS.md §6.3) and
// its e4m3 helpers, shared by sla_sage.cu (P·V on bf16 tensor cores) and
// sla_sage_fp8.cu (P·V on e4m3 mma.sync, sm_89+ with NVRTC 12.4+; a module
// of its own so that a toolchain without it costs only that path).
#pragma once
#include "softmax_mma.cuh"

// The e4m3 mma.sync (sm_89+) needs PTX ISA 8.4 (NVRTC 12.4+); without it
// the fp8 kernels are built as stubs and sage_fp8_supported says 0.
// sla_sage.cu defines SAGE_NO_FP8: the bf16 module never holds e4m3 code.
#if !defined(SAGE_NO_FP8) && defined(__CUDACC_VER_MAJOR__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890 && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 4))
#define SAGE_FP8 1
#else
#define SAGE_FP8 0
#endif


// c += a·b for one m16n8k32 e4m3 tile, float32 accumulation.
__device__ __forceinline__ void sp_mma_e4m3(float* c, const u32* a, u32 b0, u32 b1) {
#if SAGE_FP8
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// e4m3fn bit pattern of a value that is already e4m3-exact (|r| ≤ 448).
__device__ __forceinline__ u32 e4m3_bits(float r) {
  const u32 u = __float_as_uint(r), sgn = (u >> 24) & 0x80u;
  const float a = fabsf(r);
  if (a == 0.f) return sgn;
  if (a < 0.015625f) return sgn | (u32)(a * 512.f);  // subnormal: mantissa/8 · 2^-6
  return sgn | ((((u >> 23) & 0xFFu) - 120u) << 3) | ((u >> 20) & 7u);
}

// Four floats rounded to e4m3 (round to nearest even, satfinite) in one
// register, x0 in the lowest byte.
__device__ __forceinline__ u32 sp_e4m3x4(float x0, float x1, float x2, float x3) {
#if SAGE_FP8
  unsigned short lo, hi;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(x1), "f"(x0));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(x3), "f"(x2));
  return (u32)lo | ((u32)hi << 16);
#else
  return e4m3_bits(e4m3r(x0)) | (e4m3_bits(e4m3r(x1)) << 8) | (e4m3_bits(e4m3r(x2)) << 16) |
         (e4m3_bits(e4m3r(x3)) << 24);
#endif
}

// Position p of a 32-key chunk of the fp8 V layout holds key kperm(p): the
// keys a thread's P accumulators hold (2t, 2t+1, 8+2t, 9+2t and 16 more)
// become consecutive k of its m16n8k32 A fragment, so P needs no shuffle.
__device__ __forceinline__ int kperm(int p) {
  const int q = p & 15, t = q >> 2, j = q & 3;
  return (p & 16) + 2 * t + (j & 1) + 8 * (j >> 1);
}

// SageSLA sparse branch (sm90 kernel semantics, package sla's sageSparse):
// int32 S = qi·ki, c = sm·sq·sk (last visited block: S·(sq·sk) and c = sm),
// m starts at −5e6 and d at 1, p = exp2(fma(S, c, −m + 8.807)), d += p,
// o += e4m3(p)·v8, out = o·(1/d)·vs. V: without FP8 e4m3 values as bf16
// [B, L, W] and P·V on bf16 mma; with FP8 sage_v8t_kernel's bytes (Lp keys
// per channel) and the e4m3 mma.
template <int NW, int BK, bool FP8, int D>
__device__ __forceinline__ void sage_sparse(const signed char* __restrict__ Qi, const signed char* __restrict__ Ki,
                                            const void* __restrict__ Vp, int Lp, const float* __restrict__ sq,
                                            const float* __restrict__ sk, const float* __restrict__ vs,
                                            const bf16* __restrict__ OL, void* out, int odt,
                                            const int* __restrict__ lut, const int* __restrict__ cnt, int L, int H,
                                            int Qb, int Kb, float sm) {
  constexpr int BM = 16 * NW, NT = NW * 32, C16 = D / 16, KS = D / 32;  // 16-byte chunks of a code row, k32 steps
  constexpr int QSTR = D + 16;  // int8 rows: D+16 bytes, fragment loads hit distinct banks
  constexpr int VSTR = D + 8;    // bf16 V rows (keys)
  constexpr int VTSTR = BK + 16;  // fp8 Vᵀ rows (channels), bytes
  constexpr int VSTAGE = FP8 ? D * VTSTR : BK * VSTR * 2;  // bytes per V stage
  // Q's codes go to registers before the key loop, so when they fit, the
  // Q tile shares the second K stage (115 -> 106 KB at BQ 64/BK 128: two
  // CTAs per SM on sm_90).
  constexpr bool QinK = BM <= BK;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* sK = smem;                   // two stages of [BK][QSTR]
  unsigned char* sV = sK + 2 * BK * QSTR;     // two stages of VSTAGE bytes
  unsigned char* sQ = QinK ? sK + BK * QSTR : sV + 2 * VSTAGE;  // [BM][QSTR]
  const bf16* V8 = (const bf16*)Vp;
  const unsigned char* V8t = (const unsigned char*)Vp;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = i * BM;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const long long bh = (long long)b * H + h, row = bh * Qb + i;
  const int* lr = lut + row * Kb;
  const int n = cnt[row];
  const float sqi = sq[row];

  for (int c = tid; c < BM * C16; c += NT) {
    const int r = c / C16, col = (c % C16) * 16, gq = q0 + r;
    sp_cp16(sQ + r * QSTR + col, Qi + base + (long long)min(gq, L - 1) * ld + col, gq < L);
  }
  auto load_kv = [&](int j, int st) {
    unsigned char* dk = sK + st * BK * QSTR;
    unsigned char* dv = sV + st * VSTAGE;
    for (int c = tid; c < BK * C16; c += NT) {
      const int r = c / C16, col = (c % C16) * 16, gk = j * BK + r;
      sp_cp16(dk + r * QSTR + col, Ki + base + (long long)min(gk, L - 1) * ld + col, gk < L);
    }
    if (FP8) {
      const unsigned char* src = V8t + ((long long)b * ld + (long long)h * D) * Lp + (long long)j * BK;
      for (int c = tid; c < D * (BK / 16); c += NT) {
        const int r = c / (BK / 16), col = (c % (BK / 16)) * 16;
        sp_cp16(dv + r * VTSTR + col, src + (long long)r * Lp + col, true);
      }
    } else {
      for (int c = tid; c < BK * (D / 8); c += NT) {
        const int r = c / (D / 8), col = (c % (D / 8)) * 8, gk = j * BK + r;
        sp_cp16(dv + (r * VSTR + col) * 2, V8 + base + (long long)min(gk, L - 1) * ld + col, gk < L);
      }
    }
  };
  if (n > 0) load_kv(lr[0], 0);
  sp_commit();
  sp_wait_all();
  __syncthreads();

  u32 qa[KS][4];  // m16n8k32 A fragments of this warp's 16 rows, k-steps of 32 channels
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    const unsigned char* p = sQ + (warp * 16 + g) * QSTR + kk * 32 + t4 * 4;
    qa[kk][0] = *(const u32*)p;
    qa[kk][1] = *(const u32*)(p + 8 * QSTR);
    qa[kk][2] = *(const u32*)(p + 16);
    qa[kk][3] = *(const u32*)(p + 8 * QSTR + 16);
  }
  if (QinK) __syncthreads();  // every warp has its Q fragments before stage 1 is refilled
  float o[D / 8][4];
#pragma unroll
  for (int x = 0; x < D / 8; ++x) o[x][0] = o[x][1] = o[x][2] = o[x][3] = 0.f;
  // Running max (declared m1 first: NVVM then numbers the loop's registers
  // as before the shared softmax helpers) and per-thread partial sums (the
  // quad's total starts at 1).
  float m1 = -5e6f, m0 = -5e6f;
  float d0 = t4 == 0 ? 1.f : 0.f, d1 = d0;

  for (int it = 0; it < n; ++it) {
    const int st = it & 1, j = lr[it];
    const bool last = it == n - 1;
    if (it + 1 < n) load_kv(lr[it + 1], st ^ 1);
    sp_commit();
    const unsigned char* k = sK + st * BK * QSTR;
    const unsigned char* v = sV + st * VSTAGE;
    int si[BK / 8][4];
#pragma unroll
    for (int x = 0; x < BK / 8; ++x) si[x][0] = si[x][1] = si[x][2] = si[x][3] = 0;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
      for (int np = 0; np < BK / 16; ++np) {  // an s8 k32 fragment is byte for byte a b16 k16 one
        u32 bb[4];
        sp_ldsm_x4(bb, k + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * QSTR + kk * 32 + ((lane >> 3) & 1) * 16);
        sp_mma_s8(si[2 * np], qa[kk], bb[0], bb[1]);
        sp_mma_s8(si[2 * np + 1], qa[kk], bb[2], bb[3]);
      }
    }
    const float dq = __fmul_rn(sqi, sk[bh * Kb + j]);
    const float c = last ? sm : __fmul_rn(sm, dq);
    float s[BK / 8][4];
    float mx0 = -5e6f, mx1 = -5e6f, a0, a1;
    sp_row_max(s, mx0, mx1, [&](int nt, int e) {
      const int key = j * BK + nt * 8 + 2 * t4;
      float x = __int2float_rz(si[nt][e]);
      if (last) x = __fmul_rn(x, dq);
      return (key + (e & 1) < L) ? x : -INFINITY;
    });
    sp_max_update(m0, m1, mx0, mx1, a0, a1, [=](float x) { return __fmul_rn(x, c); });
    d0 *= a0;
    d1 *= a1;
    sp_rescale_o(o, a0, a1);
    const float nm0 = -m0 + 8.807f, nm1 = -m1 + 8.807f;
#pragma unroll
    for (int nt = 0; nt < BK / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(fmaf(s[nt][e], c, e < 2 ? nm0 : nm1));
        if (e < 2)
          d0 += p;
        else
          d1 += p;
        s[nt][e] = FP8 ? p : e4m3r(p);  // the fp8 path rounds when packing
      }
    }
    if (FP8) {
#pragma unroll
      for (int kc = 0; kc < BK / 32; ++kc) {  // 32 keys: S tiles 4kc..4kc+3, in kperm order
        const int n0 = 4 * kc;
        u32 a[4] = {sp_e4m3x4(s[n0][0], s[n0][1], s[n0 + 1][0], s[n0 + 1][1]),
                    sp_e4m3x4(s[n0][2], s[n0][3], s[n0 + 1][2], s[n0 + 1][3]),
                    sp_e4m3x4(s[n0 + 2][0], s[n0 + 2][1], s[n0 + 3][0], s[n0 + 3][1]),
                    sp_e4m3x4(s[n0 + 2][2], s[n0 + 2][3], s[n0 + 3][2], s[n0 + 3][3])};
#pragma unroll
        for (int np = 0; np < D / 16; ++np) {
          u32 bb[4];
          sp_ldsm_x4(bb, v + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * VTSTR + kc * 32 + ((lane >> 3) & 1) * 16);
          sp_mma_e4m3(o[2 * np], a, bb[0], bb[1]);
          sp_mma_e4m3(o[2 * np + 1], a, bb[2], bb[3]);
        }
      }
    } else {
      sp_pv_bf16<D, BK, VSTR>(o, s, (const bf16*)v, lane);
    }
    sp_wait_all();
    __syncthreads();
  }

  d0 = quad_sum(d0);
  d1 = quad_sum(d1);
  const float i0 = 1.f / d0, i1 = 1.f / d1;
  const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
  const float* vsh = vs + (long long)b * ld + (long long)h * D;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + 2 * t4;
    const float v0 = vsh[col], v1 = vsh[col + 1];
    const long long i0x = base + (long long)r0 * ld + col, i1x = base + (long long)r1 * ld + col;
    if (r0 < L) sp_store2(out, odt, OL, i0x, __fmul_rn(__fmul_rn(o[nt][0], i0), v0), __fmul_rn(__fmul_rn(o[nt][1], i0), v1));
    if (r1 < L) sp_store2(out, odt, OL, i1x, __fmul_rn(__fmul_rn(o[nt][2], i1), v0), __fmul_rn(__fmul_rn(o[nt][3], i1), v1));
  }
}
