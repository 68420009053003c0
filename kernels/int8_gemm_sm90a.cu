// int8_gemm_sm90a.cu: the W8A8 GEMM of int8_linear.cu on Hopper (sm_90a
// only: wgmma, the bulk tensor copy engine, setmaxnreg), DeepGEMM style.
//
// Y[M, N] = X·Wᵀ for int8 codes X [M, K] (activations, from
// int8_quant_kernel) and W [N, K] (weights), scales SX [ceil(M/128), K/128]
// and SW [ceil(N/128), K/128]. A block owns a 128 × BN output tile: one
// producer warpgroup, of which one thread streams 128-wide k blocks of X
// (128 rows) and W (BN rows) into an NS-stage mbarrier ring with TMA
// (128-byte swizzle, zero fill past M and N), and two consumer warpgroups of
// 64 rows each. For every k block a consumer issues four m64nBNk32 s8 wgmmas
// into an int32 accumulator (exact: |sum| <= 128·128·128 = 2^21) and folds
// it into the float32 accumulator as acc = fma(float(sum), sx·sw, acc), in
// ascending k-block order: the reference rule, so the result is bit-exact
// with int8_gemm_kernel and package quant. In the pipelined variants (p)
// the next k block's wgmmas run into a second int32 set while the first is
// folded. The grid is persistent (one block per SM walking the tiles).
// Epilogue: round to the output dtype, add the bias in that dtype (rounding
// again), store (bf16 through swizzled shared memory and TMA tensor
// stores, or 16-byte stores by every thread).
#include "hopper.cuh"
#include "ln.cuh"

// d[0..63] = (scale_d ? d : 0) + A(smem desc)·B(smem desc), m64n128k32,
// int8 codes, exact int32 sums; both operands K-major.
__device__ __forceinline__ void i8g_mma_n128(int* d, u64 da, u64 db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(da), "l"(db), "r"(scale_d));
}

// d[0..95] = (scale_d ? d : 0) + A(smem desc)·B(smem desc), m64n192k32,
// int8 codes, exact int32 sums; both operands K-major.
__device__ __forceinline__ void i8g_mma_n192(int* d, u64 da, u64 db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, %96, %97, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]), "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95])
      : "l"(da), "l"(db), "r"(scale_d));
}

template <int BN>
__device__ __forceinline__ void i8g_mma(int* d, u64 da, u64 db, int scale_d);
template <>
__device__ __forceinline__ void i8g_mma<128>(int* d, u64 da, u64 db, int scale_d) { i8g_mma_n128(d, da, db, scale_d); }
template <>
__device__ __forceinline__ void i8g_mma<192>(int* d, u64 da, u64 db, int scale_d) { i8g_mma_n192(d, da, db, scale_d); }

// float(i) for |i| < 2^22, exactly (as a cvt.rn would give), on the integer
// and FMA pipes instead of the slower conversion unit: 0x4B400000 is
// 1.5·2^23, whose float spacing is 1.
__device__ __forceinline__ float i8g_i2f(int i) { return __fadd_rn(__int_as_float(i + 0x4B400000), -12582912.f); }

// Issues one k block (four k32 steps) for the 64 rows at sa against the BN
// rows at sb; the first step overwrites the int32 accumulator.
template <int BN>
__device__ __forceinline__ void i8g_issue(int* d, u32 sa, u32 sb) {
  hp_wg_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) i8g_mma<BN>(d, hp_desc_sw128(sa + kk * 32), hp_desc_sw128(sb + kk * 32), kk > 0);
  hp_wg_commit();
}

// Keeps the compiler from reading the int32 accumulator before the wait.
template <int BN>
__device__ __forceinline__ void i8g_reg_fence(int* d) {
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// acc += float(d)·scale for one k block; fragment column group j (columns
// 8j..8j+7 of the tile) uses sc1 from column split on (the tile's second
// weight-scale block; split = BN when the tile lies in one block). CVT picks
// how float(d) is formed, all exact: 0 the magic-number add (IADD + FADD),
// 1 the conversion instruction (I2FP, one issue slot), 2 half of each.
template <int BN, int CVT>
__device__ __forceinline__ void i8g_fold(float* acc, const int* d, float sc0, float sc1, int split) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const float sc = 8 * j >= split ? sc1 : sc0;
    const bool cvt = CVT == 1 || (CVT == 2 && (j & 1));
#pragma unroll
    for (int e = 0; e < 4; ++e)
      acc[4 * j + e] = fmaf(cvt ? __int2float_rn(d[4 * j + e]) : i8g_i2f(d[4 * j + e]), sc, acc[4 * j + e]);
  }
}

// Output tiles in groups of I8G_GM row tiles: inside a group the row tile
// changes fastest, so the blocks running at once share a few W column
// slices and X row slices in L2 (a 14B FFN weight is larger than L2).
#define I8G_GM 16

__device__ __forceinline__ void i8g_tile(int t, int nM, int nN, int BN, int& mt, int& n0) {
  const int grp = t / (I8G_GM * nN), first = grp * I8G_GM;
  const int gm = min(nM - first, I8G_GM), r = t - grp * I8G_GM * nN;
  mt = first + r % gm;
  n0 = (r / gm) * BN;
}

// Persistent: gridDim.x blocks (one per SM) walk the tiles t = blockIdx.x,
// + gridDim.x, ...; the ring's stage/phase counter runs on across tiles, so
// the producer loads the next tile while the consumers finish the last one
// (its epilogue stages through its own shared memory, not the ring's).
// FOLD false is a diagnostic (int32 sums of the last k block, no scales;
// wrong results): what the kernel costs without the fold's ALU work.
// MC: blocks run in clusters of 2 (adjacent row tiles, the same column
// tile) and each loads half of the shared W tile, multicast to both: a
// quarter less L2 traffic for BN = 128. A stage is then free only once the
// consumers of both blocks have released it (empty barriers count 16).
//
// Shared memory (from a 1024-byte aligned base): the ring, NS stages of X
// [128 rows][128 B] and W [BN rows][128 B]; per consumer warpgroup the
// staging of its 64×BN bf16 output, BN/64 boxes of [64 rows][128 B] in the
// 128-byte swizzle (what the copy engine reads for a tensor store); per
// consumer warpgroup its tile's BN bias values; the 2·NS mbarriers.
// tst: the bf16 output goes out by tensor stores through tmY (64×64
// boxes) instead of 16-byte stores by every thread.
//
// GQ (the FFN's first Linear, BN = 128, N % 128 == 0): instead of Y the
// epilogue emits the int8 codes of GELU(Y) for the next Int8Linear: each
// output element is rounded to bf16, biased (bf16), passed through GELU
// (tanh, rounded to bf16), exactly as Int8Linear → GELUTanh would store it;
// the 128×128 tile is then quantised as int8_quant_bf16_kernel does (amax
// over the rows < M, f = 128/amax, round-half-even, saturate), the codes go
// to Q [M, N] and amax/128 to SQ [ceil(M/128), N/128]. The two consumer
// warpgroups hold the tile's two 64-row halves and exchange their amax
// through shared memory (one buffer per tile parity).
//
// NCW: consumer warpgroups (2, or 3 for 192-row tiles: each warpgroup's 64
// rows lie in one 128-row activation-scale block, so each looks up its own
// scale row; 3 × 160 + 24 registers per thread fit the register file only
// without the pipelined second int32 set).
template <int BN, int NS, bool PIPE, bool FOLD, bool MC, int CVT, bool GQ = false, int NCW = 2>
__device__ __forceinline__ void i8g_body(const HpTmaDesc* tmA, const HpTmaDesc* tmB, const HpTmaDesc* tmY, int tst,
                                         void* Y, int ydt, const float* __restrict__ SX, const float* __restrict__ SW,
                                         const void* bias, int bdt, int M, int N, int K, signed char* Q = nullptr,
                                         float* SQ = nullptr) {
  static_assert(!GQ || (BN == 128 && FOLD && !MC && NCW == 2), "the GELU+quantise epilogue needs 128×128 tiles");
  static_assert(NCW == 2 || (NCW == 3 && !PIPE && !MC && BN == 128), "3 consumer warpgroups: 64×128 each, one int32 set");
  constexpr int BM = 64 * NCW;
  constexpr u32 AB = BM * 128, BB = BN * 128, SB = AB + BB;
  constexpr u32 STG = 64 * BN * 2;  // one warpgroup's staging bytes
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 base = HP_ALIGN_SMEM(hp_smem(smem));
  unsigned char* gbase = smem + (base - hp_smem(smem));
  const u32 bars = base + NS * SB + NCW * STG + NCW * BN * 4;  // full[s] at bars + 8s, empty[s] at bars + 8(NS+s)
  float* sred = (float*)(gbase + NS * SB + NCW * STG + NCW * BN * 4 + 16 * NS);  // GQ: [2][8] warp amax
  const int tid = threadIdx.x, wg = tid >> 7;
  const int nM = (M + BM - 1) / BM, nN = (N + BN - 1) / BN, nSB = (M + 127) / 128;
  const int KB = K / 128;
  // Work units: tiles, or with MC pairs of row tiles (rank r takes row tile
  // 2·pair + r; one past the end in an odd last pair reads zeros and stores
  // nothing).
  const int rank = MC ? (int)hp_cluster_rank() : 0;
  const int nMu = MC ? (nM + 1) / 2 : nM, units = nMu * nN;
  const int u0 = MC ? blockIdx.x / 2 : blockIdx.x, ustep = MC ? gridDim.x / 2 : gridDim.x;

  if (tid == 0) {
    for (int s = 0; s < NS; ++s) {
      hp_mbar_init(bars + 8 * s, 1);
      hp_mbar_init(bars + 8 * (NS + s), (MC ? 2 : 1) * 4 * NCW);  // lane 0 of each consumer warp (of both blocks)
    }
    hp_mbar_init_fence();
  }
  if (MC)
    hp_cluster_sync();  // the peer's barriers exist before anything arrives on them
  else
    __syncthreads();

  if (wg == NCW) {  // producer
    HP_SETMAXNREG_DEC(24);
    if (tid == 128 * NCW) {
      hp_prefetch_tma_desc(tmA);
      hp_prefetch_tma_desc(tmB);
      int it = 0;
      for (int u = u0; u < units; u += ustep) {
        int mt, n0;
        i8g_tile(u, nMu, nN, BN, mt, n0);
        if (MC) mt = 2 * mt + rank;
        for (int kb = 0; kb < KB; ++kb, ++it) {
          const int s = it % NS;
          if (it >= NS) hp_mbar_wait(bars + 8 * (NS + s), ((it / NS) & 1) ^ 1);  // consumers released it
          const u32 full = bars + 8 * s;
          hp_mbar_expect_tx(full, SB);  // A, and all of B (half of it from the peer with MC)
          hp_tma_load_2d(base + s * SB, tmA, kb * 128, mt * BM, full);
          if (MC)
            hp_tma_load_2d_multicast(base + s * SB + AB + rank * (BB / 2), tmB, kb * 128, n0 + rank * (BN / 2), full, 3);
          else
            hp_tma_load_2d(base + s * SB + AB, tmB, kb * 128, n0, full);
        }
      }
    }
  } else {  // consumers
    if (NCW == 2)
      HP_SETMAXNREG_INC(240);
    else
      HP_SETMAXNREG_INC(160);
    const int lane = tid & 31, w4 = (tid >> 5) & 3, g = lane >> 2, t4 = lane & 3;
    const u32 aoff = wg * 64 * 128;
    unsigned char* so = gbase + NS * SB + wg * STG;                   // this warpgroup's staging
    float* sbias = (float*)(gbase + NS * SB + NCW * STG) + wg * BN;  // and its tile's bias
    const bool leader = (tid & 127) == 0;                            // issues the tensor stores
    const int bc = tid & 127;  // the bias columns this thread fetches: bc, bc + 128
    // The int32 sets are zeroed once (each k block's first wgmma ignores
    // their old value); writing them per tile made ptxas serialise the
    // tile's first k block.
    int ia[BN / 2], ib[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) ia[i] = 0, ib[i] = 0;
    int it = 0, tcount = 0;
    for (int u = u0; u < units; u += ustep) {
      int mt, n0;
      i8g_tile(u, nMu, nN, BN, mt, n0);
      if (MC) mt = 2 * mt + rank;
      const float* sxr = SX + (long long)min((mt * BM + wg * 64) / 128, nSB - 1) * KB;
      const int nb = n0 / 128, nNb = (N + 127) / 128;
      const float* sw0 = SW + (long long)nb * KB;
      const bool two = BN % 128 != 0 && (n0 % 128) + BN > 128 && nb + 1 < nNb;  // tile spans two scale blocks
      const float* sw1 = two ? sw0 + KB : sw0;
      const int split = BN % 128 == 0 ? BN : 128 - n0 % 128;
      // The tile's bias, fetched now so that its latency hides behind the k
      // loop (loaded in the epilogue it stalled every tile by ~4 us).
      float bpre0 = 0.f, bpre1 = 0.f;
      if (bdt == DT_BF16) {
        if (n0 + bc < N) bpre0 = bf2f(((const bf16*)bias)[n0 + bc]);
        if (BN > 128 && bc + 128 < BN && n0 + bc + 128 < N) bpre1 = bf2f(((const bf16*)bias)[n0 + bc + 128]);
      } else if (bdt == DT_F32) {
        if (n0 + bc < N) bpre0 = ((const float*)bias)[n0 + bc];
        if (BN > 128 && bc + 128 < BN && n0 + bc + 128 < N) bpre1 = ((const float*)bias)[n0 + bc + 128];
      }
      float acc[BN / 2];
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
      auto fold_kb = [&](int* cur, int kb) {
        i8g_reg_fence<BN>(cur);
        if (lane == 0) {
          hp_mbar_arrive(bars + 8 * (NS + (it + kb) % NS));
          if (MC) hp_mbar_arrive_cluster(bars + 8 * (NS + (it + kb) % NS), rank ^ 1);
        }
        if (FOLD) {
          const float x = sxr[kb];
          i8g_fold<BN, CVT>(acc, cur, __fmul_rn(x, sw0[kb]), __fmul_rn(x, sw1[kb]), split);
        } else if (kb == KB - 1) {
#pragma unroll
          for (int i = 0; i < BN / 2; ++i) acc[i] = (float)cur[i];
        }
      };
      auto issue_kb = [&](int* d, int kb) {
        const int s = (it + kb) % NS;
        hp_mbar_wait(bars + 8 * s, ((it + kb) / NS) & 1);
        i8g_issue<BN>(d, base + s * SB + aoff, base + s * SB + AB);
      };
      if (!PIPE) {
        for (int kb = 0; kb < KB; ++kb) {
          issue_kb(ia, kb);
          hp_wg_wait<0>();
          fold_kb(ia, kb);
        }
      } else {
        // Two int32 sets: while one k block is folded, the next one runs.
        issue_kb(ia, 0);
        int kb = 0;
        for (; kb + 2 < KB; kb += 2) {
          issue_kb(ib, kb + 1);
          hp_wg_wait<1>();
          fold_kb(ia, kb);
          issue_kb(ia, kb + 2);
          hp_wg_wait<1>();
          fold_kb(ib, kb + 1);
        }
        if (kb + 1 < KB) {
          issue_kb(ib, kb + 1);
          hp_wg_wait<1>();
          fold_kb(ia, kb);
          hp_wg_wait<0>();
          fold_kb(ib, kb + 1);
        } else {
          hp_wg_wait<0>();
          fold_kb(ia, kb);
        }
      }
      it += KB;

      // Epilogue: round to the output dtype, bias in that dtype.
      const int row0 = mt * BM + wg * 64;
      if (GQ) {
        // h = bf16(bf16(acc) + bias), g = bf16(GELU(h)), as Int8Linear then
        // GELUTanh store them; amax over this thread's rows < M.
        sbias[bc] = bpre0;
        hp_bar_sync(2 + wg, 128);
        float am = 1e-8f;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = 8 * j + 2 * t4;
          const float b0 = sbias[col], b1 = sbias[col + 1];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool live = row0 + w4 * 16 + g + 8 * h < M;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float v = rbf(acc[4 * j + 2 * h + e]);
              if (bdt) v = rbf(__fadd_rn(v, e ? b1 : b0));
              v = rbf(gelu_tanh_f(v));
              acc[4 * j + 2 * h + e] = v;
              if (live) am = fmaxf(am, fabsf(v));
            }
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
        float* red = sred + (tcount & 1) * 8;
        if (lane == 0) red[wg * 4 + w4] = am;
        hp_bar_sync(1, 256);  // both warpgroups: the tile's 8 warp maxima are in
        am = red[0];
#pragma unroll
        for (int w = 1; w < 8; ++w) am = fmaxf(am, red[w]);
        const float f = 128.f / am;
        // Codes into this warpgroup's staging ([64 rows][128 B], 16-byte
        // chunks swizzled by row), then out in 16-byte rows.
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int rr = w4 * 16 + g + 8 * h;
            int c0 = __float2int_rn(acc[4 * j + 2 * h] * f), c1 = __float2int_rn(acc[4 * j + 2 * h + 1] * f);
            c0 = min(127, max(-128, c0));
            c1 = min(127, max(-128, c1));
            *(unsigned short*)(so + rr * 128 + (((j >> 1) ^ (rr & 7)) << 4) + (j & 1) * 8 + 2 * t4) =
                (unsigned short)((c0 & 0xff) | ((c1 & 0xff) << 8));
          }
        hp_bar_sync(2 + wg, 128);
        for (int c = tid & 127; c < 64 * 8; c += 128) {
          const int rr = c >> 3, ch = c & 7, gr = row0 + rr;
          if (gr < M)
            *(uint4*)(Q + (long long)gr * N + n0 + ch * 16) = *(const uint4*)(so + rr * 128 + ((ch ^ (rr & 7)) << 4));
        }
        if (tid == 0) SQ[(long long)mt * (N / 128) + n0 / 128] = am * (1.f / 128.f);
        ++tcount;
        // The staging is rewritten only after the next tile's first
        // barrier (2 + wg), which every thread reaches after these reads.
      } else if (ydt == DT_BF16 && N % 8 == 0) {
        // Nobody reads sbias or the staging after the previous tile's
        // second barrier (and the leader's wait for its tensor stores), so
        // both may be rewritten before this one.
        if (tst && leader) hp_bulk_wait_read0();
        sbias[bc] = bpre0;
        if (BN > 128 && bc + 128 < BN) sbias[bc + 128] = bpre1;
        hp_bar_sync(2 + wg, 128);
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = 8 * j + 2 * t4;
          const float b0 = sbias[col], b1 = sbias[col + 1];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int rr = w4 * 16 + g + 8 * h;
            float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
            if (bdt) v0 = __fadd_rn(rbf(v0), b0), v1 = __fadd_rn(rbf(v1), b1);
            *(u32*)(so + (j >> 3) * 8192 + rr * 128 + (((j & 7) ^ (rr & 7)) << 4) + t4 * 4) = pack_bf2(v0, v1);
          }
        }
        if (tst) hp_fence_proxy_async();  // the copy engine reads what these stores wrote
        hp_bar_sync(2 + wg, 128);
        if (tst) {
          if (leader) {
#pragma unroll
            for (int b = 0; b < BN / 64; ++b) hp_tma_store_2d(tmY, n0 + 64 * b, row0, hp_smem(so) + b * 8192);
            hp_bulk_commit();
          }
        } else {
          constexpr int CH = BN / 8;  // 16-byte chunks per row
          for (int c = tid & 127; c < 64 * CH; c += 128) {
            const int rr = c / CH, ch = c - rr * CH, gr = row0 + rr, gc = n0 + ch * 8;
            if (gr < M && gc < N)
              *(uint4*)((bf16*)Y + (long long)gr * N + gc) =
                  *(const uint4*)(so + (ch >> 3) * 8192 + rr * 128 + (((ch & 7) ^ (rr & 7)) << 4));
          }
        }
      } else {
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int gr = row0 + w4 * 16 + g + 8 * h, gc = n0 + 8 * j + 2 * t4 + e;
              if (gr >= M || gc >= N) continue;
              float v = rdt(ydt, acc[4 * j + 2 * h + e]);
              if (bdt) v = rdt(ydt, __fadd_rn(v, ldv(bias, bdt, gc)));
              stv(Y, ydt, (long long)gr * N + gc, v);
            }
      }
    }
    if (tst && leader) hp_bulk_wait0();  // the last tile's stores are out before the block ends
  }
  if (MC) {
    __syncwarp();
    hp_cluster_sync();  // no block exits while its peer may still write to it
  }
}

// i8g_body_x: i8g_body's kernel (no multicast, no diagnostic form) with the
// consumers' k blocks in one stream across tiles (see "The cross-tile
// stream" below). A function of its own, with its own copy of i8g_body's
// epilogue, so that the instances on i8g_body compile to the same machine
// code as before it (checked with TestCubinDump).
template <int BN, int NS, bool PIPE, int CVT, bool GQ = false, int NCW = 2>
__device__ __forceinline__ void i8g_body_x(const HpTmaDesc* tmA, const HpTmaDesc* tmB, const HpTmaDesc* tmY, int tst,
                                           void* Y, int ydt, const float* __restrict__ SX, const float* __restrict__ SW,
                                           const void* bias, int bdt, int M, int N, int K, signed char* Q = nullptr,
                                           float* SQ = nullptr) {
  static_assert(!GQ || (BN == 128 && NCW == 2), "the GELU+quantise epilogue needs 128×128 tiles");
  static_assert(NCW == 2 || (NCW == 3 && !PIPE && BN == 128), "3 consumer warpgroups: 64×128 each, one int32 set");
  constexpr int BM = 64 * NCW;
  constexpr u32 AB = BM * 128, BB = BN * 128, SB = AB + BB;
  constexpr u32 STG = 64 * BN * 2;  // one warpgroup's staging bytes
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 base = HP_ALIGN_SMEM(hp_smem(smem));
  unsigned char* gbase = smem + (base - hp_smem(smem));
  const u32 bars = base + NS * SB + NCW * STG + NCW * BN * 4;  // full[s] at bars + 8s, empty[s] at bars + 8(NS+s)
  float* sred = (float*)(gbase + NS * SB + NCW * STG + NCW * BN * 4 + 16 * NS);  // GQ: [2][8] warp amax
  const int tid = threadIdx.x, wg = tid >> 7;
  const int nM = (M + BM - 1) / BM, nN = (N + BN - 1) / BN, nSB = (M + 127) / 128;
  const int KB = K / 128;
  const int units = nM * nN, u0 = blockIdx.x, ustep = gridDim.x;

  if (tid == 0) {
    for (int s = 0; s < NS; ++s) {
      hp_mbar_init(bars + 8 * s, 1);
      hp_mbar_init(bars + 8 * (NS + s), 4 * NCW);  // lane 0 of each consumer warp
    }
    hp_mbar_init_fence();
  }
  __syncthreads();

  if (wg == NCW) {  // producer
    HP_SETMAXNREG_DEC(24);
    if (tid == 128 * NCW) {
      hp_prefetch_tma_desc(tmA);
      hp_prefetch_tma_desc(tmB);
      int it = 0;
      for (int u = u0; u < units; u += ustep) {
        int mt, n0;
        i8g_tile(u, nM, nN, BN, mt, n0);
        for (int kb = 0; kb < KB; ++kb, ++it) {
          const int s = it % NS;
          if (it >= NS) hp_mbar_wait(bars + 8 * (NS + s), ((it / NS) & 1) ^ 1);  // consumers released it
          const u32 full = bars + 8 * s;
          hp_mbar_expect_tx(full, SB);
          hp_tma_load_2d(base + s * SB, tmA, kb * 128, mt * BM, full);
          hp_tma_load_2d(base + s * SB + AB, tmB, kb * 128, n0, full);
        }
      }
    }
  } else {  // consumers
    if (NCW == 2)
      HP_SETMAXNREG_INC(240);
    else
      HP_SETMAXNREG_INC(160);
    const int lane = tid & 31, w4 = (tid >> 5) & 3, g = lane >> 2, t4 = lane & 3;
    const u32 aoff = wg * 64 * 128;
    unsigned char* so = gbase + NS * SB + wg * STG;                   // this warpgroup's staging
    float* sbias = (float*)(gbase + NS * SB + NCW * STG) + wg * BN;  // and its tile's bias
    const bool leader = (tid & 127) == 0;                            // issues the tensor stores
    const int bc = tid & 127;  // the bias columns this thread fetches: bc, bc + 128
    // The int32 sets are zeroed once (each k block's first wgmma ignores
    // their old value); writing them per tile made ptxas serialise the
    // tile's first k block.
    int ia[BN / 2], ib[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) ia[i] = 0, ib[i] = 0;
    int tcount = 0;
    float acc[BN / 2];
    const int nNb = (N + 127) / 128;
    // A tile's scale rows: this warpgroup's activation-scale row, the weight-
    // scale row(s) of its columns (sw1 the second block where a tile spans
    // two; split the first column that uses it, BN when none does).
    auto tile_scales = [&](int mt, int n0, const float*& sxr, const float*& sw0, const float*& sw1, int& split) {
      sxr = SX + (long long)min((mt * BM + wg * 64) / 128, nSB - 1) * KB;
      const int nb = n0 / 128;
      sw0 = SW + (long long)nb * KB;
      const bool two = BN % 128 != 0 && (n0 % 128) + BN > 128 && nb + 1 < nNb;  // tile spans two scale blocks
      sw1 = two ? sw0 + KB : sw0;
      split = BN % 128 == 0 ? BN : 128 - n0 % 128;
    };
    // The tile's bias, fetched at tile start so that its latency hides
    // behind the k loop (loaded in the epilogue it stalled every tile by
    // ~4 us).
    auto fetch_bias = [&](int n0, float& bpre0, float& bpre1) {
      bpre0 = 0.f, bpre1 = 0.f;
      if (bdt == DT_BF16) {
        if (n0 + bc < N) bpre0 = bf2f(((const bf16*)bias)[n0 + bc]);
        if (BN > 128 && bc + 128 < BN && n0 + bc + 128 < N) bpre1 = bf2f(((const bf16*)bias)[n0 + bc + 128]);
      } else if (bdt == DT_F32) {
        if (n0 + bc < N) bpre0 = ((const float*)bias)[n0 + bc];
        if (BN > 128 && bc + 128 < BN && n0 + bc + 128 < N) bpre1 = ((const float*)bias)[n0 + bc + 128];
      }
    };
    // Epilogue of the tile (mt, n0) from acc: round to the output dtype,
    // bias in that dtype.
    auto epilogue = [&](int mt, int n0, float bpre0, float bpre1) {
      const int row0 = mt * BM + wg * 64;
      if (GQ) {
        // h = bf16(bf16(acc) + bias), g = bf16(GELU(h)), as Int8Linear then
        // GELUTanh store them; amax over this thread's rows < M.
        sbias[bc] = bpre0;
        hp_bar_sync(2 + wg, 128);
        float am = 1e-8f;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = 8 * j + 2 * t4;
          const float b0 = sbias[col], b1 = sbias[col + 1];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool live = row0 + w4 * 16 + g + 8 * h < M;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float v = rbf(acc[4 * j + 2 * h + e]);
              if (bdt) v = rbf(__fadd_rn(v, e ? b1 : b0));
              v = rbf(gelu_tanh_f(v));
              acc[4 * j + 2 * h + e] = v;
              if (live) am = fmaxf(am, fabsf(v));
            }
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
        float* red = sred + (tcount & 1) * 8;
        if (lane == 0) red[wg * 4 + w4] = am;
        hp_bar_sync(1, 256);  // both warpgroups: the tile's 8 warp maxima are in
        am = red[0];
#pragma unroll
        for (int w = 1; w < 8; ++w) am = fmaxf(am, red[w]);
        const float f = 128.f / am;
        // Codes into this warpgroup's staging ([64 rows][128 B], 16-byte
        // chunks swizzled by row), then out in 16-byte rows.
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int rr = w4 * 16 + g + 8 * h;
            int c0 = __float2int_rn(acc[4 * j + 2 * h] * f), c1 = __float2int_rn(acc[4 * j + 2 * h + 1] * f);
            c0 = min(127, max(-128, c0));
            c1 = min(127, max(-128, c1));
            *(unsigned short*)(so + rr * 128 + (((j >> 1) ^ (rr & 7)) << 4) + (j & 1) * 8 + 2 * t4) =
                (unsigned short)((c0 & 0xff) | ((c1 & 0xff) << 8));
          }
        hp_bar_sync(2 + wg, 128);
        for (int c = tid & 127; c < 64 * 8; c += 128) {
          const int rr = c >> 3, ch = c & 7, gr = row0 + rr;
          if (gr < M)
            *(uint4*)(Q + (long long)gr * N + n0 + ch * 16) = *(const uint4*)(so + rr * 128 + ((ch ^ (rr & 7)) << 4));
        }
        if (tid == 0) SQ[(long long)mt * (N / 128) + n0 / 128] = am * (1.f / 128.f);
        ++tcount;
        // The staging is rewritten only after the next tile's first
        // barrier (2 + wg), which every thread reaches after these reads.
      } else if (ydt == DT_BF16 && N % 8 == 0) {
        // Nobody reads sbias or the staging after the previous tile's
        // second barrier (and the leader's wait for its tensor stores), so
        // both may be rewritten before this one.
        if (tst && leader) hp_bulk_wait_read0();
        sbias[bc] = bpre0;
        if (BN > 128 && bc + 128 < BN) sbias[bc + 128] = bpre1;
        hp_bar_sync(2 + wg, 128);
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = 8 * j + 2 * t4;
          const float b0 = sbias[col], b1 = sbias[col + 1];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int rr = w4 * 16 + g + 8 * h;
            float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
            if (bdt) v0 = __fadd_rn(rbf(v0), b0), v1 = __fadd_rn(rbf(v1), b1);
            *(u32*)(so + (j >> 3) * 8192 + rr * 128 + (((j & 7) ^ (rr & 7)) << 4) + t4 * 4) = pack_bf2(v0, v1);
          }
        }
        if (tst) hp_fence_proxy_async();  // the copy engine reads what these stores wrote
        hp_bar_sync(2 + wg, 128);
        if (tst) {
          if (leader) {
#pragma unroll
            for (int b = 0; b < BN / 64; ++b) hp_tma_store_2d(tmY, n0 + 64 * b, row0, hp_smem(so) + b * 8192);
            hp_bulk_commit();
          }
        } else {
          constexpr int CH = BN / 8;  // 16-byte chunks per row
          for (int c = tid & 127; c < 64 * CH; c += 128) {
            const int rr = c / CH, ch = c - rr * CH, gr = row0 + rr, gc = n0 + ch * 8;
            if (gr < M && gc < N)
              *(uint4*)((bf16*)Y + (long long)gr * N + gc) =
                  *(const uint4*)(so + (ch >> 3) * 8192 + rr * 128 + (((ch & 7) ^ (rr & 7)) << 4));
          }
        }
      } else {
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int gr = row0 + w4 * 16 + g + 8 * h, gc = n0 + 8 * j + 2 * t4 + e;
              if (gr >= M || gc >= N) continue;
              float v = rdt(ydt, acc[4 * j + 2 * h + e]);
              if (bdt) v = rdt(ydt, __fadd_rn(v, ldv(bias, bdt, gc)));
              stv(Y, ydt, (long long)gr * N + gc, v);
            }
      }
    };
    // Waits for k block g's stage and issues its wgmmas into d.
    auto issue_g = [&](int* d, int q) {
      const int s = q % NS;
      hp_mbar_wait(bars + 8 * s, (q / NS) & 1);
      i8g_issue<BN>(d, base + s * SB + aoff, base + s * SB + AB);
    };
    // After the wait for k block g's wgmmas: keeps the compiler from
    // reading cur earlier, and releases g's stage to the producer.
    auto release_g = [&](int* cur, int q) {
      i8g_reg_fence<BN>(cur);
      if (lane == 0) {
        hp_mbar_arrive(bars + 8 * (NS + q % NS));
      }
    };

    // The cross-tile stream (XT): one stream of k blocks over all of this
    // block's tiles (gk counts them, kb within the tile), so the wgmmas
    // that run while a tile's last k block is folded and its epilogue
    // runs are the next tile's first ones, not none: with two int32 sets
    // (even gk in ia, odd gk in ib, whatever the tile) the next k block
    // is in flight during every fold and every epilogue; with one set
    // (three consumer warpgroups) the next k block is issued before the
    // epilogue. The scales of the next fold are loaded one fold ahead
    // (the next tile's first ones during this tile's last fold), so no
    // fold waits on an L2 round trip. The fold itself is unchanged: acc
    // starts at 0 and takes fma(float(S), sx·sw, acc) in ascending
    // k-block order. Structure that ptxas needs to keep the wgmmas
    // asynchronous (C7514 otherwise; found by trying): at most one group
    // in flight across the loop's back edge, and the last one or two k
    // blocks in an if/else (an unconditional tail, or two groups carried
    // around the loop, made it serialise them).
    {
      constexpr int SETS = PIPE ? 2 : 1;
      const int ntile = u0 < units ? (units - 1 - u0) / ustep + 1 : 0;
      const int total = ntile * KB;
      int u = u0, mt = 0, n0 = 0, split = BN, kb = 0, gk = 0;
      const float *sxr = SX, *sw0 = SW, *sw1 = SW;
      float bpre0 = 0.f, bpre1 = 0.f, cx = 0.f, cw0 = 0.f, cw1 = 0.f;
      auto set_tile = [&]() {
        i8g_tile(u, nM, nN, BN, mt, n0);
        tile_scales(mt, n0, sxr, sw0, sw1, split);
      };
      // Folds k block gk from cur (its wgmmas complete) and loads the
      // scales of gk + 1.
      auto fold_g = [&](int* cur) {
        release_g(cur, gk);
        const float sc0 = __fmul_rn(cx, cw0), sc1 = __fmul_rn(cx, cw1);
        if (kb + 1 < KB) {
          cx = sxr[kb + 1], cw0 = sw0[kb + 1], cw1 = BN % 128 == 0 ? cw0 : sw1[kb + 1];
        } else if (gk + 1 < total) {
          int mt2, n02, split2;
          const float *sxr2, *sw02, *sw12;
          i8g_tile(u + ustep, nM, nN, BN, mt2, n02);
          tile_scales(mt2, n02, sxr2, sw02, sw12, split2);
          cx = sxr2[0], cw0 = sw02[0], cw1 = BN % 128 == 0 ? cw0 : sw12[0];
        }
        if (kb == 0) {
#pragma unroll
          for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
        }
        i8g_fold<BN, CVT>(acc, cur, sc0, sc1, split);
      };
      // After a fold (and the next issue): a tile's last k block ends with
      // its epilogue, then the next tile.
      auto next_kb = [&]() {
        if (++kb == KB) {
          epilogue(mt, n0, bpre0, bpre1);
          kb = 0;
          u += ustep;
          if (gk + 1 < total) {
            set_tile();
            fetch_bias(n0, bpre0, bpre1);
          }
        }
        ++gk;
      };
      if (total > 0) {
        set_tile();
        fetch_bias(n0, bpre0, bpre1);
        cx = sxr[0], cw0 = sw0[0], cw1 = BN % 128 == 0 ? cw0 : sw1[0];
        issue_g(ia, 0);
        if (SETS == 2) {
          for (; gk + 2 < total;) {
            issue_g(ib, gk + 1);
            hp_wg_wait<1>();
            fold_g(ia);
            next_kb();
            issue_g(ia, gk + 1);
            hp_wg_wait<1>();
            fold_g(ib);
            next_kb();
          }
          if (gk + 1 < total) {  // the last two
            issue_g(ib, gk + 1);
            hp_wg_wait<1>();
            fold_g(ia);
            next_kb();
            hp_wg_wait<0>();
            fold_g(ib);
            next_kb();
          } else {  // the last one
            hp_wg_wait<0>();
            fold_g(ia);
            next_kb();
          }
        } else {
          for (; gk + 1 < total;) {
            hp_wg_wait<0>();
            fold_g(ia);
            issue_g(ia, gk + 1);
            next_kb();
          }
          hp_wg_wait<0>();
          fold_g(ia);
          next_kb();
        }
      }
    }
    if (tst && leader) hp_bulk_wait0();  // the last tile's stores are out before the block ends
  }
}


// Instances: int8_gemm_tma_n<BN>[p][_mc][_i2f|_mix][_nofold] (p:
// pipelined; mc: clusters of 2 sharing W by multicast, a grid of whole
// clusters and a W tensor map whose box is BN/2 rows; i2f/mix: the fold's
// conversion, CVT 1/2), 384 threads, a persistent grid of at most one block
// per SM, dynamic shared memory NS·(128 + BN)·128 (the ring) + 2·64·BN·2
// (the epilogue staging) + 2·BN·4 (the bias) + 16·NS (the barriers) + 1024
// (alignment); ops_int8.go computes the same from the NS values here. tmY
// (bf16 Y [M, N], 64×64 boxes, 128-byte swizzle) is read only when tst is
// set, which needs bf16 output with N % 8 == 0.
#define I8G_KERNEL(NAME, BN, NS, PIPE, FOLD, CVT)                                                                    \
  extern "C" __global__ void __launch_bounds__(384, 1)                                                               \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB,                             \
           const __grid_constant__ HpTmaDesc tmY, int tst, void* Y, int ydt, const float* SX, const float* SW,      \
           const void* bias, int bdt, int M, int N, int K) {                                                        \
    i8g_body<BN, NS, PIPE, FOLD, false, CVT>(&tmA, &tmB, &tmY, tst, Y, ydt, SX, SW, bias, bdt, M, N, K);             \
  }
#define I8G_KERNEL_MC(NAME, BN, NS, PIPE, CVT)                                                                       \
  extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(384, 1)                                     \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB,                             \
           const __grid_constant__ HpTmaDesc tmY, int tst, void* Y, int ydt, const float* SX, const float* SW,      \
           const void* bias, int bdt, int M, int N, int K) {                                                        \
    i8g_body<BN, NS, PIPE, true, true, CVT>(&tmA, &tmB, &tmY, tst, Y, ydt, SX, SW, bias, bdt, M, N, K);              \
  }
// 192×128 tiles on three consumer warpgroups (NCW = 3, not pipelined):
// 512 threads, the A tensor map's box 192 rows.
#define I8G_KERNEL_W3(NAME, NS, CVT)                                                                                 \
  extern "C" __global__ void __launch_bounds__(512, 1)                                                               \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB,                             \
           const __grid_constant__ HpTmaDesc tmY, int tst, void* Y, int ydt, const float* SX, const float* SW,      \
           const void* bias, int bdt, int M, int N, int K) {                                                        \
    i8g_body<128, NS, false, true, false, CVT, false, 3>(&tmA, &tmB, &tmY, tst, Y, ydt, SX, SW, bias, bdt, M, N, K); \
  }
// The GELU+quantise instance (GQ, see i8g_body): codes Q [M, N] int8 and
// scales SQ [ceil(M/128), N/128] instead of Y; N % 128 == 0. Shared memory
// as the other instances plus 64 bytes for the amax exchange.
#define I8G_KERNEL_GQ(NAME, NS)                                                                                      \
  extern "C" __global__ void __launch_bounds__(384, 1)                                                               \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB, signed char* Q, float* SQ,  \
           const float* SX, const float* SW, const void* bias, int bdt, int M, int N, int K) {                      \
    i8g_body<128, NS, true, true, false, 1, true>(&tmA, &tmB, nullptr, 0, nullptr, 0, SX, SW, bias, bdt, M, N, K, Q, \
                                                  SQ);                                                               \
  }
// Measured on an H100 (docs/PERF.md, "Int8 GEMM, session 2"): n128p_i2f
// is the fastest or within 4% of it on every Wan shape and is the default;
// n128p (magic-number conversion) and n192_i2f are kept for comparison;
// the mc instances ran at about half the speed of the others (cause not
// found), n192_mc is kept so that the multicast path stays compiled and
// tested. Other combinations (n128, n192, _mix, the _nofold diagnostic)
// were measured at commit bbb4364 and dropped to keep the module's
// compile time down.
I8G_KERNEL(int8_gemm_tma_n128p_i2f, 128, 6, true, true, 1)
I8G_KERNEL(int8_gemm_tma_n128p, 128, 6, true, true, 0)
I8G_KERNEL(int8_gemm_tma_n192_i2f, 192, 4, false, true, 1)
I8G_KERNEL_MC(int8_gemm_tma_n192_mc, 192, 4, false, 0)
I8G_KERNEL_GQ(int8_gemm_tma_n128p_i2f_gq, 6)
I8G_KERNEL_W3(int8_gemm_tma_n128w3_i2f, 4, 1)
// The cross-tile instances (i8g_body_x): x after the pipelining letter;
// the same arguments and shared memory as the instance without it.
#define I8G_KERNEL_X(NAME, BN, NS, PIPE, CVT)                                                                        \
  extern "C" __global__ void __launch_bounds__(384, 1)                                                               \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB,                             \
           const __grid_constant__ HpTmaDesc tmY, int tst, void* Y, int ydt, const float* SX, const float* SW,      \
           const void* bias, int bdt, int M, int N, int K) {                                                        \
    i8g_body_x<BN, NS, PIPE, CVT>(&tmA, &tmB, &tmY, tst, Y, ydt, SX, SW, bias, bdt, M, N, K);                        \
  }
#define I8G_KERNEL_W3X(NAME, NS, CVT)                                                                                \
  extern "C" __global__ void __launch_bounds__(512, 1)                                                               \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB,                             \
           const __grid_constant__ HpTmaDesc tmY, int tst, void* Y, int ydt, const float* SX, const float* SW,      \
           const void* bias, int bdt, int M, int N, int K) {                                                        \
    i8g_body_x<128, NS, false, CVT, false, 3>(&tmA, &tmB, &tmY, tst, Y, ydt, SX, SW, bias, bdt, M, N, K);            \
  }
#define I8G_KERNEL_GQX(NAME, NS)                                                                                     \
  extern "C" __global__ void __launch_bounds__(384, 1)                                                               \
      NAME(const __grid_constant__ HpTmaDesc tmA, const __grid_constant__ HpTmaDesc tmB, signed char* Q, float* SQ,  \
           const float* SX, const float* SW, const void* bias, int bdt, int M, int N, int K) {                      \
    i8g_body_x<128, NS, true, 1, true>(&tmA, &tmB, nullptr, 0, nullptr, 0, SX, SW, bias, bdt, M, N, K, Q, SQ);       \
  }
// Built without a device (docs/PERF.md, "W8A8, session 5"): not measured
// yet, so not the default.
I8G_KERNEL_X(int8_gemm_tma_n128px_i2f, 128, 6, true, 1)
I8G_KERNEL_W3X(int8_gemm_tma_n128w3x_i2f, 4, 1)
I8G_KERNEL_GQX(int8_gemm_tma_n128px_i2f_gq, 6)
