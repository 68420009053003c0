// attention_tma_sm90a.cu: warp-specialised dense attention with wgmma: a
// producer warpgroup streams Q, K and V through mbarrier stages with the
// copy engine (TMA), two or three consumer warpgroups of 64 query rows
// each. The defaults: "w2tivk128" for head dim 128 (FA3's intra-warpgroup
// overlap on 128-key stages, V read in place) and "w3t" for head dim 64.
// Shared pieces: attention_wgmma.cuh.
#include "attention_wgmma.cuh"

// tmQ: [B*Lq rows][H*D] box 64×BM; tmK: [B*Lk rows][H*D] box 64×BN;
// tmV: [B*H*D rows][Lkp] box 64×D. grid (ceil(Lq/BM), H, B), 128*(NWG+1)
// threads; REGS is the consumers' register budget after setmaxnreg; BN
// keys per stage (128 only with FL != 0).
template <int D, int NWG, int REGS, int FL, int BN>
__device__ __forceinline__ void flash_tma(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                          bf16* __restrict__ O, int Lq, int Lk, int H, float scale_log2) {
  static_assert(BN == 64 || FL != 0, "128-key stages need consume_tma");
  constexpr int BM = 64 * NWG, NS = tma_stages(BN), DH = D / 64;
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = D * BN * 2;
  static_assert(QB + NS * (KB + VB) + 8 * (2 * NS + 1) == attn_layout_bytes(D, NWG, BN, NS, 2 * NS + 1) &&
                    8 * (2 * NS + 1) <= TD_ATTN_BARRIER_BYTES,
                "shared-memory layout differs from attn_layout_bytes / kernels.AttnSmemBytes");
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = HP_ALIGN_SMEM(hp_smem(smem)), sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qbar = bars + 16 * NS;  // full[s] at bars + 8s, empty[s] at bars + 8(NS+s)
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int q0 = blockIdx.x * BM, h = blockIdx.y, z = blockIdx.z;
  const int nkb = (Lk + BN - 1) / BN;
  if (tid == 0) {
    for (int st = 0; st < NS; ++st) {
      hp_mbar_init(bars + 8 * st, 1);
      hp_mbar_init(bars + 8 * (NS + st), NWG * 4);
    }
    hp_mbar_init(qbar, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == NWG) {  // producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");
    if (tid == NWG * 128) {
      hp_mbar_expect_tx(qbar, QB);
#pragma unroll
      for (int hf = 0; hf < DH; ++hf) hp_tma_load_2d(sQ + hf * BM * 128, tmQ, h * D + hf * 64, z * Lq + q0, qbar);
      for (int j = 0; j < nkb; ++j) {
        const int st = j % NS;
        if (j >= NS) hp_mbar_wait(bars + 8 * (NS + st), ((j / NS) - 1) & 1);  // consumers released the stage
        hp_mbar_expect_tx(bars + 8 * st, KB + VB);
#pragma unroll
        for (int hf = 0; hf < DH; ++hf)
          hp_tma_load_2d(sK + st * KB + hf * BN * 128, tmK, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
        if constexpr ((FL & TF_VN) != 0) {  // V as it is: [keys][D], like K
#pragma unroll
          for (int hf = 0; hf < DH; ++hf)
            hp_tma_load_2d(sV + st * VB + hf * BN * 128, tmV, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
        } else {  // Vᵀ: [D][keys]
#pragma unroll
          for (int vh = 0; vh < BN / 64; ++vh)
            hp_tma_load_2d(sV + st * VB + vh * D * 128, tmV, j * BN + vh * 64, (z * H + h) * D, bars + 8 * st);
        }
      }
    }
  } else {  // consumer warpgroups
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    const int t4 = lane & 3;
    hp_mbar_wait(qbar, 0);
    if constexpr (FL != 0) {
      consume_tma<D, NWG, FL, BN>(o, m0, m1, l0, l1, sQ, sK, sV, bars, wg, nkb, Lk, scale_log2, t4, lane);
    } else {
      for (int j = 0; j < nkb; ++j) {
        const int st = j % NS;
        hp_mbar_wait(bars + 8 * st, (j / NS) & 1);  // tile j landed
        consume_stage<D, BM, BN, true>(o, m0, m1, l0, l1, sQ, sK + st * KB, sV + st * VB, wg, j * BN, Lk, scale_log2,
                                       0, t4);
        __syncwarp();
        if (lane == 0) hp_mbar_arrive(bars + 8 * (NS + st));  // this warp is done reading the stage
      }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.f / l0, i1 = 1.f / l1;
    const int r0 = q0 + wg * 64 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
    const long long W = (long long)H * D;
    bf16* Oh = O + (long long)z * Lq * W + (long long)h * D;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      int col = c * 8 + 2 * t4;
      if (r0 < Lq) *(u32*)&Oh[(long long)r0 * W + col] = pack_bf2(o[4 * c] * i0, o[4 * c + 1] * i0);
      if (r1 < Lq) *(u32*)&Oh[(long long)r1 * W + col] = pack_bf2(o[4 * c + 2] * i1, o[4 * c + 3] * i1);
    }
  }
}

#define FLASH_TMA(D, NWG, REGS, FL, BN, SUF)                                                                    \
  extern "C" __global__ void __launch_bounds__(128 * (NWG + 1), 1) flash_wgmma_d##D##_w##NWG##_##SUF(          \
      const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,                                 \
      const __grid_constant__ HpTmaDesc tmV, bf16* O, int Lq, int Lk, int H, float scale_log2) {                  \
    flash_tma<D, NWG, REGS, FL, BN>(&tmQ, &tmK, &tmV, O, Lq, Lk, H, scale_log2);                                \
  }
// Suffix letters after "t" (see consume_tma): i = TF_IWO, v = TF_VN;
// "k128": 128-key stages. Both exist for head dims 128 and 64. The other
// variants measured in session 2 (docs/PERF.md, "Attention, session 2":
// o = back-to-back issue, 192-key stages, tik/tok/tov) never won and were
// removed.
#define FLASH_TMA_D(NWG, REGS, FL, BN, SUF) \
  FLASH_TMA(128, NWG, REGS, FL, BN, SUF)    \
  FLASH_TMA(64, NWG, REGS, FL, BN, SUF)
FLASH_TMA_D(3, 160, 0, 64, t)
FLASH_TMA_D(2, 240, TF_IWO | TF_VN, 128, tivk128)
