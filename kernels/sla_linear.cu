// sla_linear.cu: the linear branch of SLA (REFERENCE.md §4.4) around the
// cuBLASLt GEMMs the backend runs (KVᵀ = Vᵀ·Kf, num = Qf·KV, proj_l): the
// channel-softmax feature map, ks = Σ_L Kf, and the normalisation
// o = bf16(num / bf16(1e-5 + bf16(Σ_c bf16(Qf·ks)))). bf16 roundings as in
// package sla; operands bf16, head dim 128.
#include "common.cuh"

// φ(x) = softmax over the 128 channels of each (token, head) row, float32
// inside, bf16 out. x [B, L, H·128]; out [B, H, L, 128] when headMajor, else
// [B, L, H·128]. One warp per row, 8 rows per 256-thread block.
extern "C" __global__ void sla_featmap_kernel(bf16* out, const bf16* x, long long rows, int L, int H, int headMajor) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const bf16* src = x + r * 128;  // row r = (b·L + l)·H + h
  float v[4], m = -INFINITY;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = bf2f(src[lane + 32 * e]);
    m = fmaxf(m, v[e]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = expf(v[e] - m);
    s += v[e];
  }
  s = warp_sum(s);
  long long dst = r * 128;
  if (headMajor) {
    const long long h = r % H, bl = r / H, l = bl % L, b = bl / L;
    dst = ((b * H + h) * L + l) * 128;
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) out[dst + lane + 32 * e] = f2bf(v[e] / s);
}

// ks[row] = bf16(Σ_l kfT[row, l]) in float64 for kfT [rows, Lp] (zero
// padded past L). One 256-thread block per row.
extern "C" __global__ void sla_rowsum_kernel(float* ks, const bf16* kfT, int Lp) {
  __shared__ double sh[8];
  const bf16* src = kfT + (long long)blockIdx.x * Lp;
  double s = 0;
  for (int l = threadIdx.x; l < Lp; l += 256) s += (double)bf2f(src[l]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int w = 0; w < 8; ++w) t += sh[w];
    ks[blockIdx.x] = rbf((float)t);
  }
}

// o[b, l, h, :] = bf16(num / dn), dn = bf16(1e-5 + bf16(Σ_c bf16(qf·ks)))
// for num, qf [B, H, L, 128] and ks [B, H, 128]; the output [B, L, H·128] is
// proj_l's input. One warp per (b, h, l) row, 8 per block.
extern "C" __global__ void sla_linear_norm_kernel(bf16* o, const bf16* num, const bf16* qf, const float* ks,
                                                  long long rows, int L, int H) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);  // (b·H + h)·L + l
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const long long l = r % L, bh = r / L, h = bh % H, b = bh / H;
  double den = 0;
  float nv[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int c = lane + 32 * e;
    den += (double)rbf(bf2f(qf[r * 128 + c]) * ks[bh * 128 + c]);
    nv[e] = bf2f(num[r * 128 + c]);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) den += __shfl_xor_sync(0xffffffffu, den, off);
  const float dn = rbf(1e-5f + rbf((float)den));
  bf16* dst = o + ((b * L + l) * H + h) * 128;
#pragma unroll
  for (int e = 0; e < 4; ++e) dst[lane + 32 * e] = f2bf(nv[e] / dn);
}
