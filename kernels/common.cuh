// common.cuh: helpers shared by every embedded kernel. NVRTC compiles these
// files without the CUDA toolkit headers, so bf16 is a raw 16-bit pattern and
// conversions go through PTX (sm_80+).
#pragma once

typedef unsigned short bf16;
typedef unsigned int u32;
typedef unsigned long long u64;

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// Dtype codes passed at run time (match backend/cuda dtCode): 0 none (null
// pointer), 1 float32, 2 bfloat16.
#define DT_NONE 0
#define DT_F32 1
#define DT_BF16 2

__device__ __forceinline__ float bf2f(bf16 v) { return __uint_as_float(((u32)v) << 16); }

// Round to nearest even, NaN kept (cvt.rn handles both).
__device__ __forceinline__ bf16 f2bf(float f) {
  unsigned short r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}

// Rounds v to bf16 and back: the value a bf16 tensor would store.
__device__ __forceinline__ float rbf(float v) { return bf2f(f2bf(v)); }

// Packs two floats into bf16x2; lo lands in the low half (smaller index).
__device__ __forceinline__ u32 pack_bf2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// Loads element i of a tensor whose dtype is only known at run time. The
// branch is uniform across the grid, so it costs next to nothing.
__device__ __forceinline__ float ldv(const void* p, int dt, long long i) {
  if (dt == DT_BF16) return bf2f(((const bf16*)p)[i]);
  return ((const float*)p)[i];
}

__device__ __forceinline__ void stv(void* p, int dt, long long i, float v) {
  if (dt == DT_BF16) ((bf16*)p)[i] = f2bf(v);
  else ((float*)p)[i] = v;
}

// Rounds v as a tensor of dtype dt would store it.
__device__ __forceinline__ float rdt(int dt, float v) { return dt == DT_BF16 ? rbf(v) : v; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Max and sum over the four threads of a quad (lanes 4q..4q+3): in the
// tensor-core accumulator layouts (mma.sync m16n8, wgmma m64nN) those hold
// one row's columns, so these finish a row reduction.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  return v;
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

// Sum over the block; sh must hold 33 floats. Every thread gets the total.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  v = warp_sum(v);
  int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float t = (l < (int)(blockDim.x >> 5)) ? sh[l] : 0.f;
    t = warp_sum(t);
    if (l == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

#define GRID_STRIDE(i, n) \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
