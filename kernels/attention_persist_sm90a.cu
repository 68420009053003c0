// attention_persist_sm90a.cu: the persistent dense attention kernel
// ("w2tivk128p"): attention_tma_sm90a.cu's default consumer, one block per
// SM walking the (query tile, head, batch) items; the default for the short
// cross-attention. Shared pieces: attention_wgmma.cuh.
#include "attention_wgmma.cuh"

// Persistent version of flash_tma (kernel suffix "p"): gridDim.x blocks (one
// per SM) walk the work items t = blockIdx.x, +gridDim.x, ... < nqt·H·B,
// item t = query tile t % nqt of head (t / nqt) % H, batch t / (nqt·H):
// the blocks in flight work on neighbouring query tiles of one head, so its
// K and V stay in L2. The K/V ring runs on across items (the producer loads
// the next item's first stages while the consumers finish this one), and
// the single Q buffer is refilled as soon as the item's last Q·Kᵀ retired
// (qempty), so neither the Q load nor the K/V pipeline fill nor the output
// store of an item stalls the tensor cores, and a block's start-up
// (barrier init, setmaxnreg) is paid once per SM instead of once per tile.
template <int D, int NWG, int REGS, int FL, int BN>
__device__ __forceinline__ void flash_tma_p(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                            bf16* __restrict__ O, int Lq, int Lk, int H, int B, float scale_log2) {
  static_assert((FL & TF_IWO) != 0, "the persistent kernel uses the intra-warpgroup-overlap consumer");
  constexpr int BM = 64 * NWG, NS = tma_stages(BN), DH = D / 64;
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = D * BN * 2;
  static_assert(QB + NS * (KB + VB) + 8 * (2 * NS + 2) == attn_layout_bytes(D, NWG, BN, NS, 2 * NS + 2) &&
                    8 * (2 * NS + 2) <= TD_ATTN_BARRIER_BYTES,
                "shared-memory layout differs from attn_layout_bytes / kernels.AttnSmemBytes");
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = HP_ALIGN_SMEM(hp_smem(smem)), sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qfull = bars + 16 * NS, qempty = qfull + 8;  // after full[s] (bars + 8s), empty[s] (bars + 8(NS+s))
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int nkb = (Lk + BN - 1) / BN, nqt = (Lq + BM - 1) / BM, items = nqt * H * B;
  if (tid == 0) {
    for (int st = 0; st < NS; ++st) {
      hp_mbar_init(bars + 8 * st, 1);
      hp_mbar_init(bars + 8 * (NS + st), NWG * 4);
    }
    hp_mbar_init(qfull, 1);
    hp_mbar_init(qempty, NWG * 4);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == NWG) {  // producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");
    if (tid == NWG * 128) {
      int g = 0;  // tiles loaded so far, over all items: ring slot g % NS
      for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it) {
        const int q0 = (t % nqt) * BM, h = (t / nqt) % H, z = t / (nqt * H);
        for (int j = 0; j < nkb; ++j, ++g) {
          const int st = g % NS;
          if (g >= NS) hp_mbar_wait(bars + 8 * (NS + st), ((g / NS) - 1) & 1);  // consumers released the slot
          hp_mbar_expect_tx(bars + 8 * st, KB + VB);
#pragma unroll
          for (int hf = 0; hf < DH; ++hf) {
            hp_tma_load_2d(sK + st * KB + hf * BN * 128, tmK, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
            hp_tma_load_2d(sV + st * VB + hf * BN * 128, tmV, h * D + hf * 64, z * Lk + j * BN, bars + 8 * st);
          }
          if (j == 0) {  // Q after the first K/V tile: its buffer frees only late in the previous item
            if (it > 0) hp_mbar_wait(qempty, (it - 1) & 1);
            hp_mbar_expect_tx(qfull, QB);
#pragma unroll
            for (int hf = 0; hf < DH; ++hf) hp_tma_load_2d(sQ + hf * BM * 128, tmQ, h * D + hf * 64, z * Lq + q0, qfull);
          }
        }
      }
    }
  } else {  // consumer warpgroups
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
    const int t4 = lane & 3;
    int g = 0;
#pragma unroll 1
    for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it, g += nkb) {
      const int q0 = (t % nqt) * BM, h = (t / nqt) % H, z = t / (nqt * H);
      float o[D / 2];
#pragma unroll
      for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
      float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
      hp_mbar_wait(qfull, it & 1);
      consume_tma<D, NWG, FL, BN>(o, m0, m1, l0, l1, sQ, sK, sV, bars, wg, nkb, Lk, scale_log2, t4, lane, g, qempty);
      store_o<D>(o, l0, l1, O, q0 + wg * 64 + w4 * 16 + (lane >> 2), z, h, Lq, H, t4);
    }
  }
}

#define FLASH_TMA_P(D, NWG, REGS, FL, BN, SUF)                                                                  \
  extern "C" __global__ void __launch_bounds__(128 * (NWG + 1), 1) flash_wgmma_d##D##_w##NWG##_##SUF(          \
      const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,                                 \
      const __grid_constant__ HpTmaDesc tmV, bf16* O, int Lq, int Lk, int H, int B, float scale_log2) {           \
    flash_tma_p<D, NWG, REGS, FL, BN>(&tmQ, &tmK, &tmV, O, Lq, Lk, H, B, scale_log2);                           \
  }
FLASH_TMA_P(128, 2, 240, TF_IWO | TF_VN, 128, tivk128p)
FLASH_TMA_P(64, 2, 240, TF_IWO | TF_VN, 128, tivk128p)
