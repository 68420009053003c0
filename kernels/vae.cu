// vae.cu: the Wan VAE's non-convolution ops on channel-first [C,T,H,W]
// tensors: the channel RMS norm (optionally fused with SiLU), nearest 2x
// upsampling, and the pieces of the per-frame attention that surround its
// two cuBLASLt GEMMs (layout changes, the softmax and the final scaling).
// Roundings follow backend/vae.go; transcendental functions are evaluated in
// float64, as the CPU reference does, so results match it to the last bit
// in all but rare ties.
#include "common.cuh"

__device__ __forceinline__ double vae_warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float vae_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum of doubles; sh holds 33 doubles. Every thread gets it.
__device__ __forceinline__ double vae_block_sum_d(double v, double* sh) {
  v = vae_warp_sum_d(v);
  int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    double t = (l < (int)(blockDim.x >> 5)) ? sh[l] : 0.0;
    t = vae_warp_sum_d(t);
    if (l == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

// Block-wide max; sh holds 33 floats.
__device__ __forceinline__ float vae_block_max(float v, float* sh) {
  v = vae_warp_max(v);
  int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float t = (l < (int)(blockDim.x >> 5)) ? sh[l] : -INFINITY;
    t = vae_warp_max(t);
    if (l == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

// x·sigmoid(x) evaluated in float64, rounded to float32.
__device__ __forceinline__ float vae_silu(float x) {
  double d = (double)x;
  return (float)(d / (1.0 + exp(-d)));
}

// RMS_norm over dim 0 of x [C, P]: x / max(‖x‖, 1e-12) · scale · γ, then
// SiLU when silu != 0. The squared norm is summed in float64 in channel
// order; the norm, the quotient, each product and the SiLU are rounded to
// dt. One thread per position: channel rows are P apart, so a
// warp's loads are contiguous.
extern "C" __global__ void channel_rmsnorm_kernel(void* y, const void* x, int dt, const void* g, int gdt, int C,
                                                  long long P, float scale, int silu) {
  GRID_STRIDE(p, P) {
    double ss = 0.0;
    for (int c = 0; c < C; ++c) {
      double v = (double)ldv(x, dt, (long long)c * P + p);
      ss += v * v;
    }
    float d = fmaxf(rdt(dt, (float)sqrt(ss)), 1e-12f);
    for (int c = 0; c < C; ++c) {
      long long i = (long long)c * P + p;
      float v = rdt(dt, __fdiv_rn(ldv(x, dt, i), d));
      v = rdt(dt, __fmul_rn(v, scale));
      v = rdt(dt, __fmul_rn(v, ldv(g, gdt, c)));
      if (silu) v = rdt(dt, vae_silu(v));
      stv(y, dt, i, v);
    }
  }
}

// Nearest 2x upsampling of the last two dims: x [CT, H, W] -> y [CT, 2H, 2W],
// y[r][i][j] = x[r][i/2][j/2], by element size (2 or 4 bytes).
extern "C" __global__ void upsample2x_kernel(void* y, const void* x, int es, long long CT, int H, int W) {
  const long long W2 = 2LL * W, H2 = 2LL * H, n = CT * H2 * W2;
  GRID_STRIDE(i, n) {
    long long ox = i % W2, r = i / W2, oy = r % H2, ct = r / H2;
    long long src = (ct * H + (oy >> 1)) * W + (ox >> 1);
    if (es == 2)
      ((unsigned short*)y)[i] = ((const unsigned short*)x)[src];
    else
      ((u32*)y)[i] = ((const u32*)x)[src];
  }
}

// Frame attention, step 1: q and k of qkv [3C, T, P] to token-major
// dst [2][T] frames of [P][C] (frame stride fs elements), q frames first.
// 32x32 tiles through shared memory keep both sides coalesced.
// Grid (ceil(P/32), ceil(C/32), 2T), block (32, 8).
extern "C" __global__ void attn_qk_tokens_kernel(void* dst, const void* src, int es, int C, int T, long long P,
                                                 long long fs) {
  __shared__ u32 tile[32][33];
  const int z = blockIdx.z, part = z / T, t = z % T;
  const long long i0 = (long long)blockIdx.x * 32;
  const int c0 = blockIdx.y * 32;
  for (int r = threadIdx.y; r < 32; r += 8) {
    int c = c0 + r;
    long long i = i0 + threadIdx.x;
    if (c < C && i < P) {
      long long s = ((long long)(part * C + c) * T + t) * P + i;
      tile[r][threadIdx.x] = es == 2 ? (u32)((const unsigned short*)src)[s] : ((const u32*)src)[s];
    }
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += 8) {
    long long i = i0 + r;
    int c = c0 + threadIdx.x;
    if (c < C && i < P) {
      long long d = (long long)z * fs + i * C + c;
      if (es == 2)
        ((unsigned short*)dst)[d] = (unsigned short)tile[threadIdx.x][r];
      else
        ((u32*)dst)[d] = tile[threadIdx.x][r];
    }
  }
}

// Frame attention, step 2: v of qkv [3C, T, P] as frames [C][P] (frame
// stride fs elements), contiguous for the P·V GEMM; by element size.
extern "C" __global__ void attn_v_frames_kernel(void* dst, const void* src, int es, int C, int T, long long P,
                                                long long fs) {
  const long long n = (long long)T * C * P;
  GRID_STRIDE(i, n) {
    long long ip = i % P, r = i / P;
    int c = (int)(r % C), t = (int)(r / C);
    long long d = (long long)t * fs + (long long)c * P + ip, s = ((long long)(2 * C + c) * T + t) * P + ip;
    if (es == 2)
      ((unsigned short*)dst)[d] = ((const unsigned short*)src)[s];
    else
      ((u32*)dst)[d] = ((const u32*)src)[s];
  }
}

// Frame attention, step 3: S [P][P] holds q·k. Row i of prob [P][P] (dtype
// dt; may alias S for float32) becomes exp(s·scale − max) rounded to dt, as
// flash attention feeds P·V in the input dtype; inv[i] = 1 / Σ of the
// unrounded values (sum in float64). One block per row.
extern "C" __global__ void attn_softmax_kernel(const float* S, void* prob, int dt, float* inv, long long P,
                                               float scale) {
  __shared__ float shm[33];
  __shared__ double shd[33];
  const float* row = S + (long long)blockIdx.x * P;
  const long long base = (long long)blockIdx.x * P;
  float m = -INFINITY;
  for (long long j = threadIdx.x; j < P; j += blockDim.x) m = fmaxf(m, __fmul_rn(row[j], scale));
  m = vae_block_max(m, shm);
  double sum = 0.0;
  for (long long j = threadIdx.x; j < P; j += blockDim.x) {
    float e = (float)exp((double)__fsub_rn(__fmul_rn(row[j], scale), m));
    stv(prob, dt, base + j, e);  // same thread read row[j]: safe in place
    sum += (double)e;
  }
  sum = vae_block_sum_d(sum, shd);
  if (threadIdx.x == 0) inv[blockIdx.x] = (float)(1.0 / sum);
}

// Frame attention, step 4: O [C][P] (float32, unnormalised) times inv[p]
// into frame t of out [C, T, P], rounded to dt.
extern "C" __global__ void attn_out_kernel(void* out, int dt, const float* O, const float* inv, int C, int T, int t,
                                           long long P) {
  const long long n = (long long)C * P;
  GRID_STRIDE(i, n) {
    long long ip = i % P, c = i / P;
    stv(out, dt, (c * T + t) * P + ip, __fmul_rn(O[i], inv[ip]));
  }
}

// Decoded video to bytes: internal/rgb24's rule for one value, its float32
// steps spelled with _rn intrinsics so that no multiply-add is fused and
// every byte equals the host conversion's. sgn = 1: the Wan VAE's [-1, 1],
// byte = trunc(clamp((1 + clamp(x,-1,1))/2, 0, 1)·255 + 0.5); sgn = 0:
// TAEHV's [0, 1], byte = trunc(x·255 + 0.5) inside, 0 / 255 outside. NaN
// gives 0.
__device__ __forceinline__ unsigned char rgb24_byte(float x, int sgn) {
  if (sgn) {
    if (!(x >= -1.f)) x = -1.f;
    else if (x > 1.f) x = 1.f;
    float p = __fdiv_rn(__fadd_rn(1.f, x), 2.f);
    p = fminf(fmaxf(p, 0.f), 1.f);
    return (unsigned char)__float2uint_rz(__fadd_rn(__fmul_rn(p, 255.f), 0.5f));
  }
  if (!(x >= 0.f)) return 0;
  if (x >= 1.f) return 255;
  return (unsigned char)__float2uint_rz(__fadd_rn(__fmul_rn(x, 255.f), 0.5f));
}

// video_rgb24_kernel turns a video x [3,F,H,W] (dtype dt) into F frames of
// interleaved RGB bytes out [F][H][W][3]; n = F·H·W pixels, one per thread:
// channel c of pixel i is x[c·n + i].
extern "C" __global__ void video_rgb24_kernel(unsigned char* out, const void* x, int dt, long long n, int sgn) {
  GRID_STRIDE(i, n) {
    out[3 * i] = rgb24_byte(ldv(x, dt, i), sgn);
    out[3 * i + 1] = rgb24_byte(ldv(x, dt, n + i), sgn);
    out[3 * i + 2] = rgb24_byte(ldv(x, dt, 2 * n + i), sgn);
  }
}
