// sla_sparse_sm90a.cu: the SLA sparse branch (the math of sla_sparse.cu)
// on Hopper, built like the dense "w2tivk128" kernel of attention_tma_sm90a.cu:
// a producer warp copies, with the bulk tensor copy engine, only the key
// and value blocks in the query block's list (lut, cnt from
// sla_select_kernel) into three mbarrier stages of 128 keys (two 64-key
// blocks or one 128-key block per stage; an odd tail repeats its last
// block, masked), and NWG consumer warpgroups of 64 query rows run
// S = Q·Kᵀ and O += P·V on wgmma with FA3's intra-warpgroup overlap. V is
// read in its own [keys][D] layout (no transposed copy).
//
// Numerics as the Triton kernel and package sla: s = (q·k)·scale rounded to
// float32, p = exp2(s − m) online, O += bf16(p)·V in float32, out =
// bf16(bf16(O/l) + o_l). The running maximum moves per 128-key stage
// instead of per 64-key block, which changes only roundings.
#include "softmax_wgmma.cuh"
#include "sla_sage.cuh"

// Keys of a 128-key stage that exist: stage st of a list of n blocks of BK
// keys, entry e of the stage is list item st·(128/BK)+e (none past n; the
// producer repeats the last block there), block j holds min(BK, L − j·BK)
// keys. Returns the valid count of each entry (≤ 2 entries).
template <int BK>
__device__ __forceinline__ void sl_valid(const int* lr, int n, int st, int L, int (&vc)[128 / BK]) {
#pragma unroll
  for (int e = 0; e < 128 / BK; ++e) {
    const int it = st * (128 / BK) + e;
    vc[e] = it < n ? min(BK, L - __ldg(lr + it) * BK) : 0;
  }
}

// Online softmax of a finished S (128 keys) in place, the columns past each
// entry's valid count masked; s becomes p, the running max/sum update, and
// a0, a1 are the factors O must be scaled by.
template <int BK>
__device__ __forceinline__ void sl_softmax(float* s, float& m0, float& m1, float& l0, float& l1, float& a0, float& a1,
                                           const int (&vc)[128 / BK], float scale, int t4) {
  constexpr int SN = 128;
  bool partial = false;
#pragma unroll
  for (int e = 0; e < SN / BK; ++e) partial |= vc[e] < BK;
#pragma unroll
  for (int i = 0; i < SN / 2; ++i) s[i] = __fmul_rn(s[i], scale);
  if (partial) {
#pragma unroll
    for (int c = 0; c < SN / 8; ++c) {
      const int lim = vc[(c * 8) / BK], kc = (c * 8) % BK + 2 * t4;  // entry index known at compile time
      if (kc >= lim) s[4 * c] = s[4 * c + 2] = -INFINITY;
      if (kc + 1 >= lim) s[4 * c + 1] = s[4 * c + 3] = -INFINITY;
    }
  }
  softmax_rows<SN, false>(s, m0, m1, l0, l1, a0, a1, 0.f);
}

// ---- The ring shared by the SLA and SageSLA kernels ----
// NS stages; full[s] at bars + 8s (the producer's arrival plus the copy
// engine's bytes), empty[s] at bars + 8(NS+s) (one arrival per consumer
// warp), Q's full barrier at qbar. One thread initialises them before the
// block barrier.
template <int NS>
__device__ __forceinline__ void sl_init_bars(u32 bars, u32 qbar, u32 consumer_warps) {
  for (int st = 0; st < NS; ++st) {
    hp_mbar_init(bars + 8 * st, 1);
    hp_mbar_init(bars + 8 * (NS + st), consumer_warps);
  }
  hp_mbar_init(qbar, 1);
  hp_mbar_init_fence();
}

// The producer thread's loop over nst stages: fetch(t) first (an index the
// copies need, loaded before the wait so its latency hides behind it), then
// wait until the consumers released the slot's previous stage, arm its full
// barrier for bytes and issue load(t, slot, fetch(t)).
template <int NS, class Fetch, class Load>
__device__ __forceinline__ void sl_produce(int nst, u32 bars, u32 bytes, Fetch fetch, Load load) {
  for (int t = 0; t < nst; ++t) {
    const int st = t % NS, x = fetch(t);
    if (t >= NS) hp_mbar_wait(bars + 8 * (NS + st), ((t / NS) - 1) & 1);  // consumers released the stage
    hp_mbar_expect_tx(bars + 8 * st, bytes);
    load(t, st, x);
  }
}

// The consumer warpgroups' loop over nst stages (FA3's intra-warpgroup
// overlap): S_0 and its softmax; then per stage t: issue S_{t+1}, issue
// P_t·V_t, softmax of S_{t+1} while P_t·V_t runs, then rescale O once that
// retired and pack P_{t+1}; the last P·V alone. The kernel supplies qk(slot)
// and pv(slot) (issue the MMAs), next(t) (global loads stage t's softmax
// needs, issued before the wait for its data), soft(t) (the softmax of
// stage t, setting a0, a1) and pack() (P as A fragments); acc is S's
// accumulator (SACC registers), fenced so its reads stay after the wait.
// (Arguments by reference: by value, NVVM numbered the registers of the
// SageSLA loop differently, and the kernels' code is kept as it was.)
template <int D, int NS, int SACC, class T, class QK, class PV, class Next, class Soft, class Pack>
__device__ __forceinline__ void sl_consume(float* o, T* acc, float& a0, float& a1, const int& nst, const u32& bars,
                                           const u32& qbar, const int& lane, const QK& qk, const PV& pv,
                                           const Next& next, const Soft& soft, const Pack& pack) {
  auto fence_s = [&]() {
#pragma unroll
    for (int x = 0; x < SACC; ++x) reg_fence(acc[x]);
  };
  auto fence_o = [&]() {
#pragma unroll
    for (int x = 0; x < D / 2; ++x) reg_fence(o[x]);
  };
  auto release = [&](int st) {
    __syncwarp();
    if (lane == 0) hp_mbar_arrive(bars + 8 * (NS + st));  // this warp is done reading stage st
  };
  hp_mbar_wait(qbar, 0);
  if (nst > 0) {
    hp_mbar_wait(bars, 0);
    hp_wg_fence();
    qk(0);
    hp_wg_commit();
    hp_wg_wait<0>();
    fence_s();
    next(0);
    soft(0);  // O is zero: no rescale
    pack();
#pragma unroll 1
    for (int t = 0; t + 1 < nst; ++t) {
      const int st = t % NS, sn = (t + 1) % NS;
      next(t + 1);
      fence_o();
      hp_wg_fence();
      hp_mbar_wait(bars + 8 * sn, ((t + 1) / NS) & 1);  // stage t+1 landed
      qk(sn);
      hp_wg_commit();
      pv(st);
      hp_wg_commit();
      hp_wg_wait<1>();  // S_{t+1} done; P_t·V_t may still run
      fence_s();
      soft(t + 1);
      hp_wg_wait<0>();
      fence_o();
      release(st);
      rescale_o<D>(o, a0, a1);
      pack();
    }
    const int st = (nst - 1) % NS;
    fence_o();
    hp_wg_fence();
    pv(st);
    hp_wg_commit();
    hp_wg_wait<0>();
    fence_o();
    release(st);
  }
}

// ---- Persistent grids (kernel suffix "_p") ----
// gridDim.x blocks walk the items t = blockIdx.x, +gridDim.x, … < Qb·H·B;
// item t is query block t % Qb of head (t / Qb) % H, batch t / (Qb·H), so
// t is also its row of lut/cnt, and the blocks in flight work on
// neighbouring query blocks of one head (its K and V stay in L2). The K/V
// ring runs on across items: ring index g counts the stages this block has
// consumed over all its items (slot g % NS, phase (g / NS) & 1), so the
// producer loads the next item's first stages while the consumers finish
// this one. The single Q buffer is refilled once the item's last Q·Kᵀ
// retired (qempty, one arrival per consumer warp; qfull completes once per
// item), so the Q load, the pipeline fill and the output store of an item
// no longer stall the tensor cores, and barrier set-up and setmaxnreg are
// paid once per block instead of once per query block.

// cnt[t], the block count of item t, or 0 past the last item.
__device__ __forceinline__ int sl_next_count(const int* __restrict__ cnt, int t, int items) {
  return t < items ? __ldg(cnt + t) : 0;
}

// Prefetches into L2 the 64 rows from r0 of head h, batch z of OL (the
// linear branch's output, [B, L, H·D] bf16, which the item's epilogue adds
// and which is mostly not in L2), one 128-byte line per thread of the
// warpgroup (wtid), so that the epilogue does not wait on HBM.
template <int D>
__device__ __forceinline__ void sl_prefetch_ol(const bf16* OL, int z, int h, int r0, int L, int H, int wtid) {
  const int r = r0 + (wtid >> 1), half = wtid & 1;
  if (r < L && half * 64 < D)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(OL + ((long long)z * L + r) * H * D + (long long)h * D + half * 64));
}

// sl_consume over the nst stages of one item whose first stage is ring
// index g (it: the item's index within this block, for qfull's phase);
// releases qempty right after the item's last S retired.
template <int D, int NS, int SACC, class T, class QK, class PV, class Next, class Soft, class Pack>
__device__ __forceinline__ void sl_consume_p(float* o, T* acc, float& a0, float& a1, const int& nst, const int& g,
                                             const u32& bars, const u32& qfull, const u32& qempty, const int& it,
                                             const int& lane, const QK& qk, const PV& pv, const Next& next,
                                             const Soft& soft, const Pack& pack) {
  auto fence_s = [&]() {
#pragma unroll
    for (int x = 0; x < SACC; ++x) reg_fence(acc[x]);
  };
  auto fence_o = [&]() {
#pragma unroll
    for (int x = 0; x < D / 2; ++x) reg_fence(o[x]);
  };
  auto arrive = [&](u32 bar) {
    __syncwarp();
    if (lane == 0) hp_mbar_arrive(bar);
  };
  hp_mbar_wait(qfull, it & 1);
  if (nst > 0) {
    hp_mbar_wait(bars + 8 * (g % NS), (g / NS) & 1);
    hp_wg_fence();
    qk(g % NS);
    hp_wg_commit();
    hp_wg_wait<0>();
    fence_s();
    if (nst == 1) arrive(qempty);  // Q no longer read
    next(0);
    soft(0);  // O is zero: no rescale
    pack();
#pragma unroll 1
    for (int t = 0; t + 1 < nst; ++t) {
      const int st = (g + t) % NS, sn = (g + t + 1) % NS;
      next(t + 1);
      fence_o();
      hp_wg_fence();
      hp_mbar_wait(bars + 8 * sn, ((g + t + 1) / NS) & 1);  // stage t+1 landed
      qk(sn);
      hp_wg_commit();
      pv(st);
      hp_wg_commit();
      hp_wg_wait<1>();  // S_{t+1} done; P_t·V_t may still run
      fence_s();
      if (t + 2 == nst) arrive(qempty);  // the item's last S: Q no longer read
      soft(t + 1);
      hp_wg_wait<0>();
      fence_o();
      arrive(bars + 8 * (NS + st));  // this warp is done reading stage st
      rescale_o<D>(o, a0, a1);
      pack();
    }
    const int st = (g + nst - 1) % NS;
    fence_o();
    hp_wg_fence();
    pv(st);
    hp_wg_commit();
    hp_wg_wait<0>();
    fence_o();
    arrive(bars + 8 * (NS + st));
  } else {
    arrive(qempty);
  }
}

// The producer thread's walk over its items for the persistent kernels:
// per item (query block i of head h, batch z, block list lr of n blocks),
// stages(n) is its stage count, fetch(lr, s) an index stage s needs (loaded
// before the wait for its slot, so its latency hides behind it) and
// load(st, h, z, lr, n, s, x) issues stage s into slot st (its full
// barrier already armed for bytes); Q (loadq(i, h, z), qbytes) goes after
// the item's first stage, once the consumers released the previous item's
// Q. The next item's block count is loaded one item ahead.
template <int NS, class Stages, class Fetch, class Load, class LoadQ>
__device__ __forceinline__ void sl_produce_p(int items, int Qb, int H, const int* __restrict__ lut,
                                             const int* __restrict__ cnt, int Kb, u32 bars, u32 qfull, u32 qempty,
                                             u32 bytes, u32 qbytes, Stages stages, Fetch fetch, Load load,
                                             LoadQ loadq) {
  int g = 0;  // stages issued so far over all items: ring slot g % NS
  int nn = sl_next_count(cnt, blockIdx.x, items);
  for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it) {
    const int i = t % Qb, h = (t / Qb) % H, z = t / (Qb * H);
    const int* lr = lut + (long long)t * Kb;
    const int n = nn, nst = stages(n);
    nn = sl_next_count(cnt, t + gridDim.x, items);
    auto q = [&]() {
      if (it > 0) hp_mbar_wait(qempty, (it - 1) & 1);  // the previous item's last S retired
      hp_mbar_expect_tx(qfull, qbytes);
      loadq(i, h, z);
    };
    if (nst == 0) q();
    for (int s = 0; s < nst; ++s, ++g) {
      const int st = g % NS, x = fetch(lr, s);
      if (g >= NS) hp_mbar_wait(bars + 8 * (NS + st), ((g / NS) - 1) & 1);  // consumers released the slot
      hp_mbar_expect_tx(bars + 8 * st, bytes);
      load(st, h, z, lr, n, s, x);
      if (s == 0) q();
    }
  }
}

// Q, K, V: [B·L rows][H·D] bf16 tensor maps (box 64 columns × BM rows for
// Q, × BK rows for K and V); OL, out: [B, L, H·D] (out in dtype odt).
// grid (Qb, H, B), 128·(NWG+1) threads; query block = 64·NWG rows.
template <int D, int NWG, int BK>
__device__ __forceinline__ void sla_sparse_tma(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                               const bf16* __restrict__ OL, void* out, int odt,
                                               const int* __restrict__ lut, const int* __restrict__ cnt, int L, int H,
                                               int Qb, int Kb, float scale) {
  // The ring (kernels/smem.go, which sizes the launch): NS stages of BN keys.
  constexpr int BM = 64 * NWG, BN = TD_SLA_TMA_STAGE_KEYS, NS = TD_SLA_TMA_STAGES, DH = D / 64, NB = BN / BK;
  static_assert(BN == 128, "S of a stage is one m64n128 wgmma tile");
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = BN * D * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = HP_ALIGN_SMEM(hp_smem(smem)), sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qbar = bars + 16 * NS;  // full[s] at bars + 8s, empty[s] at bars + 8(NS+s)
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int i = blockIdx.x, h = blockIdx.y, z = blockIdx.z, q0 = i * BM;
  const long long row = ((long long)z * H + h) * Qb + i;
  const int* lr = lut + row * Kb;
  const int n = cnt[row], nst = (n + NB - 1) / NB;
  if (tid == 0) sl_init_bars<NS>(bars, qbar, NWG * 4);
  __syncthreads();

  if (wg == NWG) {  // producer warpgroup: one thread issues every copy
    HP_SETMAXNREG_DEC(24);
    if (tid == NWG * 128) {
      hp_mbar_expect_tx(qbar, QB);
#pragma unroll
      for (int hf = 0; hf < DH; ++hf) hp_tma_load_2d(sQ + hf * BM * 128, tmQ, h * D + hf * 64, z * L + q0, qbar);
      sl_produce<NS>(
          nst, bars, KB + VB, [](int) { return 0; },
          [&](int t, int st, int) {
#pragma unroll
            for (int e = 0; e < NB; ++e) {
              const int j = __ldg(lr + min(t * NB + e, n - 1));  // an odd tail repeats the last block (masked)
#pragma unroll
              for (int hf = 0; hf < DH; ++hf) {
                const u32 off = hf * BN * 128 + e * BK * 128;
                hp_tma_load_2d(sK + st * KB + off, tmK, h * D + hf * 64, z * L + j * BK, bars + 8 * st);
                hp_tma_load_2d(sV + st * VB + off, tmV, h * D + hf * 64, z * L + j * BK, bars + 8 * st);
              }
            }
          });
    }
  } else {  // consumer warpgroups
    HP_SETMAXNREG_INC(240);
    const int t4 = lane & 3;
    float o[D / 2];
#pragma unroll
    for (int x = 0; x < D / 2; ++x) o[x] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f, a0, a1;
    float s[BN / 2];
#pragma unroll
    for (int x = 0; x < BN / 2; ++x) s[x] = 0.f;
    u32 p[BN / 16][4];
    int vc[NB];
    auto qk = [&](int st) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        hp_wgmma_ss_n128_bf16(s, hp_desc_sw128_rows(sQ, wg * 64, kk, BM), hp_desc_sw128_rows(sK + st * KB, 0, kk, BN),
                              kk > 0);
    };
    auto pv = [&](int st) {
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        if constexpr (D == 128)
          hp_wgmma_rs_n128_bf16_tb(o, p[kk], vn_desc<BN>(sV + st * VB, kk));
        else
          hp_wgmma_rs_n64_bf16_tb(o, p[kk], vn_desc<BN>(sV + st * VB, kk));
      }
    };
    sl_consume<D, NS, BN / 2>(
        o, s, a0, a1, nst, bars, qbar, lane, qk, pv, [&](int t) { sl_valid<BK>(lr, n, t, L, vc); },
        [&](int) { sl_softmax<BK>(s, m0, m1, l0, l1, a0, a1, vc, scale, t4); }, [&]() { pack_p<BN>(s, p); });
    l0 = quad_sum(l0);
    l1 = quad_sum(l1);
    const int r0 = q0 + wg * 64 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
    const long long ld = (long long)H * D, ob = (long long)z * L * ld + (long long)h * D;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      const int col = c * 8 + 2 * t4;
      if (r0 < L) sp_store2(out, odt, OL, ob + (long long)r0 * ld + col, o[4 * c] / l0, o[4 * c + 1] / l0);
      if (r1 < L) sp_store2(out, odt, OL, ob + (long long)r1 * ld + col, o[4 * c + 2] / l1, o[4 * c + 3] / l1);
    }
  }
}

// sla_tma_d<D>_q<BQ>_k<BK>: query blocks of 64 (one consumer warpgroup) or
// 128 rows (two), key blocks of 64 or 128.
#define SLA_TMA(D, BQ, BK)                                                                                        \
  extern "C" __global__ void __launch_bounds__(128 * (BQ / 64 + 1), 1) sla_tma_d##D##_q##BQ##_k##BK(              \
      const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,                               \
      const __grid_constant__ HpTmaDesc tmV, const bf16* OL, void* out, int odt, const int* lut, const int* cnt,  \
      int L, int H, int Qb, int Kb, float scale) {                                                                \
    sla_sparse_tma<D, BQ / 64, BK>(&tmQ, &tmK, &tmV, OL, out, odt, lut, cnt, L, H, Qb, Kb, scale);               \
  }
#define SLA_TMA_D(BQ, BK) \
  SLA_TMA(128, BQ, BK)    \
  SLA_TMA(64, BQ, BK)
SLA_TMA_D(128, 64)
SLA_TMA_D(128, 128)
SLA_TMA_D(64, 64)
SLA_TMA_D(64, 128)

// sla_sparse_tma on a persistent grid (see "Persistent grids" above):
// gridDim.x blocks walk the Qb·H·B items.
template <int D, int NWG, int BK>
__device__ __forceinline__ void sla_sparse_tma_p(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                                 const bf16* __restrict__ OL, void* out, int odt,
                                                 const int* __restrict__ lut, const int* __restrict__ cnt, int L,
                                                 int H, int B, int Qb, int Kb, float scale) {
  constexpr int BM = 64 * NWG, BN = TD_SLA_TMA_STAGE_KEYS, NS = TD_SLA_TMA_STAGES, DH = D / 64, NB = BN / BK;
  static_assert(BN == 128, "S of a stage is one m64n128 wgmma tile");
  constexpr u32 QB = BM * D * 2, KB = BN * D * 2, VB = BN * D * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = HP_ALIGN_SMEM(hp_smem(smem)), sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qfull = bars + 16 * NS, qempty = qfull + 8;  // after full[s] (bars + 8s), empty[s] (bars + 8(NS+s))
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3;
  const int items = Qb * H * B;
  if (tid == 0) {
    hp_mbar_init(qempty, NWG * 4);
    sl_init_bars<NS>(bars, qfull, NWG * 4);  // fences both
  }
  __syncthreads();

  if (wg == NWG) {  // producer warpgroup: one thread issues every copy
    HP_SETMAXNREG_DEC(24);
    if (tid == NWG * 128)
      sl_produce_p<NS>(
          items, Qb, H, lut, cnt, Kb, bars, qfull, qempty, KB + VB, QB, [](int n) { return (n + NB - 1) / NB; },
          [](const int*, int) { return 0; },
          [&](int st, int h, int z, const int* lr, int n, int t, int) {
#pragma unroll
            for (int e = 0; e < NB; ++e) {
              const int j = __ldg(lr + min(t * NB + e, n - 1));  // an odd tail repeats the last block (masked)
#pragma unroll
              for (int hf = 0; hf < DH; ++hf) {
                const u32 off = hf * BN * 128 + e * BK * 128;
                hp_tma_load_2d(sK + st * KB + off, tmK, h * D + hf * 64, z * L + j * BK, bars + 8 * st);
                hp_tma_load_2d(sV + st * VB + off, tmV, h * D + hf * 64, z * L + j * BK, bars + 8 * st);
              }
            }
          },
          [&](int i, int h, int z) {
#pragma unroll
            for (int hf = 0; hf < DH; ++hf)
              hp_tma_load_2d(sQ + hf * BM * 128, tmQ, h * D + hf * 64, z * L + i * BM, qfull);
          });
  } else {  // consumer warpgroups
    HP_SETMAXNREG_INC(240);
    const int t4 = lane & 3;
    int g = 0;  // stages consumed over all items
    int nn = sl_next_count(cnt, blockIdx.x, items);
#pragma unroll 1
    for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it) {
      const int i = t % Qb, h = (t / Qb) % H, z = t / (Qb * H), q0 = i * BM;
      const int* lr = lut + (long long)t * Kb;
      const int n = nn, nst = (n + NB - 1) / NB;
      nn = sl_next_count(cnt, t + gridDim.x, items);  // the next item's, one item ahead
      sl_prefetch_ol<D>(OL, z, h, q0 + wg * 64, L, H, tid & 127);
      float o[D / 2];
#pragma unroll
      for (int x = 0; x < D / 2; ++x) o[x] = 0.f;
      float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f, a0, a1;
      float s[BN / 2];
#pragma unroll
      for (int x = 0; x < BN / 2; ++x) s[x] = 0.f;
      u32 p[BN / 16][4];
      int vc[NB];
      auto qk = [&](int st) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
          hp_wgmma_ss_n128_bf16(s, hp_desc_sw128_rows(sQ, wg * 64, kk, BM),
                                hp_desc_sw128_rows(sK + st * KB, 0, kk, BN), kk > 0);
      };
      auto pv = [&](int st) {
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
          if constexpr (D == 128)
            hp_wgmma_rs_n128_bf16_tb(o, p[kk], vn_desc<BN>(sV + st * VB, kk));
          else
            hp_wgmma_rs_n64_bf16_tb(o, p[kk], vn_desc<BN>(sV + st * VB, kk));
        }
      };
      sl_consume_p<D, NS, BN / 2>(
          o, s, a0, a1, nst, g, bars, qfull, qempty, it, lane, qk, pv,
          [&](int u) { sl_valid<BK>(lr, n, u, L, vc); },
          [&](int) { sl_softmax<BK>(s, m0, m1, l0, l1, a0, a1, vc, scale, t4); }, [&]() { pack_p<BN>(s, p); });
      g += nst;
      l0 = quad_sum(l0);
      l1 = quad_sum(l1);
      const int r0 = q0 + wg * 64 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
      const long long ld = (long long)H * D, ob = (long long)z * L * ld + (long long)h * D;
#pragma unroll
      for (int c = 0; c < D / 8; ++c) {
        const int col = c * 8 + 2 * t4;
        if (r0 < L) sp_store2(out, odt, OL, ob + (long long)r0 * ld + col, o[4 * c] / l0, o[4 * c + 1] / l0);
        if (r1 < L) sp_store2(out, odt, OL, ob + (long long)r1 * ld + col, o[4 * c + 2] / l1, o[4 * c + 3] / l1);
      }
    }
  }
}

// sla_tma_d<D>_q<BQ>_k<BK>_p: sla_tma_d<D>_q<BQ>_k<BK> on a persistent grid.
#define SLA_TMA_P(D, BQ, BK)                                                                                      \
  extern "C" __global__ void __launch_bounds__(128 * (BQ / 64 + 1), 1) sla_tma_d##D##_q##BQ##_k##BK##_p(          \
      const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,                               \
      const __grid_constant__ HpTmaDesc tmV, const bf16* OL, void* out, int odt, const int* lut, const int* cnt,  \
      int L, int H, int B, int Qb, int Kb, float scale) {                                                         \
    sla_sparse_tma_p<D, BQ / 64, BK>(&tmQ, &tmK, &tmV, OL, out, odt, lut, cnt, L, H, B, Qb, Kb, scale);          \
  }
#define SLA_TMA_P_D(BQ, BK) \
  SLA_TMA_P(128, BQ, BK)    \
  SLA_TMA_P(64, BQ, BK)
SLA_TMA_P_D(128, 64)
SLA_TMA_P_D(128, 128)
SLA_TMA_P_D(64, 64)
SLA_TMA_P_D(64, 128)

// ---- SageSLA (int8 Q·Kᵀ, e4m3 P·V) ----
// The sparse branch of SageSLA (the math of sla_sage.cuh, package sla's
// sageSparse) on Hopper: per query block of 64 rows (one consumer
// warpgroup; two blocks share an SM), a producer warp copies the int8 K
// codes [128 keys][128 B] and the e4m3 Vᵀ bytes [128 channels][128 keys]
// (sage_v8t_kernel's layout: keys in kperm order per 32, so P needs no
// shuffle) of each listed 128-key block into three mbarrier stages;
// S = Qi·Kiᵀ runs as wgmma s8 (exact int32), O += e4m3(P)·V8 as wgmma e4m3
// with P from registers. Per block j (visiting order ascending, as the map
// lists it): dq = sq·sk_j, c = sm·dq (the last block: S·dq and c = sm),
// m from −5e6, d from 1, p = exp2(fma(S, c, −m + 8.807)), out =
// bf16(bf16(O/d·vs) + o_l). Head dim 128, key blocks of 128.
// d[0..63] = (accumulate ? d : 0) + A(smem desc)·B(smem desc), m64n128k32,
// int8 codes, exact int32 sums; both operands K-major.
__device__ __forceinline__ void sg_mma_qk(int* d, u64 da, u64 db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(da), "l"(db), "r"(accumulate));
}
// d[0..63] += A(registers, e4m3, the mma.sync m16n8k32 A layout per
// warp)·B(smem desc, e4m3, K-major), m64n128k32, float32 accumulation.
__device__ __forceinline__ void sg_mma_pv(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// int32 → float32 without the conversion unit, which issues 16 a clock per
// SM (as many as exp2, so the 8192 conversions of each 64×128 S tile cost
// as much as its exponentials): for |x| < 2^22 the float whose bits are
// those of 1.5·2^23 plus x is exactly 1.5·2^23 + x, so subtracting 1.5·2^23
// gives x, the value __int2float_rz returns. S sums 128 products of int8
// codes, |x| ≤ 128·128·128 = 2^21.
__device__ __forceinline__ float sg_i2f(int x) { return __fsub_rn(__int_as_float(0x4B400000 + x), 12582912.f); }

// Online softmax of one finished int32 S (128 keys, the first vk valid) in
// SageSLA's arithmetic; s holds the float p afterwards.
__device__ __forceinline__ void sg_softmax(const int* si, float* s, float& m0, float& m1, float& d0,
                                           float& d1, float& a0, float& a1, float dq, float c, bool last, int vk,
                                           int t4) {
  float mx0 = -5e6f, mx1 = -5e6f;
#pragma unroll
  for (int nt = 0; nt < 16; ++nt) {
    const int key = nt * 8 + 2 * t4;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float x = __int2float_rz(si[4 * nt + e]);
      if (last) x = __fmul_rn(x, dq);
      s[4 * nt + e] = key + (e & 1) < vk ? x : -INFINITY;
    }
    mx0 = fmaxf(mx0, fmaxf(s[4 * nt], s[4 * nt + 1]));
    mx1 = fmaxf(mx1, fmaxf(s[4 * nt + 2], s[4 * nt + 3]));
  }
  mx0 = quad_max(mx0);
  mx1 = quad_max(mx1);
  const float n0 = fmaxf(m0, __fmul_rn(mx0, c)), n1 = fmaxf(m1, __fmul_rn(mx1, c));
  a0 = exp2f(m0 - n0);
  a1 = exp2f(m1 - n1);
  m0 = n0;
  m1 = n1;
  d0 *= a0;
  d1 *= a1;
  const float nm0 = -n0 + 8.807f, nm1 = -n1 + 8.807f;
#pragma unroll
  for (int x = 0; x < 64; ++x) {
    const float p = exp2f(fmaf(s[x], c, (x & 2) ? nm1 : nm0));
    if (x & 2)
      d1 += p;
    else
      d0 += p;
    s[x] = p;
  }
}

// sg_softmax with fewer ALU operations per S element, the same outputs bit
// for bit (the persistent kernel's; the tile kernel keeps sg_softmax until
// a GPU run has measured both): int32 → float by sg_i2f, p by ex2 (ftz),
// the ragged-key mask only on a ragged block.
__device__ __forceinline__ void sg_softmax_x(const int* si, float* s, float& m0, float& m1, float& d0,
                                           float& d1, float& a0, float& a1, float dq, float c, bool last, int vk,
                                           int t4) {
  float mx0 = -5e6f, mx1 = -5e6f;
#pragma unroll
  for (int x = 0; x < 64; ++x) s[x] = last ? __fmul_rn(sg_i2f(si[x]), dq) : sg_i2f(si[x]);
  if (vk < 128) {  // only a ragged last key block masks (not per element in every block)
#pragma unroll
    for (int nt = 0; nt < 16; ++nt) {
      const int key = nt * 8 + 2 * t4;
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (key + (e & 1) >= vk) s[4 * nt + e] = -INFINITY;
    }
  }
#pragma unroll
  for (int nt = 0; nt < 16; ++nt) {
    mx0 = fmaxf(mx0, fmaxf(s[4 * nt], s[4 * nt + 1]));
    mx1 = fmaxf(mx1, fmaxf(s[4 * nt + 2], s[4 * nt + 3]));
  }
  mx0 = quad_max(mx0);
  mx1 = quad_max(mx1);
  const float n0 = fmaxf(m0, __fmul_rn(mx0, c)), n1 = fmaxf(m1, __fmul_rn(mx1, c));
  a0 = exp2f(m0 - n0);
  a1 = exp2f(m1 - n1);
  m0 = n0;
  m1 = n1;
  d0 *= a0;
  d1 *= a1;
  const float nm0 = -n0 + 8.807f, nm1 = -n1 + 8.807f;
#pragma unroll
  for (int x = 0; x < 64; ++x) {
    // ex2 flushes what exp2f would return as a subnormal (< 2^-126) to 0:
    // e4m3(p) is 0 either way, and d ≥ 448 (the row maximum's term) absorbs
    // it, so the output is the same, without exp2f's subnormal handling.
    const float p = ex2(fmaf(s[x], c, (x & 2) ? nm1 : nm0));
    if (x & 2)
      d1 += p;
    else
      d0 += p;
    s[x] = p;
  }
}

// The probabilities of sg_softmax as e4m3 A fragments (kperm order: 32-key
// chunk kc is S tiles 4kc..4kc+3), after the previous P·V retired.
__device__ __forceinline__ void sg_pack(const float* s, u32 (&p8)[4][4]) {
#pragma unroll
  for (int kc = 0; kc < 4; ++kc) {
    const float* t = s + 16 * kc;  // S tiles 4kc..4kc+3
    p8[kc][0] = sp_e4m3x4(t[0], t[1], t[4], t[5]);
    p8[kc][1] = sp_e4m3x4(t[2], t[3], t[6], t[7]);
    p8[kc][2] = sp_e4m3x4(t[8], t[9], t[12], t[13]);
    p8[kc][3] = sp_e4m3x4(t[10], t[11], t[14], t[15]);
  }
}

// Qi, Ki: [B·L rows][H·128] int8 tensor maps (box 128 × 64 / 128 rows);
// V8t: [B·H·128 rows][Lp] e4m3 bytes (box 128 keys × 128 channels); sq
// [B, H, Qb], sk [B, H, Kb], vs [B, H·128]; grid (Qb, H, B), 256 threads.
__device__ __forceinline__ void sage_sparse_tma(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                                const float* __restrict__ sq, const float* __restrict__ sk,
                                                const float* __restrict__ vs, const bf16* __restrict__ OL, void* out,
                                                int odt, const int* __restrict__ lut, const int* __restrict__ cnt,
                                                int L, int H, int Qb, int Kb, float sm) {
  constexpr int D = 128, BM = 64, BK = TD_SLA_TMA_STAGE_KEYS, NS = TD_SLA_TMA_STAGES;  // kernels/smem.go
  static_assert(BK == 128, "S of a stage is one m64n128k32 wgmma tile");
  constexpr u32 QB = BM * D, KB = BK * D, VB = D * BK;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = HP_ALIGN_SMEM(hp_smem(smem)), sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qbar = bars + 16 * NS;
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3, t4 = lane & 3;
  const int i = blockIdx.x, h = blockIdx.y, z = blockIdx.z, q0 = i * BM;
  const long long bh = (long long)z * H + h, row = bh * Qb + i;
  const int* lr = lut + row * Kb;
  const int n = cnt[row];
  if (tid == 0) sl_init_bars<NS>(bars, qbar, 4);
  __syncthreads();

  if (wg == 1) {  // producer warpgroup: one thread issues every copy
    HP_SETMAXNREG_DEC(24);
    if (tid == 128) {
      hp_mbar_expect_tx(qbar, QB);
      hp_tma_load_2d(sQ, tmQ, h * D, z * L + q0, qbar);
      sl_produce<NS>(
          n, bars, KB + VB, [&](int t) { return __ldg(lr + t); },
          [&](int, int st, int j) {
            hp_tma_load_2d(sK + st * KB, tmK, h * D, z * L + j * BK, bars + 8 * st);
            hp_tma_load_2d(sV + st * VB, tmV, j * BK, (int)bh * D, bars + 8 * st);
          });
    }
  } else {
    HP_SETMAXNREG_INC(232);
    float o[D / 2];
#pragma unroll
    for (int x = 0; x < D / 2; ++x) o[x] = 0.f;
    int si[BK / 2];
#pragma unroll
    for (int x = 0; x < BK / 2; ++x) si[x] = 0;
    float s[BK / 2];
    u32 p8[4][4];
    float m0 = -5e6f, m1 = -5e6f, a0, a1;
    float d0 = t4 == 0 ? 1.f : 0.f, d1 = d0;  // per-thread partial sums; the quad's total starts at 1
    const float sqi = sq[row];
    auto qk = [&](int st) {
#pragma unroll
      for (int kk = 0; kk < D / 32; ++kk)
        sg_mma_qk(si, hp_desc_sw128(sQ + kk * 32), hp_desc_sw128(sK + st * KB + kk * 32), kk > 0);
    };
    auto pv = [&](int st) {
#pragma unroll
      for (int kc = 0; kc < BK / 32; ++kc) sg_mma_pv(o, p8[kc], hp_desc_sw128(sV + st * VB + kc * 32));
    };
    auto soft = [&](int t) {
      const int j = __ldg(lr + t);
      const bool last = t == n - 1;
      const float dq = __fmul_rn(sqi, __ldg(sk + bh * Kb + j));
      sg_softmax(si, s, m0, m1, d0, d1, a0, a1, dq, last ? sm : __fmul_rn(sm, dq), last, min(BK, L - j * BK), t4);
    };
    sl_consume<D, NS, BK / 2>(
        o, si, a0, a1, n, bars, qbar, lane, qk, pv, [](int) {}, soft, [&]() { sg_pack(s, p8); });
    d0 = quad_sum(d0);
    d1 = quad_sum(d1);
    const float i0 = 1.f / d0, i1 = 1.f / d1;
    const int r0 = q0 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
    const long long ld = (long long)H * D, ob = (long long)z * L * ld + (long long)h * D;
    const float* vsh = vs + (long long)z * ld + (long long)h * D;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      const int col = c * 8 + 2 * t4;
      const float v0 = vsh[col], v1 = vsh[col + 1];
      if (r0 < L)
        sp_store2(out, odt, OL, ob + (long long)r0 * ld + col, __fmul_rn(__fmul_rn(o[4 * c], i0), v0),
                  __fmul_rn(__fmul_rn(o[4 * c + 1], i0), v1));
      if (r1 < L)
        sp_store2(out, odt, OL, ob + (long long)r1 * ld + col, __fmul_rn(__fmul_rn(o[4 * c + 2], i1), v0),
                  __fmul_rn(__fmul_rn(o[4 * c + 3], i1), v1));
    }
  }
}

extern "C" __global__ void __launch_bounds__(256, 2)
    sage_tma_q64_k128(const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,
                      const __grid_constant__ HpTmaDesc tmV, const float* sq, const float* sk, const float* vs,
                      const bf16* OL, void* out, int odt, const int* lut, const int* cnt, int L, int H, int Qb, int Kb,
                      float sm) {
  sage_sparse_tma(&tmQ, &tmK, &tmV, sq, sk, vs, OL, out, odt, lut, cnt, L, H, Qb, Kb, sm);
}

// sage_sparse_tma on a persistent grid (see "Persistent grids" above):
// gridDim.x blocks (two per SM) walk the Qb·H·B items.
__device__ __forceinline__ void sage_sparse_tma_p(const HpTmaDesc* tmQ, const HpTmaDesc* tmK, const HpTmaDesc* tmV,
                                                  const float* __restrict__ sq, const float* __restrict__ sk,
                                                  const float* __restrict__ vs, const bf16* __restrict__ OL,
                                                  void* out, int odt, const int* __restrict__ lut,
                                                  const int* __restrict__ cnt, int L, int H, int B, int Qb, int Kb,
                                                  float sm) {
  constexpr int D = 128, BM = 64, BK = TD_SLA_TMA_STAGE_KEYS, NS = TD_SLA_TMA_STAGES;  // kernels/smem.go
  static_assert(BK == 128, "S of a stage is one m64n128k32 wgmma tile");
  constexpr u32 QB = BM * D, KB = BK * D, VB = D * BK;
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = HP_ALIGN_SMEM(hp_smem(smem)), sK = sQ + QB, sV = sK + NS * KB, bars = sV + NS * VB;
  const u32 qfull = bars + 16 * NS, qempty = qfull + 8;
  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, w4 = (tid >> 5) & 3, t4 = lane & 3;
  const int items = Qb * H * B;
  if (tid == 0) {
    hp_mbar_init(qempty, 4);
    sl_init_bars<NS>(bars, qfull, 4);  // fences both
  }
  __syncthreads();

  if (wg == 1) {  // producer warpgroup: one thread issues every copy
    HP_SETMAXNREG_DEC(24);
    if (tid == 128)
      sl_produce_p<NS>(
          items, Qb, H, lut, cnt, Kb, bars, qfull, qempty, KB + VB, QB, [](int n) { return n; },
          [](const int* lr, int t) { return __ldg(lr + t); },
          [&](int st, int h, int z, const int*, int, int, int j) {
            hp_tma_load_2d(sK + st * KB, tmK, h * D, z * L + j * BK, bars + 8 * st);
            hp_tma_load_2d(sV + st * VB, tmV, j * BK, (z * H + h) * D, bars + 8 * st);
          },
          [&](int i, int h, int z) { hp_tma_load_2d(sQ, tmQ, h * D, z * L + i * BM, qfull); });
  } else {
    HP_SETMAXNREG_INC(232);
    int g = 0;  // stages consumed over all items
    int nn = sl_next_count(cnt, blockIdx.x, items);
#pragma unroll 1
    for (int t = blockIdx.x, it = 0; t < items; t += gridDim.x, ++it) {
      const int i = t % Qb, h = (t / Qb) % H, z = t / (Qb * H), q0 = i * BM;
      const long long bh = (long long)z * H + h;
      const int* lr = lut + (long long)t * Kb;
      const int n = nn;
      nn = sl_next_count(cnt, t + gridDim.x, items);  // the next item's, one item ahead
      sl_prefetch_ol<D>(OL, z, h, q0, L, H, tid);
      float o[D / 2];
#pragma unroll
      for (int x = 0; x < D / 2; ++x) o[x] = 0.f;
      int si[BK / 2];
#pragma unroll
      for (int x = 0; x < BK / 2; ++x) si[x] = 0;
      float s[BK / 2];
      u32 p8[4][4];
      float m0 = -5e6f, m1 = -5e6f, a0, a1;
      float d0 = t4 == 0 ? 1.f : 0.f, d1 = d0;  // per-thread partial sums; the quad's total starts at 1
      const float sqi = __ldg(sq + t);
      auto qk = [&](int st) {
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk)
          sg_mma_qk(si, hp_desc_sw128(sQ + kk * 32), hp_desc_sw128(sK + st * KB + kk * 32), kk > 0);
      };
      auto pv = [&](int st) {
#pragma unroll
        for (int kc = 0; kc < BK / 32; ++kc) sg_mma_pv(o, p8[kc], hp_desc_sw128(sV + st * VB + kc * 32));
      };
      auto soft = [&](int u) {
        const int j = __ldg(lr + u);
        const bool last = u == n - 1;
        const float dq = __fmul_rn(sqi, __ldg(sk + bh * Kb + j));
        sg_softmax_x(si, s, m0, m1, d0, d1, a0, a1, dq, last ? sm : __fmul_rn(sm, dq), last, min(BK, L - j * BK), t4);
      };
      sl_consume_p<D, NS, BK / 2>(
          o, si, a0, a1, n, g, bars, qfull, qempty, it, lane, qk, pv, [](int) {}, soft, [&]() { sg_pack(s, p8); });
      g += n;
      d0 = quad_sum(d0);
      d1 = quad_sum(d1);
      const float i0 = 1.f / d0, i1 = 1.f / d1;
      const int r0 = q0 + w4 * 16 + (lane >> 2), r1 = r0 + 8;
      const long long ld = (long long)H * D, ob = (long long)z * L * ld + (long long)h * D;
      const float* vsh = vs + (long long)z * ld + (long long)h * D;
#pragma unroll
      for (int c = 0; c < D / 8; ++c) {
        const int col = c * 8 + 2 * t4;
        const float v0 = vsh[col], v1 = vsh[col + 1];
        if (r0 < L)
          sp_store2(out, odt, OL, ob + (long long)r0 * ld + col, __fmul_rn(__fmul_rn(o[4 * c], i0), v0),
                    __fmul_rn(__fmul_rn(o[4 * c + 1], i0), v1));
        if (r1 < L)
          sp_store2(out, odt, OL, ob + (long long)r1 * ld + col, __fmul_rn(__fmul_rn(o[4 * c + 2], i1), v0),
                    __fmul_rn(__fmul_rn(o[4 * c + 3], i1), v1));
      }
    }
  }
}

// sage_tma_q64_k128_p: sage_tma_q64_k128 on a persistent grid.
extern "C" __global__ void __launch_bounds__(256, 2)
    sage_tma_q64_k128_p(const __grid_constant__ HpTmaDesc tmQ, const __grid_constant__ HpTmaDesc tmK,
                        const __grid_constant__ HpTmaDesc tmV, const float* sq, const float* sk, const float* vs,
                        const bf16* OL, void* out, int odt, const int* lut, const int* cnt, int L, int H, int B, int Qb,
                        int Kb, float sm) {
  sage_sparse_tma_p(&tmQ, &tmK, &tmV, sq, sk, vs, OL, out, odt, lut, cnt, L, H, B, Qb, Kb, sm);
}
