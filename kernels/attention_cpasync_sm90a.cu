// attention_cpasync_sm90a.cu: dense attention with wgmma whose K and Vᵀ
// tiles stream through shared memory with cp.async (two or three stages,
// one block barrier per tile): the kernel for drivers without tensor maps
// (CUDA < 12), "w3s3". Shared pieces: attention_wgmma.cuh.
#include "attention_wgmma.cuh"


// Q, K: [B, L, H*D]; Vt: [B*H, D, Lkp] (keys contiguous, zero past Lk,
// Lkp a multiple of BN); O: [B, Lq, H*D]. NWG consumer warpgroups of 64 rows
// each: grid (ceil(Lq/(64*NWG)), H, B), 128*NWG threads; BN keys per stage.
template <int D, int NWG, int BN, bool SW, int NS>
__device__ __forceinline__ void flash_wgmma(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                            const bf16* __restrict__ Vt, bf16* __restrict__ O, int Lq, int Lk,
                                            int Lkp, int H, float scale_log2, int swap) {
  constexpr int BM = 64 * NWG, NT = 128 * NWG;
  constexpr int DC = D / 8, NC = BN / 8;  // 16-byte chunks per row of Q/K and of Vᵀ
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = D * BN * 2;
  static_assert(QB + NS * (KB + VB) == attn_layout_bytes(D, NWG, BN, NS, 0),
                "shared-memory layout differs from attn_layout_bytes / kernels.AttnSmemBytes");
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = SW ? HP_ALIGN_SMEM(hp_smem(smem)) : hp_smem(smem), sK = sQ + QB, sV = sK + NS * KB;

  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int q0 = blockIdx.x * BM, h = blockIdx.y, z = blockIdx.z;
  const long long W = (long long)H * D;
  const bf16* Qh = Q + (long long)z * Lq * W + (long long)h * D;
  const bf16* Kh = K + (long long)z * Lk * W + (long long)h * D;
  const bf16* Vh = Vt + ((long long)z * H + h) * D * Lkp;

  for (int c = tid; c < BM * DC; c += NT) {
    int r = c / DC, c8 = c % DC, g = q0 + r;
    cp16(sQ + tile_off<SW>(r, c8, BM, DC), Qh + (long long)min(g, Lq - 1) * W + c8 * 8, g < Lq);
  }
  auto load_kv = [&](int j, int st) {
    for (int c = tid; c < BN * DC; c += NT) {
      int r = c / DC, c8 = c % DC, g = j * BN + r;
      cp16(sK + st * KB + tile_off<SW>(r, c8, BN, DC), Kh + (long long)min(g, Lk - 1) * W + c8 * 8, g < Lk);
    }
    for (int c = tid; c < D * NC; c += NT) {
      int r = c / NC, c8 = c % NC;
      cp16(sV + st * VB + tile_off<SW>(r, c8, D, NC), Vh + (long long)r * Lkp + j * BN + c8 * 8, true);
    }
  };
  const int nkb = (Lk + BN - 1) / BN;
  load_kv(0, 0);
  asm volatile("cp.async.commit_group;");
  if (NS == 3) {  // keep two tiles in flight
    if (nkb > 1) load_kv(1, 1);
    asm volatile("cp.async.commit_group;");
  }

  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int t4 = lane & 3;

  for (int j = 0; j < nkb; ++j) {
    const int st = NS == 3 ? j % 3 : j & 1;
    if (NS == 3)
      asm volatile("cp.async.wait_group 1;" ::: "memory");  // tile j landed; j+1 may still fly
    else
      asm volatile("cp.async.wait_all;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // cp.async writes -> wgmma reads
    __syncthreads();  // also: every warpgroup is done with the stage reloaded next
    if (NS == 3) {
      if (j + 2 < nkb) load_kv(j + 2, (j + 2) % 3);
    } else if (j + 1 < nkb) {
      load_kv(j + 1, st ^ 1);
    }
    asm volatile("cp.async.commit_group;");

    consume_stage<D, BM, BN, SW>(o, m0, m1, l0, l1, sQ, sK + st * KB, sV + st * VB, wg, j * BN, Lk, scale_log2, swap, t4);
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  const int r0 = q0 + wg * 64 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
  bf16* Oh = O + (long long)z * Lq * W + (long long)h * D;
#pragma unroll
  for (int c = 0; c < D / 8; ++c) {
    int col = c * 8 + 2 * t4;
    if (r0 < Lq) *(u32*)&Oh[(long long)r0 * W + col] = pack_bf2(o[4 * c] * i0, o[4 * c + 1] * i0);
    if (r1 < Lq) *(u32*)&Oh[(long long)r1 * W + col] = pack_bf2(o[4 * c + 2] * i1, o[4 * c + 3] * i1);
  }
}

#define FLASH_WG(D, NWG, MINB, BN, SW, NS, NAME)                                                             \
  extern "C" __global__ void __launch_bounds__(128 * NWG, MINB) NAME(                                         \
      const bf16* Q, const bf16* K, const bf16* Vt, bf16* O, int Lq, int Lk, int Lkp, int H, float scale_log2, \
      int swap) {                                                                                            \
    flash_wgmma<D, NWG, BN, SW, NS>(Q, K, Vt, O, Lq, Lk, Lkp, H, scale_log2, swap);                           \
  }
// The one variant kept: three consumer warpgroups, 128-byte swizzled tiles,
// three K/Vᵀ stages ("w3s3"), the fastest cp.async kernel (docs/PERF.md,
// runs 2-14; the others were dropped once the TMA kernels replaced them).
FLASH_WG(128, 3, 1, 64, true, 3, flash_wgmma_d128_w3_s3)
FLASH_WG(64, 3, 1, 64, true, 3, flash_wgmma_d64_w3_s3)
