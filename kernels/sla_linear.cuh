// sla_linear.cuh: the fused SLA linear branch's feature map and its last
// step (φ(q)·KV, the normalisation and proj_l), shared by the mma.sync
// builds (sla_linear.cu) and the wgmma ones (sla_linear_sm90a.cu), which
// differ only in how the two small GEMMs run: the policy MM of
// sla_lin_out_body. docs/NUMERICS.md §6.4 has the math and its roundings.
#pragma once
#include "mma.cuh"

// y ≈ 1/b within an ulp: the special-function unit's approximation and one
// Newton step, with none of IEEE division's special-case code (b is a
// normal number here: a softmax sum in [1, 128] or a denominator ≥ 1e-5).
__device__ __forceinline__ float sla_lin_rcp(float b) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(b));
  return fmaf(fmaf(-b, y, 1.f), y, y);
}

// a / b correctly rounded, as IEEE division gives it, from y = sla_lin_rcp(b):
// q = a·y is within an ulp of a/b, r = a − q·b is exact (fma), and q + r·y
// rounds to a/b (Markstein's theorem, which holds for y within an ulp of
// 1/b; checked against exact division on 3M random pairs, half of them with
// y off by an ulp). |a| < 2^-64 is scaled by 2^64 first, exact unless the
// quotient is subnormal (then off by at most a subnormal ulp, far below
// anything a bf16 result keeps). Branch-free and a few instructions: the
// kernels divide every φ value and every o value, and IEEE division's
// inlined special-case paths made their code too big for the instruction
// cache.
__device__ __forceinline__ float sla_lin_div(float a, float b, float y) {
  const bool tiny = fabsf(a) < 0x1p-64f;
  const float as = tiny ? a * 0x1p64f : a;
  const float q = as * y;
  const float r = fmaf(fmaf(-q, b, as), y, q);
  return tiny ? r * 0x1p-64f : r;
}

// sla_lin_phi turns one thread's 8 channels of a row (raw bf16) into φ,
// softmax over the row: the max and the sum over the row's TPR lanes
// (consecutive and aligned in the warp; every lane of the warp must call),
// e = expf(x − max), φ = bf16(e / Σe). Returns φ packed and, in f, as floats.
template <int TPR>
__device__ __forceinline__ uint4 sla_lin_phi(uint4 raw, float* f) {
  const u32 w[4] = {raw.x, raw.y, raw.z, raw.w};
  float v[8], m = -INFINITY, s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) m = fmaxf(m, v[i]);
#pragma unroll
  for (int o = TPR / 2; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    v[i] = expf(v[i] - m);
    s += v[i];
  }
#pragma unroll
  for (int o = TPR / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const float y = sla_lin_rcp(s);
  u32 p[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    p[i] = pack_bf2(sla_lin_div(v[2 * i], s, y), sla_lin_div(v[2 * i + 1], s, y));
    f[2 * i] = __uint_as_float(p[i] << 16);
    f[2 * i + 1] = __uint_as_float(p[i] & 0xffff0000u);
  }
  return make_uint4(p[0], p[1], p[2], p[3]);
}

// Stages and rows of step 1's cp.async ring (the host sizes shared memory
// with the same numbers: ops_sla_linear.go).
#define SLA_LIN_KV_STAGES 3
#define SLA_LIN_KV_ROWS 64

// Step 1: per (chunk of rows, head, batch) the sums over its rows of
// KV[c1][c2] = Σ_l φ(k)[l,c1]·v[l,c2] (float32 on tensor cores; written to
// kvpart [B, H, chunks, D(c2), D(c1)]) and ks[c] = Σ_l φ(k)[l,c] (float64;
// kspart [B, H, chunks, D]). Tiles of 64 rows of k and v arrive by cp.async
// (3 stages); φ(k) replaces k in place (padded rows, KV::kPhiUnroll rows
// at a time interleaved), v lands where the policy KV puts it (KV::voff)
// and KV::tile adds the tile's φ(k)ᵀ·v to its accumulators, which
// KV::store writes out. grid (chunks, H, B),
// KV::kThreads threads; rows per chunk a multiple of 64; dynamic shared
// memory KV::kAlign − 16 + 3·(KV::kVBytes + 64·(D+8)·2) bytes.
template <int D, class KV>
__device__ __forceinline__ void sla_lin_kv_body(float* kvpart, double* kspart, const bf16* __restrict__ K,
                                                const bf16* __restrict__ V, int L, int H, int rowsPerChunk) {
  constexpr int BM = SLA_LIN_KV_ROWS, S = SLA_LIN_KV_STAGES, STR = D + 8, NTH = KV::kThreads;
  constexpr int TPR = D / 8, RPP = NTH / TPR;
  extern __shared__ __align__(16) unsigned char smem[];
  const u32 s0 = sp_smem_addr(smem);
  unsigned char* sV = smem + (((s0 + KV::kAlign - 1) & ~(u32)(KV::kAlign - 1)) - s0);  // [S][kVBytes] v
  bf16* sK = (bf16*)(sV + S * KV::kVBytes);  // [S][BM][STR] k, then φ(k)
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = blockIdx.y, b = blockIdx.z;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const int r0 = blockIdx.x * rowsPerChunk, r1 = min(r0 + rowsPerChunk, L);
  const int tiles = r1 > r0 ? (r1 - r0 + BM - 1) / BM : 0;
  auto load = [&](int t) {  // tile t into stage t % S; zeros past the chunk
    bf16* dk = sK + (t % S) * BM * STR;
    unsigned char* dv = sV + (t % S) * KV::kVBytes;
    for (int c = tid; c < BM * (D / 8); c += NTH) {
      const int r = c / (D / 8), c8 = c % (D / 8), g = r0 + t * BM + r;
      const long long src = base + (long long)min(g, L - 1) * ld + c8 * 8;
      sp_cp16(&dk[r * STR + c8 * 8], K + src, g < r1);
      sp_cp16(dv + KV::voff(r, c8), V + src, g < r1);
    }
  };
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < tiles) load(s);
    sp_commit();
  }
  const int cg = tid % TPR, rg = tid / TPR;  // φ: channels cg·8.., rows rg, rg + RPP, ...
  KV kv;
  kv.zero();
  double ks[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) ks[i] = 0;
  for (int t = 0; t < tiles; ++t) {
    asm volatile("cp.async.wait_group %0;" ::"n"(S - 2) : "memory");  // tile t landed
    KV::fence();
    __syncthreads();  // and every warp is done with tile t − 1's stage
    if (t + S - 1 < tiles) load(t + S - 1);
    sp_commit();
    bf16* tk = sK + (t % S) * BM * STR;
#pragma unroll(KV::kPhiUnroll)
    for (int i = 0; i < BM / RPP; ++i) {  // rows unrolled: their shuffle chains overlap
      const int r = rg + i * RPP;
      uint4* p = (uint4*)&tk[r * STR + cg * 8];
      float f[8];
      uint4 y = sla_lin_phi<TPR>(*p, f);
      if (r0 + t * BM + r >= r1) {  // past the chunk: φ = 0, not softmax(0)
        y = make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < 8; ++j) f[j] = 0.f;
      }
      *p = y;
#pragma unroll
      for (int j = 0; j < 8; ++j) ks[j] += (double)f[j];
    }
    __syncthreads();
    kv.tile(tk, sV + (t % S) * KV::kVBytes, lane, warp);
  }
  const long long part = ((long long)b * H + h) * gridDim.x + blockIdx.x;
  kv.store(kvpart + part * D * D, lane, warp);
  // ks: the RPP row groups' sums added in a fixed order through shared memory.
  sp_wait_all();
  __syncthreads();
  double* sks = (double*)sK;  // [RPP][D]
#pragma unroll
  for (int i = 0; i < 8; ++i) sks[rg * D + cg * 8 + i] = ks[i];
  __syncthreads();
  if (tid < D) {
    double s = 0;
    for (int r = 0; r < RPP; ++r) s += sks[r * D + tid];
    kspart[part * D + tid] = s;
  }
}

// o = bf16(bf16(num)/dn) for one m-tile's accumulators (mma.sync layout,
// n8 tile x in acc[4x..4x+3]) as the A fragments of the next GEMM (the
// accumulator layout is the A layout); dn0, dn1 are rows g and g + 8.
template <int D>
__device__ __forceinline__ void sla_lin_norm_frags(u32 (&of)[D / 16][4], const float* acc, float dn0, float dn1) {
  const float y0 = sla_lin_rcp(dn0), y1 = sla_lin_rcp(dn1);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    of[kk][0] = pack_bf2(sla_lin_div(rbf(acc[8 * kk]), dn0, y0), sla_lin_div(rbf(acc[8 * kk + 1]), dn0, y0));
    of[kk][1] = pack_bf2(sla_lin_div(rbf(acc[8 * kk + 2]), dn1, y1), sla_lin_div(rbf(acc[8 * kk + 3]), dn1, y1));
    of[kk][2] = pack_bf2(sla_lin_div(rbf(acc[8 * kk + 4]), dn0, y0), sla_lin_div(rbf(acc[8 * kk + 5]), dn0, y0));
    of[kk][3] = pack_bf2(sla_lin_div(rbf(acc[8 * kk + 6]), dn1, y1), sla_lin_div(rbf(acc[8 * kk + 7]), dn1, y1));
  }
}

// Step 3: per (run of tiles of BM = 16·MR·NW rows, head, batch), KVᵀ and W
// loaded once, the q tiles streamed by cp.async (S stages): φ(q) in place
// with the row's denominator dn = bf16(1e-5 + bf16(Σ_c bf16(φ(q)·ks)))
// (float64 sum), then MM::run gives each warp, for its MR m-tiles of 16
// rows (from row 16·MR·warp), ol − bias = (o·Wᵀ) with num = φ(q)·KV, o =
// bf16(bf16(num)/dn) kept in registers as the A fragments of proj_l; ol =
// bf16(that + bias) is staged in the warp's own rows of the tile and stored
// 16 bytes at a time to [B, L, H·D]. W [D, D] and bias [D] bf16 (bias may
// be null). grid (ceil(tiles / tilesPerBlock), H, B), 32·NW threads;
// dynamic shared memory MM::kAlign − 16 + MM::kOpBytes + S·BM·(D+8)·2 +
// BM·4 + D·4 bytes.
//
// The policy MM has kAlign (the alignment its operand region needs),
// kOpBytes (that region's size), load (cp.async of this head's KVᵀ and of
// W into the region), fence (what must follow the copies before the GEMMs
// read them) and run.
template <int D, int NW, int S, int MR, class MM>
__device__ __forceinline__ void sla_lin_out_body(bf16* ol, const bf16* __restrict__ Q, const bf16* __restrict__ kvt,
                                                 const float* __restrict__ ks, const bf16* __restrict__ W,
                                                 const bf16* __restrict__ bias, int L, int H, int tilesPerBlock) {
  constexpr int RW = 16 * MR, BM = RW * NW, NTH = 32 * NW, STR = D + 8, TPR = D / 8, RPP = NTH / TPR;
  extern __shared__ __align__(16) unsigned char smem[];
  const u32 s0 = sp_smem_addr(smem);
  unsigned char* ops = smem + (((s0 + MM::kAlign - 1) & ~(u32)(MM::kAlign - 1)) - s0);  // KVᵀ, W
  bf16* sQ = (bf16*)(ops + MM::kOpBytes);     // [S][BM][STR] q, then φ(q), then the output rows
  float* sdn = (float*)(sQ + S * BM * STR);   // [BM]
  float* sb = sdn + BM;                       // [D] bias
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int h = blockIdx.y, b = blockIdx.z;
  const long long ld = (long long)H * D, base = (long long)b * L * ld + (long long)h * D;
  const long long bh = (long long)b * H + h;
  const int t0 = blockIdx.x * tilesPerBlock, tiles = min(t0 + tilesPerBlock, (L + BM - 1) / BM) - t0;
  auto load = [&](int t) {  // tile t0 + t into stage t % S; zeros past L
    bf16* dq = sQ + (t % S) * BM * STR;
    const int q0 = (t0 + t) * BM;
    for (int c = tid; c < BM * (D / 8); c += NTH) {
      const int r = c / (D / 8), col = (c % (D / 8)) * 8, gq = q0 + r;
      sp_cp16(&dq[r * STR + col], Q + base + (long long)min(gq, L - 1) * ld + col, gq < L);
    }
  };
  MM::load(ops, kvt + bh * D * D, W, tid, NTH);
  if (tid < D) sb[tid] = bias ? bf2f(bias[tid]) : 0.f;
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {  // KVᵀ and W join the first group
    if (s < tiles) load(s);
    sp_commit();
  }
  const int cg = tid % TPR, rg = tid / TPR;  // φ: channels cg·8.., rows rg, rg + RPP, ...
  float ksv[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) ksv[i] = ks[bh * D + cg * 8 + i];
  for (int t = 0; t < tiles; ++t) {
    asm volatile("cp.async.wait_group %0;" ::"n"(S - 2) : "memory");  // tile t landed
    MM::fence();
    __syncthreads();  // and every warp is done with tile t − 1's stage
    if (t + S - 1 < tiles) load(t + S - 1);
    sp_commit();
    bf16* tq = sQ + (t % S) * BM * STR;
#pragma unroll 2
    for (int i = 0; i < BM / RPP; ++i) {  // row pairs: their shuffle chains overlap
      const int r = rg + i * RPP;
      uint4* p = (uint4*)&tq[r * STR + cg * 8];
      float f[8];
      *p = sla_lin_phi<TPR>(*p, f);
      double d[8];  // bf16 values: their float64 sum is exact in any order
#pragma unroll
      for (int j = 0; j < 8; ++j) d[j] = (double)rbf(f[j] * ksv[j]);
      double den = ((d[0] + d[1]) + (d[2] + d[3])) + ((d[4] + d[5]) + (d[6] + d[7]));
#pragma unroll
      for (int o = TPR / 2; o > 0; o >>= 1) den += __shfl_xor_sync(0xffffffffu, den, o);
      if (cg == 0) sdn[r] = rbf(1e-5f + rbf((float)den));
    }
    __syncthreads();
    bf16* mine = tq + warp * RW * STR;  // the warp's rows: only it reads them
    float pa[MR][D / 2];                // proj_l without the bias, accumulator layout
    MM::run(pa, mine, sdn + warp * RW, ops, lane);
    // Every lane's ldmatrix reads of the rows come before any lane overwrites
    // them: the MMAs already order this through their operands, but only a
    // barrier says so to the memory model (and to compute-sanitizer racecheck).
    __syncwarp();
    // The warp's rows of the tile take the output, then go out 16 bytes at a time.
#pragma unroll
    for (int m = 0; m < MR; ++m)
#pragma unroll
      for (int x = 0; x < D / 8; ++x) {
        const int col = x * 8 + 2 * t4;
        *(u32*)&mine[(m * 16 + g) * STR + col] = pack_bf2(pa[m][4 * x] + sb[col], pa[m][4 * x + 1] + sb[col + 1]);
        *(u32*)&mine[(m * 16 + g + 8) * STR + col] = pack_bf2(pa[m][4 * x + 2] + sb[col], pa[m][4 * x + 3] + sb[col + 1]);
      }
    __syncwarp();
    const int q0 = (t0 + t) * BM + warp * RW;
#pragma unroll
    for (int c = lane; c < RW * (D / 8); c += 32) {
      const int r = c / (D / 8), col = (c % (D / 8)) * 8;
      if (q0 + r < L) *(uint4*)&ol[base + (long long)(q0 + r) * ld + col] = *(const uint4*)&mine[r * STR + col];
    }
  }
}
