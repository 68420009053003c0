// sla_linear.cu: the linear branch of SLA (REFERENCE.md §4.4) around the
// cuBLASLt GEMMs the backend runs (KVᵀ = Vᵀ·Kf, num = Qf·KV, proj_l): the
// channel-softmax feature map, ks = Σ_L Kf, and the normalisation
// o = bf16(num / bf16(1e-5 + bf16(Σ_c bf16(Qf·ks)))). bf16 roundings as in
// package sla; operands bf16, head dim D (64 or 128; each lane of a warp
// holds D/32 channels of a row).
#include "common.cuh"

// φ(x) = softmax over the D channels of each (token, head) row, float32
// inside, bf16 out. x [B, L, H·D]; out [B, H, L, D] when headMajor, else
// [B, L, H·D]. One warp per row, 8 rows per 256-thread block.
extern "C" __global__ void sla_featmap_kernel(bf16* out, const bf16* x, long long rows, int L, int H, int headMajor,
                                              int D) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31, ne = D >> 5;
  const bf16* src = x + r * D;  // row r = (b·L + l)·H + h
  float v[4], m = -INFINITY;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = e < ne ? bf2f(src[lane + 32 * e]) : -INFINITY;
    m = fmaxf(m, v[e]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = e < ne ? expf(v[e] - m) : 0.f;
    s += v[e];
  }
  s = warp_sum(s);
  long long dst = r * D;
  if (headMajor) {
    const long long h = r % H, bl = r / H, l = bl % L, b = bl / L;
    dst = ((b * H + h) * L + l) * D;
  }
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < ne) out[dst + lane + 32 * e] = f2bf(v[e] / s);
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
// for num, qf [B, H, L, D] and ks [B, H, D]; the output [B, L, H·D] is
// proj_l's input. One warp per (b, h, l) row, 8 per block.
extern "C" __global__ void sla_linear_norm_kernel(bf16* o, const bf16* num, const bf16* qf, const float* ks,
                                                  long long rows, int L, int H, int D) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);  // (b·H + h)·L + l
  if (r >= rows) return;
  const int lane = threadIdx.x & 31, ne = D >> 5;
  const long long l = r % L, bh = r / L, h = bh % H, b = bh / H;
  double den = 0;
  float nv[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int c = lane + 32 * e;
    nv[e] = 0.f;
    if (e < ne) {
      den += (double)rbf(bf2f(qf[r * D + c]) * ks[bh * D + c]);
      nv[e] = bf2f(num[r * D + c]);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) den += __shfl_xor_sync(0xffffffffu, den, off);
  const float dn = rbf(1e-5f + rbf((float)den));
  bf16* dst = o + ((b * L + l) * H + h) * D;
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < ne) dst[lane + 32 * e] = f2bf(nv[e] / dn);
}
