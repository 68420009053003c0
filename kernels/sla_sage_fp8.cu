// sla_sage_fp8.cu: SageSLA with P·V on e4m3 tensor cores (mma.sync
// m16n8k32 e4m3, sm_89+, PTX ISA 8.4 = NVRTC 12.4+): V quantised into a
// channel-major byte layout, and the sparse kernel of sla_sage.cuh with
// FP8. Built by an older NVRTC the kernels are stubs and
// sage_fp8_supported reports 0; the backend then keeps sla_sage.cu.
#include "sla_sage.cuh"

extern "C" __global__ void sage_fp8_supported(float* out) { out[0] = SAGE_FP8; }

// fp8 V for the e4m3 kernel: v8t [B, W, Lp] bytes (channel-major, keys in
// kperm order per 32-key chunk, 0 past L) = e4m3(v·(2.25/amax_c)), and
// vs = amax_c/2.25. grid (Lp/32, W/32, B), block (32, 8).
extern "C" __global__ void sage_v8t_kernel(unsigned char* v8t, float* vs, const bf16* v, const unsigned* amax, int L,
                                           int Lp, int W) {
  __shared__ float tile[32][33];  // [key][channel]
  const int k0 = blockIdx.x * 32, c0 = blockIdx.y * 32, b = blockIdx.z, tx = threadIdx.x;
  const float am = __uint_as_float(amax[(long long)b * W + c0 + tx]);
  for (int i = threadIdx.y; i < 32; i += 8) {
    const int key = k0 + i;
    float r = 0.f;
    if (key < L && am != 0.f) r = e4m3r(bf2f(v[((long long)b * L + key) * W + c0 + tx]) * (2.25f / am));
    tile[i][tx] = r;
  }
  if (blockIdx.x == 0 && threadIdx.y == 0) vs[(long long)b * W + c0 + tx] = am / 2.25f;
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += 8)
    v8t[((long long)b * W + c0 + i) * Lp + k0 + tx] = (unsigned char)e4m3_bits(tile[kperm(tx)][i]);
}

// sage_fp8_q<BQ>_k<BK> (head dim 128) and sage_fp8_d64_q<BQ>_k<BK>.
#define SAGE_FP8_SPARSE(BQ, BK, D, NAME)                                                                         \
  extern "C" __global__ void __launch_bounds__(BQ * 2) NAME(                                                      \
      const signed char* Qi, const signed char* Ki, const unsigned char* V8t, int Lp, const float* sq,           \
      const float* sk, const float* vs, const bf16* OL, void* out, int odt, const int* lut, const int* cnt,      \
      int L, int H, int Qb, int Kb, float sm) {                                                                  \
    if (SAGE_FP8)                                                                                                \
      sage_sparse<BQ / 16, BK, true, D>(Qi, Ki, V8t, Lp, sq, sk, vs, OL, out, odt, lut, cnt, L, H, Qb, Kb, sm);  \
  }
#define SAGE_FP8_SPARSE_D(BQ, BK)                        \
  SAGE_FP8_SPARSE(BQ, BK, 128, sage_fp8_q##BQ##_k##BK)   \
  SAGE_FP8_SPARSE(BQ, BK, 64, sage_fp8_d64_q##BQ##_k##BK)
SAGE_FP8_SPARSE_D(64, 128)
SAGE_FP8_SPARSE_D(128, 64)
SAGE_FP8_SPARSE_D(128, 128)
SAGE_FP8_SPARSE_D(64, 64)
