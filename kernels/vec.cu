// vec.cu: bf16 fast paths of the DiT's memory-bound ops, 16-byte loads and
// stores (8 bf16 per thread access). Same math and roundings as
// elementwise.cu / norm.cu, which remain the general (any dtype) versions;
// the backend takes these when x and out are bf16 and sizes are multiples
// of 8.
#include "common.cuh"
#include "ln.cuh"

// Elementwise over n bf16 values (n % 8 == 0) in chunks of 8; operand
// vectors (shift/scale/gate) have nv elements with nv % 8 == 0, so a chunk
// reads 8 consecutive operand values.
// op 0: modulate  out = x*(1+scale)+shift          (a = shift, b = scale)
// op 1: gated add out = x + bf16(y*bf16(gate))    (y, a = gate)
// op 2: GELU tanh out = gelu(x)
// op 3: add       out = x + y
extern "C" __global__ void ew_bf16_kernel(bf16* out, const bf16* x, const bf16* y, const void* a, int adt,
                                          const void* b, int bdt, long long n8, long long nv, int op) {
  GRID_STRIDE(i, n8) {
    float v[8], w[8];
    unpack8(((const uint4*)x)[i], v);
    if (op == 1 || op == 3) unpack8(((const uint4*)y)[i], w);
    const long long c = (i * 8) % nv;
    float av[8], bv[8];
    if (op == 0 || op == 1) ld8v(a, adt, c, av);
    if (op == 0) ld8v(b, bdt, c, bv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float r;
      if (op == 0) {
        r = __fadd_rn(__fmul_rn(v[k], 1.f + bv[k]), av[k]);
      } else if (op == 1) {
        float g = rbf(av[k]);
        r = __fadd_rn(v[k], rbf(__fmul_rn(w[k], g)));
      } else if (op == 2) {
        r = gelu_tanh_f(v[k]);
      } else {
        r = v[k] + w[k];
      }
      v[k] = r;
    }
    ((uint4*)out)[i] = pack8(v);
  }
}

// Sum over the block with one barrier (block_sum has three): each warp's
// partial goes to its own slot of sh (32 floats, used by this call only),
// then every thread adds the partials in the same order, so all threads get
// the same total. The row kernels are latency-bound, and barriers are most
// of their non-memory time.
__device__ __forceinline__ float block_sum_once(float v, float* sh) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.f;
  const int nw = (blockDim.x + 31) >> 5;
  for (int i = 0; i < nw; ++i) t += sh[i];
  return t;
}

// Row kernels keep the row in registers: VPT chunks of 8 per thread,
// blockDim.x * VPT * 8 >= D.
template <int VPT>
__device__ __forceinline__ void load_row(const bf16* x, int D, float (*v)[8], bool* have) {
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    int c8 = threadIdx.x + j * blockDim.x;
    have[j] = c8 * 8 < D;
    if (have[j]) unpack8(((const uint4*)x)[c8], v[j]);
  }
}

// LayerNorm of bf16 rows to bf16 (two-pass statistics from registers);
// optional affine w, b; with nv != 0 the DiT modulation follows (see
// layernorm_kernel in norm.cu for the rounding order).
//
// ADD: the row is first the residual sum r = x + add_y (gate == nullptr,
// as ew op 3) or x + bf16(add_y·bf16(gate)) (gate [D], as ew op 1), rounded
// to bf16 and stored to sum_out; the norm then reads those rounded values,
// so both outputs equal the separate Add/GatedAdd and LayerNorm kernels'.
template <int VPT, bool ADD>
__device__ __forceinline__ void ln_body(bf16* y, const bf16* x, const void* w, int wdt, const void* bb, int bdt,
                                        const void* shift, int shdt, const void* scale, int scdt, long long nv,
                                        int D, float eps, const bf16* add_y = nullptr, const void* gate = nullptr,
                                        int gdt = 0, bf16* sum_out = nullptr) {
  __shared__ float sh[64];
  const long long base = (long long)blockIdx.x * D;
  float v[VPT][8];
  bool have[VPT];
  load_row<VPT>(x + base, D, v, have);
  if (ADD) {
    float u[VPT][8];
    bool h2[VPT];
    load_row<VPT>(add_y + base, D, u, h2);
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      if (!have[j]) continue;
      const int c0 = (threadIdx.x + j * blockDim.x) * 8;
      float gv[8];
      if (gate) ld8v(gate, gdt, c0, gv);
#pragma unroll
      for (int k = 0; k < 8; ++k)
        v[j][k] = ln_add_elem(v[j][k], u[j][k], gate != nullptr, gv[k]);
      ((uint4*)(sum_out + base))[c0 / 8] = pack8(v[j]);
    }
  }
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < VPT; ++j)
    if (have[j])
#pragma unroll
      for (int k = 0; k < 8; ++k) s += v[j][k];
  const float mean = block_sum_once(s, sh) / D;
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < VPT; ++j)
    if (have[j])
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        q = ln_sq_acc(v[j][k], mean, q);
      }
  const float rstd = rsqrtf(block_sum_once(q, sh + 32) / D + eps);
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    if (!have[j]) continue;
    const int c0 = (threadIdx.x + j * blockDim.x) * 8;
    float wv[8], bv[8], shv[8], scv[8];
    if (wdt) ld8v(w, wdt, c0, wv);
    if (bdt) ld8v(bb, bdt, c0, bv);
    if (nv) {
      const long long m = (base + c0) % nv;  // nv % 8 == 0: the 8 values are consecutive
      ld8v(shift, shdt, m, shv);
      ld8v(scale, scdt, m, scv);
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[j][k] = ln_elem(v[j][k], mean, rstd, wdt, wv[k], bdt, bv[k], nv, scv[k], shv[k]);
    }
    ((uint4*)(y + base))[c0 / 8] = pack8(v[j]);
  }
}

// mode 0 fast (one rounding), 1 default (x̂ rounded first), as rmsnorm_kernel.
// ROPE: RMSNorm then RoPE of one row of q or k [heads*d] in one pass: the
// norm's result is rounded to bf16 exactly where the unfused RMSNorm would
// store it, then rotated in float32 as rope_bf16_kernel does, so the output
// is bit-identical to the two kernels while reading and writing the row once.
template <int VPT, bool ROPE>
__device__ __forceinline__ void rms_body(bf16* y, const bf16* x, const void* w, int wdt, int D, float eps, int mode,
                                         const float* angles = nullptr, long long L = 1, int d = 8) {
  __shared__ float sh[33];
  const long long base = (long long)blockIdx.x * D;
  const float* an_row = ROPE ? angles + ((long long)blockIdx.x % L) * (d / 2) : nullptr;
  float v[VPT][8];
  bool have[VPT];
  load_row<VPT>(x + base, D, v, have);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < VPT; ++j)
    if (have[j])
#pragma unroll
      for (int k = 0; k < 8; ++k) s += v[j][k] * v[j][k];
  const float rstd = rsqrtf(block_sum_once(s, sh) / D + eps);
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    if (!have[j]) continue;
    const int c0 = (threadIdx.x + j * blockDim.x) * 8;
    float wv[8];
    ld8v(w, wdt, c0, wv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float r = v[j][k] * rstd;
      if (mode == 1) r = rbf(r);
      v[j][k] = ROPE ? rbf(r * wv[k]) : r * wv[k];
    }
    if (ROPE) {
      const float* an = an_row + (c0 % d) / 2;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        float sn, cs;
        sincosf(an[k], &sn, &cs);
        float a = v[j][2 * k], b = v[j][2 * k + 1];
        v[j][2 * k] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
        v[j][2 * k + 1] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
      }
    }
    ((uint4*)(y + base))[c0 / 8] = pack8(v[j]);
  }
}

#define ROW_KERNELS(VPT)                                                                                        \
  extern "C" __global__ void ln_bf16_v##VPT(bf16* y, const bf16* x, const void* w, int wdt, const void* b,      \
                                            int bdt, const void* shift, int shdt, const void* scale, int scdt,  \
                                            long long nv, int D, float eps) {                                   \
    ln_body<VPT, false>(y, x, w, wdt, b, bdt, shift, shdt, scale, scdt, nv, D, eps);                            \
  }                                                                                                             \
  extern "C" __global__ void add_ln_bf16_v##VPT(bf16* sum, bf16* y, const bf16* x, const bf16* ay,             \
                                                const void* gate, int gdt, const void* w, int wdt, const void* b, \
                                                int bdt, const void* shift, int shdt, const void* scale,        \
                                                int scdt, long long nv, int D, float eps) {                     \
    ln_body<VPT, true>(y, x, w, wdt, b, bdt, shift, shdt, scale, scdt, nv, D, eps, ay, gate, gdt, sum);         \
  }                                                                                                             \
  extern "C" __global__ void rms_bf16_v##VPT(bf16* y, const bf16* x, const void* w, int wdt, int D, float eps, \
                                             int mode) {                                                       \
    rms_body<VPT, false>(y, x, w, wdt, D, eps, mode);                                                           \
  }                                                                                                             \
  extern "C" __global__ void rms_rope_bf16_v##VPT(bf16* y, const bf16* x, const void* w, int wdt, int D,        \
                                                  float eps, int mode, const float* angles, long long L, int d) { \
    rms_body<VPT, true>(y, x, w, wdt, D, eps, mode, angles, L, d);                                              \
  }
ROW_KERNELS(1)
ROW_KERNELS(2)
ROW_KERNELS(4)

// RoPE on bf16 [rows, heads*d]: each thread rotates 4 pairs (8 values).
extern "C" __global__ void rope_bf16_kernel(bf16* y, const bf16* x, const float* angles, long long rows, long long L,
                                            int heads, int d) {
  const int half = d / 2;
  const long long n8 = rows * heads * d / 8;
  GRID_STRIDE(i, n8) {
    const long long e = i * 8;                       // first element
    const long long row = e / ((long long)heads * d);
    const int p0 = (int)((e % d) / 2);               // first pair within the head
    const float* an = angles + (row % L) * half + p0;
    float v[8];
    unpack8(((const uint4*)x)[i], v);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float sn, cs;
      sincosf(an[k], &sn, &cs);
      float a = v[2 * k], b = v[2 * k + 1];
      v[2 * k] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
      v[2 * k + 1] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
    }
    ((uint4*)y)[i] = pack8(v);
  }
}
