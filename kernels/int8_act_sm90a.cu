// int8_act_sm90a.cu: the DiT's modulated LayerNorm (optionally fused with the
// residual update, as add_ln_bf16_v*) emitting the W8A8 activation codes of
// its result directly: int8 codes Q [M, D] and per-128×128-tile scales SQ
// [ceil(M/128), D/128], exactly what int8_quant_bf16_kernel would make of
// the bf16 rows AddLayerNorm / LayerNorm / LayerNormModulate store. The
// bf16 normed rows never leave the chip; the residual sum (when there is
// one) is stored as before. sm_90 only: a tile's 128 rows are spread over a
// cluster of 8 blocks (16 rows each) that exchange their per-column-block
// amax through distributed shared memory.
//
// Bit-exactness with the unfused kernels: the per-element arithmetic comes
// from ln.cuh (shared with vec.cu's ln_body), and the row statistics are
// summed in ln_body's order. ln_body runs TH = 32·NW threads per row, thread
// t holding the 8-value chunks t + j·TH (j < VPT), each thread summing its
// chunks in order, then warp_sum per warp and the NW warp partials added in
// order. Here one warp does a row and its lane l plays the NW threads
// 32w + l: it keeps NW partial sums, reduces each across the warp with the
// same butterfly, and adds them in the same order, so mean and rstd are the
// same floats. The host picks NW and VPT as rowVec does for ln_body.
#include "hopper.cuh"
#include "ln.cuh"

#define LNQ_ROWS 16   // rows per block
#define LNQ_WARPS 8   // warps per block: each does LNQ_ROWS / LNQ_WARPS rows
#define LNQ_CLUSTER 8 // blocks per 128-row tile

// Reads the float at the same shared-memory offset in cluster block rank.
__device__ __forceinline__ float lnq_ld_cluster(const float* p, u32 rank) {
  u32 remote;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(hp_smem(p)), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
  return v;
}

// Dynamic shared memory: the block's LNQ_ROWS normed rows (bf16, D each),
// then the block's amax per column block (D/128 floats, as int bits for
// atomicMax: non-negative floats order as their bits do), then the tile's
// amax after the cluster exchange (D/128 floats).
template <int NW, int VPT>
__device__ __forceinline__ void lnq_body(signed char* __restrict__ Q, float* __restrict__ SQ, bf16* sum_out,
                                         const bf16* __restrict__ x, const bf16* __restrict__ ay, const void* gate,
                                         int gdt, const void* w, int wdt, const void* bb, int bdt, const void* shift,
                                         int shdt, const void* scale, int scdt, long long nv, int M, int D,
                                         float eps) {
  constexpr int TH = 32 * NW;
  extern __shared__ __align__(16) unsigned char lnq_smem[];
  const int CB = D / 128;
  bf16* tile = (bf16*)lnq_smem;
  int* pam = (int*)(lnq_smem + (size_t)LNQ_ROWS * D * 2);
  float* tam = (float*)(pam + CB);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const u32 rank = hp_cluster_rank();
  const int mb = blockIdx.x / LNQ_CLUSTER;  // the 128-row tile
  const int r0 = mb * 128 + (int)rank * LNQ_ROWS;
  for (int c = tid; c < CB; c += blockDim.x) pam[c] = __float_as_int(1e-8f);
  __syncthreads();

  // This lane's amax per chunk slot, over the rows it does (chunk slots are
  // the same columns in every row).
  float am[NW][VPT];
#pragma unroll
  for (int v = 0; v < NW; ++v)
#pragma unroll
    for (int j = 0; j < VPT; ++j) am[v][j] = 1e-8f;

  for (int rr = warp; rr < LNQ_ROWS; rr += LNQ_WARPS) {
    const int row = r0 + rr;
    if (row >= M) break;  // uniform per warp
    const long long base = (long long)row * D;
    uint4 raw[NW][VPT];  // the row (the rounded sum when ADD), packed bf16
#pragma unroll
    for (int v = 0; v < NW; ++v)
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        const int c8 = 32 * v + lane + j * TH;
        raw[v][j] = c8 * 8 < D ? ((const uint4*)(x + base))[c8] : make_uint4(0, 0, 0, 0);
      }
    if (ay) {
#pragma unroll
      for (int v = 0; v < NW; ++v)
#pragma unroll
        for (int j = 0; j < VPT; ++j) {
          const int c8 = 32 * v + lane + j * TH;
          if (c8 * 8 >= D) continue;
          float xv[8], yv[8], gv[8];
          unpack8(raw[v][j], xv);
          unpack8(((const uint4*)(ay + base))[c8], yv);
          if (gate) ld8v(gate, gdt, c8 * 8, gv);
#pragma unroll
          for (int k = 0; k < 8; ++k) xv[k] = ln_add_elem(xv[k], yv[k], gate != nullptr, gate ? gv[k] : 0.f);
          raw[v][j] = pack8(xv);
          ((uint4*)(sum_out + base))[c8] = raw[v][j];
        }
    }
    // Mean, in ln_body's order: per virtual thread over its chunks, then
    // per virtual warp, then over the warps.
    float s[NW];
#pragma unroll
    for (int v = 0; v < NW; ++v) {
      s[v] = 0.f;
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        if ((32 * v + lane + j * TH) * 8 >= D) continue;
        float f[8];
        unpack8(raw[v][j], f);
#pragma unroll
        for (int k = 0; k < 8; ++k) s[v] += f[k];
      }
    }
    float tot = 0.f;
#pragma unroll
    for (int v = 0; v < NW; ++v) tot += warp_sum(s[v]);
    const float mean = tot / D;
#pragma unroll
    for (int v = 0; v < NW; ++v) {
      s[v] = 0.f;
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        if ((32 * v + lane + j * TH) * 8 >= D) continue;
        float f[8];
        unpack8(raw[v][j], f);
#pragma unroll
        for (int k = 0; k < 8; ++k) s[v] = ln_sq_acc(f[k], mean, s[v]);
      }
    }
    tot = 0.f;
#pragma unroll
    for (int v = 0; v < NW; ++v) tot += warp_sum(s[v]);
    const float rstd = rsqrtf(tot / D + eps);
    // Normalise, round to bf16 into the tile, track amax.
#pragma unroll
    for (int v = 0; v < NW; ++v)
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        const int c8 = 32 * v + lane + j * TH, c0 = c8 * 8;
        if (c0 >= D) continue;
        float f[8], wv[8], bv[8], shv[8], scv[8];
        unpack8(raw[v][j], f);
        if (wdt) ld8v(w, wdt, c0, wv);
        if (bdt) ld8v(bb, bdt, c0, bv);
        if (nv) {
          const long long m = (base + c0) % nv;  // nv % 8 == 0: 8 consecutive values
          ld8v(shift, shdt, m, shv);
          ld8v(scale, scdt, m, scv);
        }
#pragma unroll
        for (int k = 0; k < 8; ++k)
          f[k] = ln_elem(f[k], mean, rstd, wdt, wdt ? wv[k] : 0.f, bdt, bdt ? bv[k] : 0.f, nv, nv ? scv[k] : 0.f,
                         nv ? shv[k] : 0.f);
        const uint4 p = pack8(f);
        ((uint4*)(tile + (size_t)rr * D))[c8] = p;
        float r[8];
        unpack8(p, r);
#pragma unroll
        for (int k = 0; k < 8; ++k) am[v][j] = fmaxf(am[v][j], fabsf(r[k]));
      }
  }
  // Per column block: lanes 0-15 of a chunk slot cover one 128-column
  // block, lanes 16-31 the next (TH is a multiple of 32, D of 128).
#pragma unroll
  for (int v = 0; v < NW; ++v)
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      float a = am[v][j];
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
      const int c8 = 32 * v + lane + j * TH;
      if ((lane & 15) == 0 && c8 * 8 < D) atomicMax(pam + c8 / 16, __float_as_int(a));
    }
  __syncwarp();
  hp_cluster_sync();  // every block's pam is final and visible to the cluster
  for (int c = tid; c < CB; c += blockDim.x) {
    float a = 1e-8f;
#pragma unroll
    for (int q = 0; q < LNQ_CLUSTER; ++q) a = fmaxf(a, lnq_ld_cluster((const float*)pam + c, q));
    tam[c] = a;
    if (rank == 0) SQ[(long long)mb * CB + c] = a * (1.f / 128.f);
  }
  __syncthreads();
  // Codes: each warp re-reads its own rows from the tile.
  for (int rr = warp; rr < LNQ_ROWS; rr += LNQ_WARPS) {
    const int row = r0 + rr;
    if (row >= M) break;
    for (int c8 = lane; c8 * 8 < D; c8 += 32) {
      float f[8];
      unpack8(((const uint4*)(tile + (size_t)rr * D))[c8], f);
      const float sc = 128.f / tam[c8 / 16];
      u32 out[2] = {0, 0};
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        int cv = __float2int_rn(f[k] * sc);  // NaN gives 0, as cvt.rni.sat
        cv = min(127, max(-128, cv));
        out[k >> 2] |= ((u32)cv & 0xffu) << (8 * (k & 3));
      }
      *(uint2*)(Q + (long long)row * D + c8 * 8) = make_uint2(out[0], out[1]);
    }
  }
  __syncwarp();
  hp_cluster_sync();  // no block leaves while a peer may still read its pam
}

// Instances lnq_v<VPT>_w<NW>: 256 threads, a grid of whole clusters of 8
// (blockIdx.x / 8 is the 128-row tile), dynamic shared memory
// 16·D·2 + 2·(D/128)·4 bytes. ay == nullptr: no residual update (x is
// normed as is, sum_out unused); otherwise sum_out = x + ay (gated when
// gate is set) is stored and normed. D % 128 == 0; nv % 8 == 0.
#define LNQ_KERNEL(NW, VPT)                                                                                         \
  extern "C" __global__ void __cluster_dims__(LNQ_CLUSTER, 1, 1) __launch_bounds__(32 * LNQ_WARPS)                  \
      lnq_v##VPT##_w##NW(signed char* Q, float* SQ, bf16* sum_out, const bf16* x, const bf16* ay, const void* gate, \
                         int gdt, const void* w, int wdt, const void* b, int bdt, const void* shift, int shdt,      \
                         const void* scale, int scdt, long long nv, int M, int D, float eps) {                      \
    lnq_body<NW, VPT>(Q, SQ, sum_out, x, ay, gate, gdt, w, wdt, b, bdt, shift, shdt, scale, scdt, nv, M, D, eps);   \
  }
// rowVec's choices: D = 128·k for k = 1..16 with VPT 1 (NW = ceil(D/256)),
// 3072 (VPT 2, NW 6) and 5120 (VPT 4, NW 5) — the Wan widths 1536, 3072,
// 5120 and the small test models.
LNQ_KERNEL(1, 1)
LNQ_KERNEL(2, 1)
LNQ_KERNEL(3, 1)
LNQ_KERNEL(4, 1)
LNQ_KERNEL(5, 1)
LNQ_KERNEL(6, 1)
LNQ_KERNEL(7, 1)
LNQ_KERNEL(8, 1)
LNQ_KERNEL(6, 2)
LNQ_KERNEL(5, 4)
