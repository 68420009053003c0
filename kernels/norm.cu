// norm.cu: LayerNorm (optionally fused with the DiT's modulation), RMSNorm
// and RoPE. One block per row; statistics in float32, two passes for the
// variance as the reference's Triton kernels do.
#include "common.cuh"

// y = LN(x)·w + b rounded to ydt. With mod != 0 this is instead the DiT's
// `bf16(LN(x)) * (1+scale) + shift`: LN (no affine) rounded to ydt, then
// modulated in float32 and rounded to ydt again. mod = nv, the element count
// of shift/scale (a suffix of x's shape); 0 means no modulation.
extern "C" __global__ void layernorm_kernel(void* y, int ydt, const void* x, int xdt, const void* w, int wdt,
                                            const void* b, int bdt, const void* shift, int shdt,
                                            const void* scale, int scdt, long long nv, int D, float eps) {
  __shared__ float sh[33];
  long long row = blockIdx.x;
  const long long base = row * D;
  float s = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) s += ldv(x, xdt, base + c);
  float mean = block_sum(s, sh) / D;
  float q = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float d = ldv(x, xdt, base + c) - mean;
    q += d * d;
  }
  float rstd = rsqrtf(block_sum(q, sh) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float v = (ldv(x, xdt, base + c) - mean) * rstd;
    if (wdt) v *= ldv(w, wdt, c);
    if (bdt) v += ldv(b, bdt, c);
    if (nv) {
      long long j = (base + c) % nv;
      v = __fadd_rn(__fmul_rn(rdt(ydt, v), 1.f + ldv(scale, scdt, j)), ldv(shift, shdt, j));
    }
    stv(y, ydt, base + c, v);
  }
}

// mode 0 (fast): x̂·w in float32, one rounding. mode 1 (default): x̂ rounded
// to x's dtype first, then multiplied by w and rounded again.
extern "C" __global__ void rmsnorm_kernel(void* y, const void* x, int dt, const void* w, int wdt, int D, float eps,
                                          int mode) {
  __shared__ float sh[33];
  const long long base = (long long)blockIdx.x * D;
  float s = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float v = ldv(x, dt, base + c);
    s += v * v;
  }
  float rstd = rsqrtf(block_sum(s, sh) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float v = ldv(x, dt, base + c) * rstd;
    if (mode == 1) v = rdt(dt, v);
    stv(y, dt, base + c, v * ldv(w, wdt, c));
  }
}

// Interleaved RoPE over x [rows, heads*d]: pair p of head h in row r is
// rotated by angles[r % L, p] (leading dims repeat the positions).
extern "C" __global__ void rope_kernel(void* y, const void* x, int dt, const float* angles, long long rows, long long L,
                                       int heads, int d) {
  const int half = d / 2;
  const long long n = rows * heads * half;
  GRID_STRIDE(i, n) {
    long long l = (i / ((long long)heads * half)) % L;
    int p = (int)(i % half);
    long long e = 2 * i;  // element index of the pair's first value
    float sn, cs;
    sincosf(angles[l * half + p], &sn, &cs);
    float a = ldv(x, dt, e), b = ldv(x, dt, e + 1);
    stv(y, dt, e, __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn)));
    stv(y, dt, e + 1, __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs)));
  }
}
