// layout.cu: dtype-agnostic data movement (permute, slice, concat) by element
// size, 2 or 4 bytes.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void permute_body(T* dst, const T* src, long long n, int nd, const long long* od,
                                             const long long* is) {
  GRID_STRIDE(i, n) {
    long long rem = i, off = 0;
    for (int d = nd - 1; d >= 0; --d) {
      long long c = rem % od[d];
      rem /= od[d];
      off += c * is[d];
    }
    dst[i] = src[off];
  }
}

// Out dims o0..o5 (row-major, the first nd used) and, for each out dim, the
// stride of the input dim it came from.
extern "C" __global__ void permute_kernel(void* dst, const void* src, int esize, long long n, int nd,
                                          long long o0, long long o1, long long o2, long long o3, long long o4,
                                          long long o5, long long s0, long long s1, long long s2, long long s3,
                                          long long s4, long long s5) {
  long long od[6] = {o0, o1, o2, o3, o4, o5};
  long long is[6] = {s0, s1, s2, s3, s4, s5};
  if (esize == 2)
    permute_body((unsigned short*)dst, (const unsigned short*)src, n, nd, od, is);
  else
    permute_body((unsigned int*)dst, (const unsigned int*)src, n, nd, od, is);
}

template <typename T>
__device__ __forceinline__ void copy3_body(T* dst, const T* src, long long outer, long long cnt, long long inner,
                                           long long sdim, long long soff, long long ddim, long long doff) {
  long long n = outer * cnt * inner;
  GRID_STRIDE(i, n) {
    long long in = i % inner, r = i / inner, j = r % cnt, o = r / cnt;
    dst[(o * ddim + doff + j) * inner + in] = src[(o * sdim + soff + j) * inner + in];
  }
}

// Copies an [outer, cnt, inner] block: src rows soff.. of a dim of size sdim
// to dst rows doff.. of a dim of size ddim. Slice and Concat are both this.
extern "C" __global__ void copy3_kernel(void* dst, const void* src, int esize, long long outer, long long cnt,
                                        long long inner, long long sdim, long long soff, long long ddim,
                                        long long doff) {
  if (esize == 2)
    copy3_body((unsigned short*)dst, (const unsigned short*)src, outer, cnt, inner, sdim, soff, ddim, doff);
  else
    copy3_body((unsigned int*)dst, (const unsigned int*)src, outer, cnt, inner, sdim, soff, ddim, doff);
}

// Vᵀ for the wgmma attention: v [B, Lk, H*D] -> vt [B, H*D, Lkp] (keys
// contiguous), zero for keys in [Lk, Lkp). 32×32 tiles through shared memory
// so reads and writes are both coalesced. grid (Lkp/32, H*D/32, B), 32×8.
extern "C" __global__ void transpose_v_kernel(bf16* vt, const bf16* v, int Lk, int Lkp, int HD) {
  __shared__ bf16 t[32][33];
  const int k0 = blockIdx.x * 32, c0 = blockIdx.y * 32, z = blockIdx.z;
  const bf16* vz = v + (long long)z * Lk * HD;
  bf16* tz = vt + (long long)z * HD * Lkp;
  for (int i = threadIdx.y; i < 32; i += 8) {
    int key = k0 + i, col = c0 + threadIdx.x;
    t[i][threadIdx.x] = (key < Lk && col < HD) ? vz[(long long)key * HD + col] : (bf16)0;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += 8) {
    int col = c0 + i, key = k0 + threadIdx.x;
    if (col < HD && key < Lkp) tz[(long long)col * Lkp + key] = t[threadIdx.x][i];
  }
}
