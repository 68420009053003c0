// int8_linear.cu: TurboDiffusion's W8A8 linear (docs/NUMERICS.md §5).
// int8_quant_kernel quantises activations per 128x128 tile; int8_gemm_kernel
// multiplies int8 codes on tensor cores (mma.sync m16n8k32 s8, sm_80+) with an
// exact int32 sum per 128-wide k block, folded into a float32 accumulator in
// ascending k-block order as fma(float(sum), sx·sw, acc) — the reference
// kernel's order, so the result is bit-exact with package quant.
#include "common.cuh"
#include "ln.cuh"

// One 256-thread block per 128x128 tile of x [M, K] (K % 128 == 0), grid
// (K/128, ceil(M/128)). amax = max(1e-8, max|x|), f = 128/amax (IEEE quotient,
// as package quant), code = round-half-even(x·f) saturated to [-128, 127],
// scale = amax/128 at s[mb, kb]. Rows past M count as 0 and are not written.
extern "C" __global__ void __launch_bounds__(256) int8_quant_kernel(signed char* q, float* s, const void* x, int xdt,
                                                                    int M, int K) {
  __shared__ float red[8];
  const int kb = blockIdx.x, mb = blockIdx.y, KB = K / 128, tid = threadIdx.x;
  const long long c = (long long)kb * 128 + (tid & 127);
  float amax = 1e-8f;
  for (int r = tid >> 7; r < 128; r += 2) {
    const int row = mb * 128 + r;
    if (row < M) amax = fmaxf(amax, fabsf(ldv(x, xdt, (long long)row * K + c)));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((tid & 31) == 0) red[tid >> 5] = amax;
  __syncthreads();
  amax = red[0];
#pragma unroll
  for (int w = 1; w < 8; ++w) amax = fmaxf(amax, red[w]);
  const float f = 128.f / amax;
  for (int r = tid >> 7; r < 128; r += 2) {
    const int row = mb * 128 + r;
    if (row >= M) break;
    const float p = ldv(x, xdt, (long long)row * K + c) * f;
    int v = __float2int_rn(p);  // NaN gives 0, as cvt.rni.sat
    v = min(127, max(-128, v));
    q[(long long)row * K + c] = (signed char)v;
  }
  if (tid == 0) s[(long long)mb * KB + kb] = amax * (1.f / 128.f);
}

// int8_quant_kernel for bfloat16 x, each element read once: a thread holds
// eight 16-byte chunks (rows r, r+16, ..., 8 bf16 each) in registers
// between the amax pass and the coding pass, and writes 8-byte code runs.
// Same grid, block, and arithmetic per element as int8_quant_kernel, so
// the same codes and scales. x must be 16-byte aligned.
// GELU: the values quantised are GELU(x) rounded to bf16, exactly what
// ew_bf16_kernel's GELU would store (the FFN's GELU fused into the
// quantiser of the second Linear: one read of the hidden activation
// instead of a GELU pass and a quantiser pass).
template <bool GELU>
__device__ __forceinline__ void int8_quant_bf16_body(signed char* q, float* s, const bf16* __restrict__ x, int M, int K) {
  __shared__ float red[8];
  const int kb = blockIdx.x, mb = blockIdx.y, KB = K / 128, tid = threadIdx.x;
  const int r0 = mb * 128 + (tid >> 4);
  const long long c = (long long)kb * 128 + (tid & 15) * 8;
  uint4 v[8];
  float amax = 1e-8f;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = r0 + 16 * i;
    v[i] = row < M ? *(const uint4*)(x + (long long)row * K + c) : make_uint4(0, 0, 0, 0);
    if (GELU && row < M) {
      float f[8];
      unpack8(v[i], f);
#pragma unroll
      for (int e = 0; e < 8; ++e) f[e] = gelu_tanh_f(f[e]);
      v[i] = pack8(f);
    }
    const u32 w[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
#pragma unroll
    for (int e = 0; e < 4; ++e)
      amax = fmaxf(amax, fmaxf(fabsf(__uint_as_float(w[e] << 16)), fabsf(__uint_as_float(w[e] & 0xffff0000u))));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((tid & 31) == 0) red[tid >> 5] = amax;
  __syncthreads();
  amax = red[0];
#pragma unroll
  for (int w = 1; w < 8; ++w) amax = fmaxf(amax, red[w]);
  const float f = 128.f / amax;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = r0 + 16 * i;
    if (row >= M) break;
    const u32 w[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
    u32 out[2] = {0, 0};
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float xv = __uint_as_float(e & 1 ? w[e >> 1] & 0xffff0000u : w[e >> 1] << 16);
      int cv = __float2int_rn(xv * f);  // NaN gives 0, as cvt.rni.sat
      cv = min(127, max(-128, cv));
      out[e >> 2] |= ((u32)cv & 0xffu) << (8 * (e & 3));
    }
    *(uint2*)(q + (long long)row * K + c) = make_uint2(out[0], out[1]);
  }
  if (tid == 0) s[(long long)mb * KB + kb] = amax * (1.f / 128.f);
}

extern "C" __global__ void __launch_bounds__(256) int8_quant_bf16_kernel(signed char* q, float* s,
                                                                         const bf16* __restrict__ x, int M, int K) {
  int8_quant_bf16_body<false>(q, s, x, M, K);
}

// int8_quant_bf16_kernel of GELU(x) (see int8_quant_bf16_body).
extern "C" __global__ void __launch_bounds__(256) int8_quant_gelu_bf16_kernel(signed char* q, float* s,
                                                                              const bf16* __restrict__ x, int M, int K) {
  int8_quant_bf16_body<true>(q, s, x, M, K);
}

__device__ __forceinline__ u32 i8_smem_addr(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}

// 16-byte async copy; pred false writes zeros (rows past M or N).
__device__ __forceinline__ void i8_cp16(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(i8_smem_addr(dst)), "l"(src),
               "r"(pred ? 16 : 0));
}

// ldmatrix x4: four 8x8 b16 matrices, i.e. 8 rows of 16 int8 each, in the
// mma fragment layout (an m16n8k32 s8 fragment is byte for byte the
// m16n8k16 b16 one).
__device__ __forceinline__ void i8_ldsm_x4(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(i8_smem_addr(p)));
}

// c += a·b for one m16n8k32 s8 tile, exact int32 accumulation.
__device__ __forceinline__ void mma_s8(int* c, const u32* a, u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Y[M, N] = X·Wᵀ for int8 X [M, K], W [N, K], scales SX [ceil(M/128), K/128],
// SW [ceil(N/128), K/128]. One 256-thread block per 128x128 output tile (grid
// ceil(N/128), ceil(M/128)); 8 warps as 2 (M) x 4 (N), each 64x32. k blocks of
// 128 stream through shared memory (cp.async, two stages, rows padded to 144
// bytes so ldmatrix rows hit distinct banks). The tile's rows and columns
// each lie in one scale block, so sx·sw is one number per k block. Output in
// ydt rounded (bf16) and then bias (ydt rounding again), as quant.Linear.
#define I8_STR 144
extern "C" __global__ void __launch_bounds__(256)
    int8_gemm_kernel(void* y, int ydt, const signed char* __restrict__ X, const float* __restrict__ SX,
                     const signed char* __restrict__ W, const float* __restrict__ SW, const void* bias, int bdt,
                     int M, int N, int K) {
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* sA = smem;                  // 2 stages of [128][I8_STR]
  unsigned char* sB = smem + 2 * 128 * I8_STR;  // 2 stages of [128][I8_STR]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * 128, m0 = blockIdx.y * 128;
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  const int KB = K / 128;
  const float* sxr = SX + (long long)blockIdx.y * KB;
  const float* swr = SW + (long long)blockIdx.x * KB;

  auto load = [&](int kb, int st) {
    unsigned char* a = sA + st * 128 * I8_STR;
    unsigned char* bs = sB + st * 128 * I8_STR;
    for (int c = tid; c < 128 * 8; c += 256) {
      const int r = c >> 3, col = (c & 7) * 16, gm = m0 + r, gn = n0 + r;
      i8_cp16(a + r * I8_STR + col, X + (long long)min(gm, M - 1) * K + kb * 128 + col, gm < M);
      i8_cp16(bs + r * I8_STR + col, W + (long long)min(gn, N - 1) * K + kb * 128 + col, gn < N);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

  load(0, 0);
  asm volatile("cp.async.commit_group;");
  asm volatile("cp.async.wait_all;" ::: "memory");
  __syncthreads();
  for (int kb = 0; kb < KB; ++kb) {
    const int st = kb & 1;
    if (kb + 1 < KB) load(kb + 1, st ^ 1);  // overlaps with this block's math
    asm volatile("cp.async.commit_group;");
    const unsigned char* a = sA + st * 128 * I8_STR;
    const unsigned char* bs = sB + st * 128 * I8_STR;
    int ia[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) ia[i][j][0] = ia[i][j][1] = ia[i][j][2] = ia[i][j][3] = 0;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      u32 af[4][4], bf[4][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
        i8_ldsm_x4(af[mt], a + (wm + mt * 16 + (lane & 15)) * I8_STR + kk * 32 + (lane >> 4) * 16);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        u32 r4[4];
        i8_ldsm_x4(r4, bs + (wn + np * 16 + (lane & 7) + ((lane >> 4) << 3)) * I8_STR + kk * 32 + ((lane >> 3) & 1) * 16);
        bf[2 * np][0] = r4[0];
        bf[2 * np][1] = r4[1];
        bf[2 * np + 1][0] = r4[2];
        bf[2 * np + 1][1] = r4[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma_s8(ia[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
    }
    const float sc = __fmul_rn(sxr[kb], swr[kb]);
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][nt][e] = fmaf((float)ia[mt][nt][e], sc, acc[mt][nt][e]);
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
  }

#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = m0 + wm + mt * 16 + g + hh * 8;
      if (row >= M) continue;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = n0 + wn + nt * 8 + 2 * t + e;
          if (col >= N) continue;
          float v = rdt(ydt, acc[mt][nt][hh * 2 + e]);
          if (bias) v = rdt(ydt, v + ldv(bias, bdt, col));
          stv(y, ydt, (long long)row * N + col, v);
        }
    }
}
