// conv3d.cu: the VAE's 3-D convolution over channel-first [C,T,H,W] tensors.
//
// bf16 path: an implicit GEMM on tensor cores (mma.sync m16n8k16, fp32
// accumulation). out[co, p] = sum_k W[co, k] * col[k, p] over output positions
// p = (t, h, w) flattened and k = (tap, ci), taps outermost: the weight is
// first repacked to [Cout][tap][Cinp] (Cin padded with zeros to a multiple of
// 32), so one 32-wide K step is one tap and 32 channels. Each K step then
// needs one bounds check per output position, and the im2col column is
// gathered straight from the input (zero padding and strides included) into
// shared memory; nothing is materialised in global memory.
//
// Causal history: the input may come in two parts, Xh [Cin,Th,Hi,Wi] (the
// frames cached from the previous chunk) followed by X [Cin,Ti-Th,Hi,Wi];
// the gather reads frame ti from Xh when ti < Th, so the model never
// concatenates them in global memory. Th = 0 is a plain convolution.
//
// Small Cout (≤ 4, the decoder's 96→3 head): conv3d_bf16_small, a direct
// convolution in fp32 FMAs, two positions per thread and all output
// channels, weights in shared memory; an MMA tile would waste 29 of 32 rows.
//
// f32 path: a direct convolution, each thread one position and 8 output
// channels (correctness path for the fp32 VAE, not tuned).
#include "common.cuh"

__device__ __forceinline__ u32 cv_smem_addr(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}

// 16-byte async copy global->shared; pred false writes 16 zero bytes.
__device__ __forceinline__ void cv_cp_async16(void* dst, const void* src, bool pred) {
  int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(cv_smem_addr(dst)), "l"(src), "r"(n));
}
__device__ __forceinline__ void cv_cp_commit() { asm volatile("cp.async.commit_group;"); }
__device__ __forceinline__ void cv_cp_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

__device__ __forceinline__ void cv_ldsm_x4(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(cv_smem_addr(p)));
}
__device__ __forceinline__ void cv_ldsm_x4_t(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(cv_smem_addr(p)));
}

// c += a·b for one m16n8k16 tile (a: 4 regs, b: 2 regs of bf16x2).
__device__ __forceinline__ void cv_mma(float* c, const u32* a, u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Repacks a weight [Cout][Cin][ntap] (any float dtype) into bf16
// [Cout][ntap][Cinp], channels past Cin zero.
extern "C" __global__ void conv_wpack_kernel(bf16* dst, const void* w, int wdt, int Cout, int Cin, int ntap,
                                             int Cinp) {
  const long long n = (long long)Cout * ntap * Cinp;
  GRID_STRIDE(i, n) {
    int ci = (int)(i % Cinp);
    long long r = i / Cinp;
    int tap = (int)(r % ntap);
    long long co = r / ntap;
    dst[i] = ci < Cin ? f2bf(ldv(w, wdt, (co * Cin + ci) * ntap + tap)) : (bf16)0;
  }
}

#define CV_BK 32
#define CV_THREADS 256

// One block computes a BM x BN output tile: BM = 32*MT output channels,
// BN = 128*NB consecutive positions. 8 warps: 2 along M (16*MT rows each)
// x 4 along N (32*NB positions each); NB = 2 halves the shared-memory
// traffic per multiply-add at the price of one block per SM. K steps are
// double-buffered in (dynamic) shared memory, 2*(BM*(32+8) + 32*(BN+8))
// bf16: the weight tile by cp.async, the gathered input tile through
// registers (loaded before the current step's math, stored after it).
template <int MT, int NB>
__device__ __forceinline__ void conv_bf16_body(bf16* __restrict__ Y, const bf16* __restrict__ X,
                                               const bf16* __restrict__ Xh, int Th,
                                               const bf16* __restrict__ Wr, const void* bias, int bdt, int Cin,
                                               int Ti, int Hi, int Wi, int Cout, int To, int Ho, int Wo, int ntap,
                                               int kh, int kw, int st, int sh, int sw, int pt, int ph, int pw,
                                               int Cinp) {
  constexpr int BM = 32 * MT, BN = 128 * NB, BK = CV_BK, WN = 32 * NB;
  constexpr int SA = BK + 8, SB = BN + 8;  // +8 bf16 per row: ldmatrix rows hit distinct banks
  extern __shared__ __align__(16) unsigned char cv_smem[];
  bf16* sA0 = (bf16*)cv_smem;  // [2][BM*SA]
  bf16* sB0 = sA0 + 2 * BM * SA;  // [2][BK*SB]

  const long long HWo = (long long)Ho * Wo, P = (long long)To * HWo;
  const long long HWi = (long long)Hi * Wi, THWi = (long long)(Ti - Th) * HWi, THWh = (long long)Th * HWi;
  const int nMt = (Cout + BM - 1) / BM;
  const int m0 = (int)(blockIdx.x % nMt) * BM;
  const long long n0 = (long long)(blockIdx.x / nMt) * BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wm = warp & 1, wn = warp >> 1;
  const int nci = Cinp / BK, nk = ntap * nci, Ktot = ntap * Cinp;
  const bool cfull = (Cin % BK) == 0;

  // The gather: this thread owns columns bn + 128q of the input tile and
  // rows br, br+2, ..., br+30 (channels ci0+row of the step's tap).
  const int bn = tid & 127, br = tid >> 7;
  bool pvalid[NB];
  int tb[NB], hb[NB], wb[NB];
#pragma unroll
  for (int q = 0; q < NB; ++q) {
    const long long pos = n0 + bn + 128 * q;
    pvalid[q] = pos < P;
    tb[q] = hb[q] = wb[q] = 0;
    if (pvalid[q]) {
      int to = (int)(pos / HWo);
      long long rem = pos - (long long)to * HWo;
      int ho = (int)(rem / Wo), wo = (int)(rem - (long long)ho * Wo);
      tb[q] = to * st - pt;
      hb[q] = ho * sh - ph;
      wb[q] = wo * sw - pw;
    }
  }
  bf16 breg[NB][BK / 2];

  // The K step to load next: tap (a, bb, c) and channel chunk cic, advanced
  // incrementally (no divisions in the loop).
  int ld_tap = 0, ld_cic = 0, ld_a = 0, ld_b = 0, ld_c = 0;
  auto advance = [&]() {
    if (++ld_cic < nci) return;
    ld_cic = 0;
    ++ld_tap;
    if (++ld_c < kw) return;
    ld_c = 0;
    if (++ld_b < kh) return;
    ld_b = 0;
    ++ld_a;
  };
  auto load_b = [&]() {
    const int ci0 = ld_cic * BK;
#pragma unroll
    for (int q = 0; q < NB; ++q) {
      int ti = tb[q] + ld_a, yi = hb[q] + ld_b, xi = wb[q] + ld_c;
      bool ok = pvalid[q] && ti >= 0 && ti < Ti && yi >= 0 && yi < Hi && xi >= 0 && xi < Wi;
      const bool hist = ti < Th;
      const long long cst = hist ? THWh : THWi;
      const int tl = hist ? ti : ti - Th;
      long long off = ok ? (long long)(ci0 + br) * cst + (long long)tl * HWi + (long long)yi * Wi + xi : 0;
      const bf16* p = (hist ? Xh : X) + off;
#pragma unroll
      for (int i = 0; i < BK / 2; ++i) {
        bool in = ok && (cfull || ci0 + br + 2 * i < Cin);
        breg[q][i] = in ? p[(long long)(2 * i) * cst] : (bf16)0;
      }
    }
  };
  auto store_b = [&](int s) {
    bf16* sb = sB0 + s * BK * SB;
#pragma unroll
    for (int q = 0; q < NB; ++q)
#pragma unroll
      for (int i = 0; i < BK / 2; ++i) sb[(br + 2 * i) * SB + bn + 128 * q] = breg[q][i];
  };
  auto load_a = [&](int s) {
    bf16* sa = sA0 + s * BM * SA;
    const bf16* src = Wr + (long long)ld_tap * Cinp + ld_cic * BK;
    for (int c = tid; c < BM * (BK / 8); c += CV_THREADS) {
      int row = c / (BK / 8), col = (c % (BK / 8)) * 8, m = m0 + row;
      cv_cp_async16(&sa[row * SA + col], src + (long long)min(m, Cout - 1) * Ktot + col, m < Cout);
    }
  };

  float acc[MT][4 * NB][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < 4 * NB; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

  if (nk > 0) {
    load_b();
    store_b(0);
    load_a(0);
    advance();
    cv_cp_commit();
    cv_cp_wait_all();
    __syncthreads();
  }
  for (int ks = 0; ks < nk; ++ks) {
    const int s = ks & 1;
    const bool more = ks + 1 < nk;
    if (more) {  // the other stage was released by the barrier ending the previous step
      load_a(s ^ 1);
      load_b();
      advance();
    }
    cv_cp_commit();
    const bf16* a_s = sA0 + s * BM * SA;
    const bf16* b_s = sB0 + s * BK * SB;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      u32 af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        cv_ldsm_x4(af[mt], &a_s[(wm * 16 * MT + mt * 16 + (lane & 15)) * SA + kk * 16 + (lane >> 4) * 8]);
#pragma unroll
      for (int np = 0; np < 2 * NB; ++np) {
        u32 bfr[4];
        cv_ldsm_x4_t(bfr, &b_s[(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * SB + wn * WN + np * 16 + (lane >> 4) * 8]);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          cv_mma(acc[mt][2 * np], af[mt], bfr[0], bfr[1]);
          cv_mma(acc[mt][2 * np + 1], af[mt], bfr[2], bfr[3]);
        }
      }
    }
    if (more) store_b(s ^ 1);
    cv_cp_wait_all();
    __syncthreads();
  }

  // Epilogue: round the sum to bf16, then add the bias and round again.
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm * 16 * MT + mt * 16 + g + 8 * h;
      if (row >= Cout) continue;
      const float bv = bdt ? ldv(bias, bdt, row) : 0.f;
      bf16* yr = Y + (long long)row * P;
#pragma unroll
      for (int nt = 0; nt < 4 * NB; ++nt) {
        const long long col = n0 + wn * WN + nt * 8 + 2 * t4;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (col + e >= P) continue;
          float v = rbf(acc[mt][nt][2 * h + e]);
          if (bdt) v = __fadd_rn(v, bv);
          yr[col + e] = f2bf(v);
        }
      }
    }
  }
}

// conv3d_bf16_m<MT> (128 positions, two blocks per SM) and
// conv3d_bf16_m<MT>_w (256 positions, one block per SM).
#define CONV_BF16(MT, NB, SUFFIX, MINB)                                                                           \
  extern "C" __global__ void __launch_bounds__(CV_THREADS, MINB) conv3d_bf16_m##MT##SUFFIX(                     \
      bf16* Y, const bf16* X, const bf16* Xh, int Th, const bf16* Wr, const void* bias, int bdt, int Cin, int Ti,     \
      int Hi, int Wi, int Cout, int To, int Ho, int Wo, int ntap, int kh, int kw, int st, int sh, int sw, int pt,      \
      int ph, int pw, int Cinp) {                                                                                    \
    conv_bf16_body<MT, NB>(Y, X, Xh, Th, Wr, bias, bdt, Cin, Ti, Hi, Wi, Cout, To, Ho, Wo, ntap, kh, kw, st, sh, sw, pt, ph, \
                           pw, Cinp);                                                                              \
  }
CONV_BF16(1, 1, , 2)
CONV_BF16(2, 1, , 2)
CONV_BF16(3, 1, , 2)
CONV_BF16(4, 1, , 2)
CONV_BF16(2, 2, _w, 1)
CONV_BF16(3, 2, _w, 1)
CONV_BF16(4, 2, _w, 1)

#define CV_SMALL_CO 4
#define CV_SMALL_W 3072  // ntap*Cin limit: float4 weights in 48 KiB of static shared memory

// Packs a weight [Cout][Cin][ntap] (Cout ≤ 4, any float dtype) for
// conv3d_bf16_small: float [ntap][Cin][4], each value rounded to bf16,
// channels past Cout zero.
extern "C" __global__ void conv_wpack_small_kernel(float* dst, const void* w, int wdt, int Cout, int Cin, int ntap) {
  const long long n = (long long)ntap * Cin * CV_SMALL_CO;
  GRID_STRIDE(i, n) {
    int co = (int)(i % CV_SMALL_CO);
    long long r = i / CV_SMALL_CO;
    int ci = (int)(r % Cin), tap = (int)(r / Cin);
    dst[i] = co < Cout ? rbf(ldv(w, wdt, ((long long)co * Cin + ci) * ntap + tap)) : 0.f;
  }
}

// Direct bf16 convolution for Cout ≤ 4: each thread computes every output
// channel of positions p and p+256 of its block's 512; fp32 accumulation,
// the sum rounded to bf16, then the bias added and rounded again (as the
// MMA path does). Same geometry and history arguments as conv3d_bf16_m*.
extern "C" __global__ void __launch_bounds__(256) conv3d_bf16_small(
    bf16* __restrict__ Y, const bf16* __restrict__ X, const bf16* __restrict__ Xh, int Th,
    const float* __restrict__ Wp, const void* bias, int bdt, int Cin, int Ti, int Hi, int Wi, int Cout, int To,
    int Ho, int Wo, int kt, int kh, int kw, int st, int sh, int sw, int pt, int ph, int pw) {
  __shared__ float4 sw4[CV_SMALL_W];
  const int nw = kt * kh * kw * Cin;
  for (int i = threadIdx.x; i < nw; i += blockDim.x) sw4[i] = ((const float4*)Wp)[i];
  __syncthreads();
  const long long HWo = (long long)Ho * Wo, P = (long long)To * HWo;
  const long long HWi = (long long)Hi * Wi, THWi = (long long)(Ti - Th) * HWi, THWh = (long long)Th * HWi;
  long long pos[2];
  bool pv[2];
  int tb[2], hb[2], wb[2];
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    pos[q] = (long long)blockIdx.x * 512 + threadIdx.x + 256 * q;
    pv[q] = pos[q] < P;
    tb[q] = hb[q] = wb[q] = 0;
    if (pv[q]) {
      int to = (int)(pos[q] / HWo);
      long long rem = pos[q] - (long long)to * HWo;
      int ho = (int)(rem / Wo), wo = (int)(rem - (long long)ho * Wo);
      tb[q] = to * st - pt;
      hb[q] = ho * sh - ph;
      wb[q] = wo * sw - pw;
    }
  }
  float acc[2][4];
#pragma unroll
  for (int q = 0; q < 2; ++q) acc[q][0] = acc[q][1] = acc[q][2] = acc[q][3] = 0.f;
  int tap = 0;
  for (int a = 0; a < kt; ++a)
    for (int b = 0; b < kh; ++b)
      for (int c = 0; c < kw; ++c, ++tap) {
        const bf16* p[2];
        long long cst[2];
        bool ok[2];
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          int ti = tb[q] + a, yi = hb[q] + b, xi = wb[q] + c;
          ok[q] = pv[q] && ti >= 0 && ti < Ti && yi >= 0 && yi < Hi && xi >= 0 && xi < Wi;
          const bool hist = ti < Th;
          cst[q] = hist ? THWh : THWi;
          p[q] = ok[q] ? (hist ? Xh : X) + (long long)(hist ? ti : ti - Th) * HWi + (long long)yi * Wi + xi : X;
        }
        const float4* wr = sw4 + tap * Cin;
        for (int ci = 0; ci < Cin; ++ci) {
          const float4 w = wr[ci];
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            const float x = ok[q] ? bf2f(p[q][(long long)ci * cst[q]]) : 0.f;
            acc[q][0] = __fmaf_rn(x, w.x, acc[q][0]);
            acc[q][1] = __fmaf_rn(x, w.y, acc[q][1]);
            acc[q][2] = __fmaf_rn(x, w.z, acc[q][2]);
            acc[q][3] = __fmaf_rn(x, w.w, acc[q][3]);
          }
        }
      }
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    if (!pv[q]) continue;
#pragma unroll
    for (int co = 0; co < CV_SMALL_CO; ++co) {
      if (co >= Cout) break;
      float v = rbf(acc[q][co]);
      if (bdt) v = __fadd_rn(v, ldv(bias, bdt, co));
      Y[(long long)co * P + pos[q]] = f2bf(v);
    }
  }
}

#define CV_F32_CO 8

// Direct fp32 convolution: blockIdx.y picks 8 output channels, each thread
// one output position. w is [Cout][Cin][kt][kh][kw] in dtype wdt.
extern "C" __global__ void conv3d_f32_kernel(float* Y, const float* X, const void* w, int wdt, const void* bias,
                                             int bdt, int Cin, int Ti, int Hi, int Wi, int Cout, int To, int Ho,
                                             int Wo, int kt, int kh, int kw, int st, int sh, int sw, int pt, int ph,
                                             int pw) {
  const long long HWo = (long long)Ho * Wo, P = (long long)To * HWo;
  const long long pos = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (pos >= P) return;
  const int co0 = blockIdx.y * CV_F32_CO;
  const int to = (int)(pos / HWo);
  const long long rem = pos - (long long)to * HWo;
  const int ho = (int)(rem / Wo), wo = (int)(rem - (long long)ho * Wo);
  const long long HWi = (long long)Hi * Wi, THWi = (long long)Ti * HWi;
  const int ntap = kt * kh * kw;
  float acc[CV_F32_CO];
#pragma unroll
  for (int j = 0; j < CV_F32_CO; ++j) acc[j] = 0.f;
  for (int ci = 0; ci < Cin; ++ci) {
    for (int a = 0; a < kt; ++a) {
      int ti = to * st + a - pt;
      if (ti < 0 || ti >= Ti) continue;
      for (int b = 0; b < kh; ++b) {
        int yi = ho * sh + b - ph;
        if (yi < 0 || yi >= Hi) continue;
        for (int c = 0; c < kw; ++c) {
          int xi = wo * sw + c - pw;
          if (xi < 0 || xi >= Wi) continue;
          float xv = X[ci * THWi + ti * HWi + (long long)yi * Wi + xi];
          long long k = (long long)ci * ntap + (a * kh + b) * kw + c;
#pragma unroll
          for (int j = 0; j < CV_F32_CO; ++j)
            if (co0 + j < Cout) acc[j] = __fmaf_rn(xv, ldv(w, wdt, (long long)(co0 + j) * Cin * ntap + k), acc[j]);
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < CV_F32_CO; ++j) {
    int co = co0 + j;
    if (co >= Cout) continue;
    float v = acc[j];
    if (bdt) v = __fadd_rn(v, ldv(bias, bdt, co));
    Y[(long long)co * P + pos] = v;
  }
}
