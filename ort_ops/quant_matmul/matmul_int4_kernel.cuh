// MatmulInt4 (W4A16) CUDA kernels: INT4 weights dequantised in registers straight into the B
// fragments of mma.sync m16n8k16 (f32 accumulation); the weights are never expanded in memory.
//
// Fragment mapping (shared by both kernels). The order of K inside one mma is free as long as A
// and B agree, so each lane reads whole 16-byte words of its weight column:
//   lane = 4 g + t. In a K chunk of 128, lane (g, t) owns column n0 + g and the 32 consecutive
//   k in [128 j + 32 t, +32): one uint4 (4 words) of B_packed, one scale (a group spans >= 32 k,
//   32-aligned), and the same 32 k of A rows g and g + 8 (four 16-byte loads per row).
//   Word i of the uint4 (k 8i..8i+7) feeds two mma steps: step 2i uses nibbles 0-3, step 2i+1
//   nibbles 4-7. Within a step, mma's k = {2t, 2t+1} is physical k + {0, 1} and {2t+8, 2t+9} is
//   physical k + {2, 3}, so A's fragment registers are the 32-bit halves of the row's uint4:
//   step 2i: {row g .x, row g+8 .x, row g .y, row g+8 .y}; step 2i+1: the .z / .w halves.
// Dequantisation of a nibble pair (n_2p, n_2p+1) of word w: one PRMT picks byte p of w and of
// w >> 4 into the low bytes of the two halves, one LOP3 masks the nibbles and XORs in the magic
// exponent (f16 0x6400 = 1024, bf16 0x4300 = 128) together with 8 (signed -> unsigned), which
// makes the halves exactly 1032 + q (f16) / 136 + q (bf16); one HSUB2 gives q exactly, then
// (q - zp) * scale in the input type (HSUB2 + HMUL2).
//
// Split decode regime (M <= 16, any N): MatmulInt4SplitDecodeKernel below (weights streamed into
// registers as mma's A operand, K split over a cluster's CTAs on sm_90). KAIO_INT4_DECODE=0 selects
// the older kernels that follow for A/B runs: MatmulInt4DecodeKernel (N % 8 == 0, coalesced
// cp.async ring in shared memory; the launcher holds its measurements) and the GEMVs.
//
// FMA GEMV regime (M = 1 where the decode kernel does not apply): MatmulInt4GemvFmaKernel below.
//
// GEMV regime (M <= 16 where neither applies): one m16 tile, rows >= M zero (M <= 8 loads only rows 0-7). A block of
// 8 warps owns 16 columns (2 n8 tiles per warp) and splits K between its warps (chunk j goes to
// warp j % 8); each lane keeps 4 chunks x 2 columns of 16-byte weight loads in flight, loaded
// with ld.global.nc.L1::no_allocate. A (at most 16 x K, shared by all blocks) is read through
// L1/L2. The 8 partial sums are reduced in shared memory: no atomics, no workspace, one launch.
//
// GEMM regime (M > 16): block = 4 warps side by side along N (each 8 * NT columns) x 64 rows;
// the 64 x 128 A chunk goes through shared memory (cp.async, two stages, XOR-swizzled 16-byte
// units so the fragment loads are conflict-free); each warp loads its weight words for chunk
// j + 1 into registers while it computes chunk j, and dequantises each word once for its 4 m16
// tiles.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "common/elem.cuh"
#include "quant_matmul/quant_kernel_common.cuh"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
namespace int4mm {

constexpr int kChunk = 128;  // K per chunk: 4 lanes x 32

template <typename T>
struct Magic;
template <>
struct Magic<__half> {
  static constexpr uint32_t kBias = 0x64086408u;  // 1032 in both halves (1024 + 8)
};
template <>
struct Magic<__nv_bfloat16> {
  static constexpr uint32_t kBias = 0x43084308u;  // 136 in both halves (128 + 8)
};

// Weight pair (n_2p, n_2p+1) of word w (w4 = w >> 4) as two T in one register:
// (q - zp) * s, s2 / z2 the group's scale / zero point in both halves.
template <typename T, bool kZp, int P>
__device__ __forceinline__ uint32_t DequantPair(uint32_t w, uint32_t w4, uint32_t s2, uint32_t z2) {
  const uint32_t t = __byte_perm(w, w4, (P) | ((4 + P) << 8));
  const uint32_t v = AndXor(t, 0x000F000Fu, Magic<T>::kBias);
  uint32_t q = Sub2<T>(v, Magic<T>::kBias);  // exact: the integer code q in [-8, 7]
  if constexpr (kZp) q = Sub2<T>(q, z2);
  return Mul2<T>(q, s2);
}

// The 8 codes of word w as exact integers in T, paired (k, k + 4): q[p] = (code p, code p + 4).
// Pairing a nibble with the one 16 bits above it needs no byte permute: one LOP3 per register
// masks both and ORs in the magic exponent (+ 8, signed -> unsigned). f16 reads nibbles p = 1, 3
// in place (bits 4-7 of each half: 1024 + 16 (q + 8)) and one HFMA2 by 1/16 takes them back to q,
// so a word costs 1 shift, 4 LOP3 and 4 HADD2 / HFMA2. bf16's mantissa holds only 7 bits, so it
// shifts every nibble down. The activations are paired the same way (PairActivations).
template <typename T>
__device__ __forceinline__ void DequantCodes(uint32_t w, uint32_t* q) {
  if constexpr (std::is_same<T, __half>::value) {
    constexpr uint32_t kLo = 0x64086408u, kHi = 0x64806480u;  // 1032 | 1024 + 128 (bits 4-7 ^ 8)
    const uint32_t w8 = w >> 8;
    const __half2 sixteenth = AsPair<T>(0x2C002C00u), minus72 = AsPair<T>(0xD480D480u);  // 1/16, -72
    q[0] = Sub2<T>(AndXor(w, 0x000F000Fu, kLo), kLo);
    q[1] = Bits<T>(__hfma2(AsPair<T>(AndXor(w, 0x00F000F0u, kHi)), sixteenth, minus72));  // (1152 + 16 q) / 16 - 72
    q[2] = Sub2<T>(AndXor(w8, 0x000F000Fu, kLo), kLo);
    q[3] = Bits<T>(__hfma2(AsPair<T>(AndXor(w8, 0x00F000F0u, kHi)), sixteenth, minus72));
  } else {
    constexpr uint32_t kB = Magic<T>::kBias;
#pragma unroll
    for (int p = 0; p < 4; ++p) q[p] = Sub2<T>(AndXor(w >> (4 * p), 0x000F000Fu, kB), kB);
  }
}

// (q - zp) * scale on the 4 code pairs of a word, in T (one rounding each): MatmulInt4's rounding
// chain, shared by the kernels that dequantise before the mma / FMA.
template <typename T, bool kZp>
__device__ __forceinline__ void ScaleCodes(uint32_t* q, uint32_t s2, uint32_t z2) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (kZp) q[i] = Sub2<T>(q[i], z2);
    q[i] = Mul2<T>(q[i], s2);
  }
}

// A's 8 values of one word's k (a uint4: pairs (0,1) (2,3) (4,5) (6,7)) paired as DequantCodes
// pairs the codes: b[p] = (a_p, a_p+4).
__device__ __forceinline__ void PairActivations(const uint4& v, uint32_t* b) {
  b[0] = __byte_perm(v.x, v.z, 0x5410);
  b[1] = __byte_perm(v.x, v.z, 0x7632);
  b[2] = __byte_perm(v.y, v.w, 0x5410);
  b[3] = __byte_perm(v.y, v.w, 0x7632);
}

// The 4 B-fragment registers of word w: {b0, b1} for step 2i, {b2, b3} for step 2i+1.
template <typename T, bool kZp>
__device__ __forceinline__ void DequantWord(uint32_t w, uint32_t s2, uint32_t z2, uint32_t* b) {
  const uint32_t w4 = w >> 4;
  b[0] = DequantPair<T, kZp, 0>(w, w4, s2, z2);
  b[1] = DequantPair<T, kZp, 1>(w, w4, s2, z2);
  b[2] = DequantPair<T, kZp, 2>(w, w4, s2, z2);
  b[3] = DequantPair<T, kZp, 3>(w, w4, s2, z2);
}

// Each token's sum of A over the 128 k that PairActivations' fragments `ap` hold, added to asum in
// the mma's C layout (ones x A on the tensor cores): the zero points' term when the scales and zero
// points are applied to the f32 sums (kPost).
template <typename T, int NT8>
__device__ __forceinline__ void TokenSums(const uint32_t (&ap)[NT8][4][4], float (&asum)[NT8][4]) {
  constexpr uint32_t kOne2 = std::is_same<T, __half>::value ? 0x3C003C00u : 0x3F803F80u;
#pragma unroll
  for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      Mma<T>(asum[nt], kOne2, kOne2, kOne2, kOne2, ap[nt][i][0], ap[nt][i][2]);
      Mma<T>(asum[nt], kOne2, kOne2, kOne2, kOne2, ap[nt][i][1], ap[nt][i][3]);
    }
}

// The same, as volatile asm: keeps the GEMM kernel's schedule (and register use) in source order.
template <typename T>
__device__ __forceinline__ void MmaOrdered(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

using Int4Batch = SegmentBatch<MatmulInt4Params>;

// Y[row, col] = v (+ bias[col]), rounded once to Y's type.
template <typename T>
__device__ __forceinline__ void StoreOut(const MatmulInt4Params& p, int64_t row, int64_t col, float v) {
  if (p.bias) v += ToFloat<T>(__ldg(static_cast<const unsigned short*>(p.bias) + col));
  StoreElem<T>(p.y, row * p.n + col, v, p.out_f32);
}

// Weight words, scale and zero point of one lane for chunk j and its column (zeros when out of range).
template <bool kZp>
__device__ __forceinline__ void LoadWeights(const MatmulInt4Params& p, int64_t col, int64_t kk, uint4* w,
                                            uint32_t* s2, uint32_t* z2) {
  if (col < p.n && kk < p.k) {
    *w = LoadStream(p.b + col * (p.k >> 3) + (kk >> 3));
    const int64_t gi = int64_t(uint32_t(kk) >> (__ffs(p.group_size) - 1)) * p.n + col;  // group_size: 2^i
    *s2 = Bcast(__ldg(static_cast<const unsigned short*>(p.scales) + gi));
    if constexpr (kZp) *z2 = Bcast(__ldg(static_cast<const unsigned short*>(p.zero_points) + gi));
  } else {
    *w = make_uint4(0, 0, 0, 0);
    *s2 = 0;
    if constexpr (kZp) *z2 = 0;
  }
}

// ---------------------------------------------------------------- GEMV regime, M <= 16
constexpr int kGemvWarps = 8, kGemvNT = 2, kGemvU = 4;
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int kGemvCols = 8 * kGemvNT;

template <typename T, bool kRows16, bool kZp>
__global__ void __launch_bounds__(kGemvThreads) MatmulInt4GemvKernel(Int4Batch bt) {
  int64_t blk;
  const MatmulInt4Params p = SegmentOf(bt, &blk);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t n0 = blk * kGemvCols;
  const int64_t chunks = (p.k + kChunk - 1) / kChunk;
  const T* a = static_cast<const T*>(p.a);
  const bool row0_ok = g < p.m, row1_ok = kRows16 && g + 8 < p.m;
  const T* arow0 = a + (row0_ok ? g : 0) * p.k;
  const T* arow1 = a + (row1_ok ? g + 8 : 0) * p.k;
  float acc[kGemvNT][4] = {};

  for (int64_t j0 = warp; j0 < chunks; j0 += kGemvWarps * kGemvU) {
    uint4 wv[kGemvU][kGemvNT];
    uint32_t s2[kGemvU][kGemvNT], z2[kGemvU][kGemvNT];
#pragma unroll
    for (int u = 0; u < kGemvU; ++u) {
      const int64_t kk = (j0 + u * kGemvWarps) * kChunk + 32 * t;
#pragma unroll
      for (int nt = 0; nt < kGemvNT; ++nt)
        LoadWeights<kZp>(p, n0 + nt * 8 + g, kk, &wv[u][nt], &s2[u][nt], &z2[u][nt]);
    }
    // A rows g (and g + 8) of chunk u + 1 are loaded while chunk u is computed.
    auto load_a = [&](int u, uint4* a0, uint4* a1) {
      const int64_t kk = (j0 + u * kGemvWarps) * kChunk + 32 * t;
      const bool k_ok = kk < p.k;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a0[i] = row0_ok && k_ok ? __ldg(reinterpret_cast<const uint4*>(arow0 + kk) + i) : make_uint4(0, 0, 0, 0);
        if constexpr (kRows16)
          a1[i] = row1_ok && k_ok ? __ldg(reinterpret_cast<const uint4*>(arow1 + kk) + i) : make_uint4(0, 0, 0, 0);
        else
          a1[i] = make_uint4(0, 0, 0, 0);
      }
    };
    uint4 a0[4], a1[4], n0a[4], n1a[4];
    load_a(0, a0, a1);
#pragma unroll
    for (int u = 0; u < kGemvU; ++u) {
      if (u + 1 < kGemvU) load_a(u + 1, n0a, n1a);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int nt = 0; nt < kGemvNT; ++nt) {
          uint32_t b[4];
          DequantWord<T, kZp>(Comp(wv[u][nt], i), s2[u][nt], z2[u][nt], b);
          Mma<T>(acc[nt], a0[i].x, a1[i].x, a0[i].y, a1[i].y, b[0], b[1]);
          Mma<T>(acc[nt], a0[i].z, a1[i].z, a0[i].w, a1[i].w, b[2], b[3]);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a0[i] = n0a[i];
        a1[i] = n1a[i];
      }
    }
  }

  __shared__ float red[kGemvWarps][kGemvNT][4][32];
#pragma unroll
  for (int nt = 0; nt < kGemvNT; ++nt)
#pragma unroll
    for (int r = 0; r < 4; ++r) red[warp][nt][r][lane] = acc[nt][r];
  __syncthreads();
  static_assert(kGemvNT * 4 * 32 == kGemvThreads, "one output fragment element per thread");
  const int nt = threadIdx.x >> 7, r = (threadIdx.x >> 5) & 3, ln = threadIdx.x & 31;
  float sum = 0.f;
#pragma unroll
  for (int w = 0; w < kGemvWarps; ++w) sum += red[w][nt][r][ln];
  const int64_t row = (ln >> 2) + 8 * (r >> 1), col = n0 + nt * 8 + 2 * (ln & 3) + (r & 1);
  if (row < p.m && col < p.n) StoreOut<T>(p, row, col, sum);
}

// ---------------------------------------------------------------- FMA GEMV regime, M = 1
// One warp streams one weight column at a time: lane l reads 16-byte pieces l, l + 32, ... of the
// column (piece pc = 32 consecutive k, inside one group), so one warp load is 512 contiguous bytes.
// Warp gw of GW handles columns gw, gw + GW, ...; its (column, load) pairs run as one flat
// sequence in batches of U loads per lane, the next batch in flight while one is computed.
// (The kernel takes MR <= 4 rows, but measured only M = 1 beats the mma GEMV: see the launcher.)
// A (MR rows, all of K) is staged once per block in shared memory as float, piece-major:
// piece pc at byte pc * (128 MR + 16) (the 16-byte pad makes the LDS.128 of 8 lanes reading
// consecutive pieces conflict-free), row r at + 128 r, in the order the dequantisation yields
// the weights. Its loads go out before the first weight loads (L2 hits, not queued behind them).
// f16 dequantisation of a word (8 nibbles): DequantCodes (pairs (k, k + 4)); bf16 uses DequantPair
// (natural order).
// Then (q - zp) and * scale in A's type (HSUB2, HMUL2: the same rounding chain as the mma kernels),
// conversion to f32 and FFMA against A (f32 accumulation); one warp-shuffle reduction per column.
// Measured on H100 (M = 1, cold weights): 4 blocks of 8 warps per SM with 2 loads a batch (2 batches
// in flight) beat 2 blocks with 4 (14336 x 4096: 19.2 vs 21.4 us; 4096 x 4096: 7.9 vs 8.4 us).
constexpr int kFmaWarps = 8, kFmaThreads = kFmaWarps * 32, kFmaU = 2, kFmaStageLoads = 4;
constexpr int kFmaBlocksPerSm = 4;

template <int MR>
constexpr int FmaPieceBytes() { return 128 * MR + 16; }

// The 8 weights of word w as 4 pairs in A's type: f16 order (0,4) (1,5) (2,6) (3,7), bf16 natural.
template <typename T, bool kZp>
__device__ __forceinline__ void DequantWord8(uint32_t w, uint32_t s2, uint32_t z2, uint32_t* q) {
  if constexpr (std::is_same<T, __half>::value) {
    DequantCodes<T>(w, q);  // the codes, paired (k, k + 4)
    ScaleCodes<T, kZp>(q, s2, z2);
  } else {
    const uint32_t w4 = w >> 4;
    q[0] = DequantPair<T, kZp, 0>(w, w4, s2, z2);
    q[1] = DequantPair<T, kZp, 1>(w, w4, s2, z2);
    q[2] = DequantPair<T, kZp, 2>(w, w4, s2, z2);
    q[3] = DequantPair<T, kZp, 3>(w, w4, s2, z2);
  }
}

// Position (0..7) in shared memory of k offset e (0..7) inside its word.
template <typename T>
__device__ __forceinline__ int StagePos(int e) {
  if constexpr (std::is_same<T, __half>::value) return ((e & 3) << 1) | (e >> 2);  // 0 4 1 5 2 6 3 7
  return e;
}

// Writes the 8 k of A's 16-byte unit v (row r, word e of the row) into the staged layout.
template <typename T, int MR>
__device__ __forceinline__ void StageA(char* as, int r, int e, const uint4& v) {
  float f[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = ToFloat2<T>(Comp(v, i));
    f[StagePos<T>(2 * i)] = x.x;
    f[StagePos<T>(2 * i + 1)] = x.y;
  }
  float4* dst = reinterpret_cast<float4*>(as + (e >> 2) * FmaPieceBytes<MR>() + r * 128 + (e & 3) * 32);
  dst[0] = make_float4(f[0], f[1], f[2], f[3]);
  dst[1] = make_float4(f[4], f[5], f[6], f[7]);
}

template <typename T, int MR, bool kZp>
__global__ void __launch_bounds__(kFmaThreads, kFmaBlocksPerSm) MatmulInt4GemvFmaKernel(MatmulInt4Params p) {
  extern __shared__ float4 a_s[];  // staged A, FmaPieceBytes<MR>() per piece
  char* as = reinterpret_cast<char*>(a_s);
  const int lane = threadIdx.x & 31;
  const int64_t gw = int64_t(blockIdx.x) * kFmaWarps + (threadIdx.x >> 5), nw = int64_t(gridDim.x) * kFmaWarps;
  const int k = int(p.k), kw = k >> 3, pieces = k >> 5, loads = (pieces + 31) >> 5;
  const int lg = __ffs(p.group_size) - 1;
  const int64_t cols = gw < p.n ? (p.n - 1 - gw) / nw + 1 : 0;
  const int64_t steps = cols * loads;  // flat (column, load) sequence of this warp
  const T* a = static_cast<const T*>(p.a);

  // A's first units (all of them when MR * K / 8 <= 8 * threads) go out before the weights.
  uint4 av[kFmaStageLoads];
#pragma unroll
  for (int u = 0; u < kFmaStageLoads; ++u) {
    const int e = threadIdx.x + u * kFmaThreads, r = e / kw;
    av[u] = make_uint4(0, 0, 0, 0);
    if (r < MR && r < p.m) av[u] = __ldg(reinterpret_cast<const uint4*>(a + int64_t(r) * k) + (e - r * kw));
  }

  struct Batch {
    uint4 w[kFmaU];
    uint32_t s[kFmaU], z[kFmaU];
  };
  auto load = [&](Batch& bt, int64_t c, int j) {
#pragma unroll
    for (int u = 0; u < kFmaU; ++u) {
      const int pc = j * 32 + lane;
      const int64_t col = gw + c * nw;
      if (c < cols && pc < pieces) {
        bt.w[u] = LoadStream(p.b + col * kw + pc * 4);
        const int64_t gi = int64_t((pc * 32) >> lg) * p.n + col;
        bt.s[u] = Bcast(__ldg(static_cast<const unsigned short*>(p.scales) + gi));
        if constexpr (kZp) bt.z[u] = Bcast(__ldg(static_cast<const unsigned short*>(p.zero_points) + gi));
      }
      if (++j == loads) { j = 0; ++c; }
    }
  };
  Batch b0, b1;
  load(b0, 0, 0);

#pragma unroll
  for (int u = 0; u < kFmaStageLoads; ++u) {
    const int e = threadIdx.x + u * kFmaThreads, r = e / kw;
    if (r < MR) StageA<T, MR>(as, r, e - r * kw, av[u]);
  }
  for (int e = threadIdx.x + kFmaStageLoads * kFmaThreads; e < MR * kw; e += kFmaThreads) {
    const int r = e / kw;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < p.m) v = __ldg(reinterpret_cast<const uint4*>(a + int64_t(r) * k) + (e - r * kw));
    StageA<T, MR>(as, r, e - r * kw, v);
  }
  __syncthreads();

  float acc[MR][2] = {};
  int64_t c = 0;
  int j = 0;
  auto compute = [&](const Batch& bt) {
#pragma unroll
    for (int u = 0; u < kFmaU; ++u) {
      const int pc = j * 32 + lane;
      if (pc < pieces) {
        const char* src = as + pc * FmaPieceBytes<MR>();
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t q[4];
          DequantWord8<T, kZp>(Comp(bt.w[u], i), bt.s[u], bt.z[u], q);
          float wf[8];
#pragma unroll
          for (int h = 0; h < 4; ++h) {
            const float2 x = ToFloat2<T>(q[h]);
            wf[2 * h] = x.x;
            wf[2 * h + 1] = x.y;
          }
#pragma unroll
          for (int r = 0; r < MR; ++r) {
            const float4 x0 = *reinterpret_cast<const float4*>(src + r * 128 + i * 32);
            const float4 x1 = *reinterpret_cast<const float4*>(src + r * 128 + i * 32 + 16);
            acc[r][0] = fmaf(wf[0], x0.x, acc[r][0]);
            acc[r][1] = fmaf(wf[1], x0.y, acc[r][1]);
            acc[r][0] = fmaf(wf[2], x0.z, acc[r][0]);
            acc[r][1] = fmaf(wf[3], x0.w, acc[r][1]);
            acc[r][0] = fmaf(wf[4], x1.x, acc[r][0]);
            acc[r][1] = fmaf(wf[5], x1.y, acc[r][1]);
            acc[r][0] = fmaf(wf[6], x1.z, acc[r][0]);
            acc[r][1] = fmaf(wf[7], x1.w, acc[r][1]);
          }
        }
      }
      if (j == loads - 1 && c < cols) {  // the column is done (warp-uniform): reduce and store
        const int64_t col = gw + c * nw;
#pragma unroll
        for (int r = 0; r < MR; ++r) {
          float sum = acc[r][0] + acc[r][1];
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
          if (lane == 0 && r < p.m) StoreOut<T>(p, r, col, sum);
          acc[r][0] = acc[r][1] = 0.f;
        }
      }
      if (++j == loads) { j = 0; ++c; }
    }
  };
  // Two register batches: the next one is loaded before the current one is computed.
  for (int64_t t0 = 0; t0 < steps; t0 += 2 * kFmaU) {
    {
      int64_t c1 = c;
      int j1 = j + kFmaU;  // (column, load) of step t0 + U
      while (j1 >= loads) { j1 -= loads; ++c1; }
      if (t0 + kFmaU < steps) load(b1, c1, j1);
    }
    compute(b0);
    if (t0 + kFmaU >= steps) break;
    {
      int64_t c2 = c;
      int j2 = j + kFmaU;
      while (j2 >= loads) { j2 -= loads; ++c2; }
      if (t0 + 2 * kFmaU < steps) load(b0, c2, j2);
    }
    compute(b1);
  }
}

// ---------------------------------------------------------------- GEMM regime, M > 16
constexpr int kGemmWarps = 4, kGemmThreads = kGemmWarps * 32, kGemmM = 64, kGemmMT = kGemmM / 16;
constexpr int kUnits = kChunk / 8;  // 16-byte units per A row of a chunk

// Swizzled 16-byte unit of A row r: the 8 lanes of a quarter warp (rows r, r+1; units 4t + i)
// land on 8 distinct bank groups.
__device__ __forceinline__ int Swz(int r, int u) { return u ^ (((u >> 3) & 1) << 1) ^ (r & 1); }

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool ok) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 16 : 0));
}

// ---------------------------------------------------------------- decode regime (M <= 16, N % 8 == 0)
// Swapped operands: the weights are mma's A operand (16 weight columns x 16 k), A's rows (tokens)
// its B operand (8 tokens per n8 tile, rows >= M read as zero), so M <= 8 costs one mma per
// 16 columns x 16 k. Block = W warps (4 or 8), tile = 16 MW columns x all of K; K goes in stages
// of 128 W through a 4-stage cp.async ring in shared memory: per stage the tile's weights (each
// column's 64 W bytes contiguous: 4 W lanes copy one column, coalesced), the M real rows of A
// (128 W k) and the stage's scales / zero points (rows of 16 MW contiguous columns: needs N % 8 == 0).
// Warp w takes k [128 w, +128) of each stage: lane (g, t) reads one 16-byte unit (32 k) of columns
// g and g + 8 (one LDS.128 each) and the same 32 k of tokens g (+ 8): the fragment mapping of the
// header with the roles of A and B exchanged, except that a word's codes are paired (k, k + 4)
// (DequantCodes) and A's values with them (PairActivations). The W warps' partial sums are
// reduced in shared memory at the end of the tile. Eight warps where the column tiles are few
// (small N): twice the bytes in flight per block.
// Scales: with group_size >= 128 (kPost) a warp's 128 k of a stage lie in one group, so the mma
// multiplies A by the exact integer codes, and the group's scale (and zero point, through each
// token's sum of A) is applied once per warp-stage to the f32 sums: no HMUL2 per weight pair and
// no rounding of the weights to T. Smaller groups dequantise to (q - zp) * scale in T before the
// mma (MatmulInt4's rounding chain, as the other regimes).

// A stage holds the weights, the M real rows of A (not all 8 NT8 rows: more blocks fit an SM at
// small M) and the scales / zero points. W warps a block: a stage spans 128 W of K.
template <int MW, int NT8, int W>
struct DecLayout {
  static constexpr int kStages = 4;
  static constexpr int kWarps = W, kThreads = 32 * W, kKs = 128 * W;
  static constexpr int kCols = 16 * MW, kRows = 8 * NT8;
  static constexpr int kW = kCols * (kKs / 2);      // weight bytes per stage
  static constexpr int kS = (kKs / 32) * kCols * 2;  // scale bytes per stage (group 32 at most rows)
  static constexpr int kRowBytes = kKs * 2;          // one row of A per stage
  __host__ __device__ static constexpr int Stage(int m) { return kW + m * kRowBytes + 2 * kS; }
  __host__ __device__ static constexpr int Smem(int m) { return kStages * Stage(m); }
};

// (Held to 64 registers for 8 blocks per SM it was slower on H200: 1x14336x4096 18.4 vs 15.4 us,
// 1x4096x14336 26.1 vs 18.0; ptxas' choice stays: 72-80 registers at M <= 8, 6 blocks of 4 warps
// per SM.)
template <typename T, int MW, int NT8, int W, bool kZp, bool kPost>
__global__ void __launch_bounds__(32 * W) MatmulInt4DecodeKernel(Int4Batch bt) {
  using L = DecLayout<MW, NT8, W>;
  constexpr int kDecKs = L::kKs, kDecThreads = L::kThreads, kDecWarps = L::kWarps;
  extern __shared__ uint4 dec_smem[];
  int64_t blk;
  const MatmulInt4Params p = SegmentOf(bt, &blk);
  char* sm = reinterpret_cast<char*>(dec_smem);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t n0 = blk * L::kCols;
  const int k = int(p.k), kw = k >> 3, m = int(p.m);
  const int stage_bytes = L::Stage(m), a_bytes = m * L::kRowBytes;
  const int lg = __ffs(p.group_size) - 1;
  const int stages = (k + kDecKs - 1) / kDecKs;
  const int srows = kDecKs >> lg;  // scale rows per stage
  const T* a = static_cast<const T*>(p.a);
  const unsigned short* sc = static_cast<const unsigned short*>(p.scales);
  const unsigned short* zp = static_cast<const unsigned short*>(p.zero_points);

  auto issue = [&](int s) {
    char* st = sm + (s % L::kStages) * stage_bytes;
    const int k0 = s * kDecKs;
    // weights: unit e -> column e / kPieces, 16-byte piece e % kPieces (32 k); odd columns swizzled by 4 units
    constexpr int kPieces = kDecKs / 32;
#pragma unroll
    for (int c = 0; c < L::kW / 16 / kDecThreads; ++c) {
      const int e = tid + c * kDecThreads, col = e / kPieces, pc = e % kPieces;
      const int64_t n = n0 + col;
      const int kk = k0 + 32 * pc;
      const bool ok = n < p.n && kk < k;
      CpAsync16(st + col * (kDecKs / 2) + ((pc ^ ((col & 1) << 2)) << 4),
                ok ? p.b + n * kw + (kk >> 3) : p.b, ok);
    }
    // A: the M real rows, kDecKs / 8 units each (Swz layout)
    char* as = st + L::kW;
    for (int e = tid; e < m * (kDecKs / 8); e += kDecThreads) {
      const int r = e / (kDecKs / 8), u = e % (kDecKs / 8), kk = k0 + 8 * u;
      const bool ok = kk < k;
      CpAsync16(as + r * (kDecKs * 2) + (Swz(r, u) << 4), ok ? a + int64_t(r) * k + kk : a, ok);
    }
    // scales (and zero points): srows rows of kCols columns, 2 MW units a row
    char* ss = as + a_bytes;
    if (tid < srows * 2 * MW) {
      const int r = tid / (2 * MW), u = tid % (2 * MW);
      const int64_t gr = (int64_t(k0) >> lg) + r, n = n0 + 8 * u;
      const bool ok = n < p.n && gr < (k >> lg);
      const int64_t gi = ok ? gr * p.n + n : 0;
      CpAsync16(ss + r * (L::kCols * 2) + u * 16, sc + gi, ok);
      if constexpr (kZp) CpAsync16(ss + L::kS + r * (L::kCols * 2) + u * 16, zp + gi, ok);
    }
  };

  float acc[MW][NT8][4] = {};
#pragma unroll
  for (int s = 0; s < L::kStages - 1; ++s) {
    if (s < stages) issue(s);
    asm volatile("cp.async.commit_group;\n" ::);
  }
  for (int s = 0; s < stages; ++s) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(L::kStages - 2));
    __syncthreads();
    if (s + L::kStages - 1 < stages) issue(s + L::kStages - 1);
    asm volatile("cp.async.commit_group;\n" ::);
    const char* st = sm + (s % L::kStages) * stage_bytes;
    const char* as = st + L::kW;
    const char* ss = as + a_bytes;
    const int kl = 128 * warp + 32 * t;  // this lane's 32 k inside the stage
    const int gr = kl >> lg;
    // This lane's tokens over its 32 k, paired as DequantCodes pairs the codes.
    uint32_t ap[NT8][4][4];
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt) {
      const int r = g + 8 * nt;
#pragma unroll
      for (int i = 0; i < 4; ++i)
        PairActivations(r < m ? *reinterpret_cast<const uint4*>(as + r * (kDecKs * 2) + (Swz(r, (kl >> 3) + i) << 4))
                              : make_uint4(0, 0, 0, 0),
                        ap[nt][i]);
    }
    // kPost with zero points: each token's sum of A over the warp's 128 k.
    float asum[NT8][4] = {};
    if constexpr (kPost && kZp) TokenSums<T>(ap, asum);
#pragma unroll
    for (int mw = 0; mw < MW; ++mw) {
      const int c0 = 16 * mw + g, c1 = c0 + 8;
      const int unit = (kl >> 5);
      const uint4 w0 = *reinterpret_cast<const uint4*>(st + c0 * (kDecKs / 2) + ((unit ^ ((c0 & 1) << 2)) << 4));
      const uint4 w1 = *reinterpret_cast<const uint4*>(st + c1 * (kDecKs / 2) + ((unit ^ ((c1 & 1) << 2)) << 4));
      const unsigned short* srow = reinterpret_cast<const unsigned short*>(ss + gr * (L::kCols * 2));
      const unsigned short* zrow = reinterpret_cast<const unsigned short*>(ss + L::kS + gr * (L::kCols * 2));
      float part[NT8][4] = {};  // kPost: the codes' products with A over the warp's 128 k
      uint32_t s0 = 0, s1 = 0, z0 = 0, z1 = 0;  // !kPost: scale / zero point in both halves
      if constexpr (!kPost) {
        s0 = Bcast(srow[c0]), s1 = Bcast(srow[c1]);
        if constexpr (kZp) z0 = Bcast(zrow[c0]), z1 = Bcast(zrow[c1]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t x[4], y[4];
        DequantCodes<T>(Comp(w0, i), x);
        DequantCodes<T>(Comp(w1, i), y);
        if constexpr (!kPost) {  // (q - zp) * scale in T, one rounding each
          ScaleCodes<T, kZp>(x, s0, z0);
          ScaleCodes<T, kZp>(y, s1, z1);
        }
#pragma unroll
        for (int nt = 0; nt < NT8; ++nt) {
          float* c = kPost ? part[nt] : acc[mw][nt];
          Mma<T>(c, x[0], y[0], x[2], y[2], ap[nt][i][0], ap[nt][i][2]);
          Mma<T>(c, x[1], y[1], x[3], y[3], ap[nt][i][1], ap[nt][i][3]);
        }
      }
      if constexpr (kPost) {  // acc += scale * (sum q a - zp * sum a), per column (c0: regs 0, 1; c1: 2, 3)
        const float fs0 = ToFloat<T>(srow[c0]), fs1 = ToFloat<T>(srow[c1]);
        const float fz0 = kZp ? ToFloat<T>(zrow[c0]) : 0.f, fz1 = kZp ? ToFloat<T>(zrow[c1]) : 0.f;
#pragma unroll
        for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const float v = kZp ? fmaf(-(r < 2 ? fz0 : fz1), asum[nt][r], part[nt][r]) : part[nt][r];
            acc[mw][nt][r] = fmaf(r < 2 ? fs0 : fs1, v, acc[mw][nt][r]);
          }
      }
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  __syncthreads();  // the ring is free: reuse it for the cross-warp reduction
  float* red = reinterpret_cast<float*>(sm);
  constexpr int kAcc = MW * NT8 * 4;
#pragma unroll
  for (int mw = 0; mw < MW; ++mw)
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) red[((warp * kAcc) + (mw * NT8 + nt) * 4 + r) * 32 + lane] = acc[mw][nt][r];
  __syncthreads();
  for (int e = tid; e < kAcc * 32; e += kDecThreads) {
    const int ln = e & 31, idx = e >> 5, r = idx & 3, nt = (idx >> 2) % NT8, mw = (idx >> 2) / NT8;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) sum += red[(w * kAcc + idx) * 32 + ln];
    const int64_t col = n0 + 16 * mw + (ln >> 2) + 8 * (r >> 1);
    const int64_t row = 8 * nt + 2 * (ln & 3) + (r & 1);
    if (row < p.m && col < p.n) StoreOut<T>(p, row, col, sum);
  }
}

// ---------------------------------------------------------------- split decode regime (M <= 16)
// The decode kernel above measured 1.4-1.9 TB/s at M = 1 on H200 (DRAM ~32% busy): one block owns a
// 16-column tile for all of K, so N = 4096 gives 256 blocks (under 2 per SM) and N = 14336 gives 896,
// a second partial wave (1.13 waves of 6 blocks per SM); and every byte goes global -> shared ->
// registers behind a block-wide barrier per stage. This kernel streams the weights straight into
// registers (16-byte ld.global.nc, no shared-memory ring, no barrier in the main loop) and splits K
// over the CTAs of a thread-block cluster (sm_90) so that tiles x slices fill the GPU in one wave;
// the slices' partial sums are combined through distributed shared memory in a fixed order
// (deterministic, single pass, no scratch). Without clusters (sm_80) it runs unsplit.
// Block = 4 warps, one tile of 16 MW columns, one K slice of `splits`; the slice's 128-k chunks go
// to the warps in turn (warp w: chunks w, w + 4, ...; a block reads 512 contiguous bytes per column
// at a time). A lane owns the header's fragment mapping with the roles exchanged (weights = mma's A
// operand, 16 columns; tokens = B operand, 8 per n8 tile): columns g, g + 8 (of each of the MW
// sub-tiles) and k [128 c + 32 t, +32) of chunk c: one uint4 per column, and the same 32 k of tokens
// g (+ 8) through L1 (A is small and every tile reads it); at M = 1 (kOneRow) the block stages A's
// row for its slice in shared memory once, already paired, every lane takes token 0 from there, and
// a leaner loop (SdOneRowLoop) streams the weights. H200, int4_decode_probe, f16, group 128:
// 1x14336x4096 11.0 vs 14.8 us, QkvProjectInt4's square widths 10.2 vs 13.0, Llama widths 7.5 vs 8.5
// (421 -> 300 SASS instructions a two-chunk step: the A loads, pairing PRMTs, row predicates and the
// per-chunk index products; staging A alone gave 12.6 / 11.4, and the same loop with plain selects
// around the loads compiled to branches and ran slower, 13.7).
// The next chunk's weights and scales are
// in flight while a chunk is computed; with ~30 resident warps per SM that is ~60 KB per SM.
// Arithmetic = MatmulInt4DecodeKernel's: kPost (group >= 128, a chunk lies in one group) applies
// scale and zero point to the f32 sums of the exact codes, smaller groups dequantise in T first.
// M = 9..16: MW = 2 (each A fragment feeds two column tiles: half the L1 traffic per weight byte).
constexpr int kSdWarps = 4, kSdThreads = 32 * kSdWarps, kSdMaxSplits = 8;

template <int MW, int NT8>
struct SdShape {
  static constexpr int kCols = 16 * MW, kAcc = MW * NT8 * 4;
};
// Registers: 64 at M <= 8 (8 blocks of 4 warps per SM: 1056 on 132 SMs, the 896 tiles of N = 14336
// in one wave); 128 for two token tiles x two column tiles, also with zero points on the f32 sums,
// where ptxas spills 20 bytes at 128 but 168 (3 blocks) ran 16x14336x4096's 448 tiles in 1.13
// waves: 30.6 vs 22.2 us (H200, int4_decode_probe, 2026-11-29_int4_m16_slices_probes_h200.md).
// sm_80's code (no K slices) is held less tightly: at these caps its ptxas spilled 4-16 bytes.
// M = 1 (kOneRow): 80 (6 blocks), where ptxas keeps the dequantisation's constants in registers
// (H200, int4_decode_probe, us, 6 vs 8 blocks: 1x14336x4096 group 32 13.1 vs 13.7, zero points 12.4
// vs 12.9, group 128 and QkvProjectInt4's widths equal). A prefetched with the weights (kPrefetchA):
// 170 (3 blocks; 128 spilled 24-336 bytes).
template <int NT8, bool kOneRow, bool kPrefetchA = false>
constexpr int SdMinBlocks() {
  if (kOneRow) return 6;
  if (kPrefetchA) return 3;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  return NT8 == 1 ? 6 : 3;
#else
  return NT8 == 1 ? 8 : 4;
#endif
}

template <typename T, int MW, bool kZp, int NA = 0>
struct SdChunk {
  uint4 w[MW][2];      // columns 16 mw + g, 16 mw + g + 8
  uint32_t s[MW][2];   // their scales (16-bit, as loaded)
  uint32_t z[MW][2];   // their zero points (kZp)
  uint4 a[NA > 0 ? NA : 1][4];  // NA > 0: tokens g + 8 nt's 32 k, loaded with the weights
};

// Word i (8 k) of A's 32 k from kk of token g + 8 nt, the lane's share of a chunk (zeros past K / the
// slice: !k_ok, and past M). SdLoad takes them with the weights (NA > 0), SdCompute right before the
// mma otherwise.
template <typename T>
__device__ __forceinline__ uint4 SdTokenWord(const MatmulInt4Params& p, int g, int nt, int64_t kk, bool k_ok, int i) {
  const int r = g + 8 * nt;
  const bool ok = k_ok && r < p.m;
  const uint4* src = reinterpret_cast<const uint4*>(static_cast<const T*>(p.a) + (ok ? int64_t(r) * p.k + kk : 0));
  return ok ? __ldg(src + i) : make_uint4(0, 0, 0, 0);
}

// The weights, scales and zero points of chunk c for this lane (zeros past K, past the slice, past N),
// and with NA > 0 its tokens' A.
template <typename T, int MW, bool kZp, int NA>
__device__ __forceinline__ void SdLoad(const MatmulInt4Params& p, int64_t n0, int g, int t, int c, int c_end, int lg,
                                       SdChunk<T, MW, kZp, NA>* ch) {
  const int64_t kk = int64_t(c) * kChunk + 32 * t;
  const bool k_ok = c < c_end && kk < p.k;
  const unsigned short* sc = static_cast<const unsigned short*>(p.scales);
  const unsigned short* zp = static_cast<const unsigned short*>(p.zero_points);
#pragma unroll
  for (int nt = 0; nt < NA; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) ch->a[nt][i] = SdTokenWord<T>(p, g, nt, kk, k_ok, i);
#pragma unroll
  for (int mw = 0; mw < MW; ++mw)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t col = n0 + 16 * mw + 8 * h + g;
      const bool ok = k_ok && col < p.n;
      ch->w[mw][h] = ok ? LoadStream(p.b + col * (p.k >> 3) + (kk >> 3)) : make_uint4(0, 0, 0, 0);
      const int64_t gi = (kk >> lg) * p.n + col;
      ch->s[mw][h] = ok ? __ldg(sc + gi) : 0u;
      if constexpr (kZp) ch->z[mw][h] = ok ? __ldg(zp + gi) : 0u;
    }
}

template <typename T, int MW, int NT8, bool kZp, bool kPost, int NA>
__device__ __forceinline__ void SdCompute(const MatmulInt4Params& p, const SdChunk<T, MW, kZp, NA>& ch, int g, int t,
                                          int c, int c_end, float (&acc)[MW][NT8][4]) {
  static_assert(NA == 0 || NA == NT8, "every token tile's A prefetched, or none");
  // This lane's tokens over its 32 k, paired as DequantCodes pairs the codes (zeros past K / M:
  // their weights are zero codes too, so they add exact zeros), from the chunk (NA > 0) or loaded here.
  uint32_t ap[NT8][4][4];
  const int64_t kk = int64_t(c) * kChunk + 32 * t;
  const bool k_ok = c < c_end && kk < p.k;
#pragma unroll
  for (int nt = 0; nt < NT8; ++nt) {
    auto word = [&](int i) {
      if constexpr (NA > 0) return ch.a[nt][i];
      else return SdTokenWord<T>(p, g, nt, kk, k_ok, i);
    };
#pragma unroll
    for (int i = 0; i < 4; ++i) PairActivations(word(i), ap[nt][i]);
  }
  float asum[NT8][4] = {};  // kPost with zero points: each token's sum of A over the chunk
  if constexpr (kPost && kZp) TokenSums<T>(ap, asum);
#pragma unroll
  for (int mw = 0; mw < MW; ++mw) {
    float part[NT8][4] = {};  // kPost: the codes' products with A over the chunk
    uint32_t s0 = 0, s1 = 0, z0 = 0, z1 = 0;
    if constexpr (!kPost) {
      s0 = Bcast(uint16_t(ch.s[mw][0])), s1 = Bcast(uint16_t(ch.s[mw][1]));
      if constexpr (kZp) z0 = Bcast(uint16_t(ch.z[mw][0])), z1 = Bcast(uint16_t(ch.z[mw][1]));
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t x[4], y[4];
      DequantCodes<T>(Comp(ch.w[mw][0], i), x);
      DequantCodes<T>(Comp(ch.w[mw][1], i), y);
      if constexpr (!kPost) {  // (q - zp) * scale in T, one rounding each
        ScaleCodes<T, kZp>(x, s0, z0);
        ScaleCodes<T, kZp>(y, s1, z1);
      }
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt) {
        float* d = kPost ? part[nt] : acc[mw][nt];
        Mma<T>(d, x[0], y[0], x[2], y[2], ap[nt][i][0], ap[nt][i][2]);
        Mma<T>(d, x[1], y[1], x[3], y[3], ap[nt][i][1], ap[nt][i][3]);
      }
    }
    if constexpr (kPost) {  // acc += scale * (sum q a - zp * sum a); regs 0, 1: column g, 2, 3: g + 8
      const float fs0 = ToFloat<T>(uint16_t(ch.s[mw][0])), fs1 = ToFloat<T>(uint16_t(ch.s[mw][1]));
      const float fz0 = kZp ? ToFloat<T>(uint16_t(ch.z[mw][0])) : 0.f;
      const float fz1 = kZp ? ToFloat<T>(uint16_t(ch.z[mw][1])) : 0.f;
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const float v = kZp ? fmaf(-(r < 2 ? fz0 : fz1), asum[nt][r], part[nt][r]) : part[nt][r];
          acc[mw][nt][r] = fmaf(r < 2 ? fs0 : fs1, v, acc[mw][nt][r]);
        }
    }
  }
}

// ---- M = 1 (kOneRow): A's row staged once a block, a lean loop.
// Shared memory (dynamic) per chunk of the slice: A's 128 k as the 4 registers PairActivations makes
// of each 8 (16 words of 16 bytes), then (zero points with kPost) the chunk's sum of A as a float.
// Lane t of SdOneRowLoop reads words 4 t .. 4 t + 3 of its chunk, one an instruction.
// Unpadded: chunk c at 16 c, lanes t and t + 2 on the same banks (two wavefronts an instruction).
// Padded (kPadded): chunk c at 18 c, lane t's words from 4 t + t / 2, so the 16-byte bank groups of
// lanes t = 0..3 are {0, 4, 1, 5} + i and the next chunk's {2, 6, 3, 7} + i: one wavefront for one
// or two chunks an instruction, two for four (SdOneRowLoop's kR), the fewest for 256 distinct bytes.
// H200, int4_decode_probe, QkvProjectInt4 square widths on MatmulInt4OneRowTilesKernel, us:
// unpadded 9.51-9.62, padded kR = 1 / 2 / 4: 9.37 / 9.15-9.17 / 9.07-9.08 (an XOR swizzle of the
// unpadded words, kR = 1 / 2: 9.45-9.51, 9.48-9.52; one word of padding, kR = 4: 9.12). On the
// split kernel's M = 1 path (kR = 1) padding measured mixed (QkvProjectInt4 Llama widths 7.16-7.23
// vs 7.29-7.35, 1x14336x4096 10.92-10.96 vs 10.63-10.75): it stays unpadded.
template <bool kPadded>
struct SdRowLayout {
  static constexpr int kWords = kPadded ? kChunk / 8 + 2 : kChunk / 8;  // 16-byte words a chunk
  static constexpr int kBytesPerChunk = kWords * 16 + 4;                 // with the chunk's sum of A
  __device__ __forceinline__ static int Lane(int t) { return kPadded ? 4 * t + (t >> 1) : 4 * t; }
  // Where word w of the row (chunk w / 16, lane t = w / 4 % 4, its word w % 4) is stored.
  __device__ __forceinline__ static int Pos(int w) {
    return kPadded ? (w >> 4) * kWords + Lane((w >> 2) & 3) + (w & 3) : w;
  }
};

// Chunks rounded up to whole steps of kSdWarps (the launcher's shared-memory size and the kernel's
// staging of MatmulInt4OneRowTilesKernel, whose warps with kR > 1 read to their step's end).
template <typename I>
__host__ __device__ constexpr I SdWholeSteps(I chunks) {
  return (chunks + kSdWarps - 1) / kSdWarps * kSdWarps;
}

template <typename T, bool kSums, int kThreads = kSdThreads, typename Layout = SdRowLayout<false>>
__device__ __forceinline__ void SdStageRow(const MatmulInt4Params& p, int c_begin, int c_end, uint4* a_pairs,
                                           float* a_sums) {
  const uint4* a = static_cast<const uint4*>(p.a);
  const int words = (c_end - c_begin) * (kChunk / 8), first = c_begin * (kChunk / 8);
  // 16 consecutive threads take one chunk's 16 words (kThreads % 16 == 0: whole chunks a pass). (Four
  // passes' loads in flight at once ran slower: QkvProjectInt4 square 10.3 vs 9.8 us.)
  for (int w = threadIdx.x; w < words; w += kThreads) {
    const uint4 v = 8 * int64_t(first + w) < p.k ? __ldg(a + first + w) : make_uint4(0, 0, 0, 0);  // K % 8 == 0
    uint32_t b[4];
    PairActivations(v, b);
    a_pairs[Layout::Pos(w)] = make_uint4(b[0], b[1], b[2], b[3]);
    if constexpr (kSums) {
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = ToFloat2<T>(Comp(v, i));
        sum += f.x + f.y;
      }
      const unsigned half = 0xFFFFu << (threadIdx.x & 16);
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(half, sum, o);
      if ((w & 15) == 0) a_sums[w >> 4] = sum;
    }
  }
  __syncthreads();
}

// The main loop at M = 1: this warp's chunks c0, c0 + kSdWarps, ... < c_end, two in flight, A's pairs
// from shared memory (every lane feeds token 0: lanes g > 0 compute copies in output columns the
// store skips). Pointers are formed once; a column past N reads column N - 1 instead (its sums are
// never stored), so only K's tail is predicated. acc[0] / acc[2]: token 0 of columns g / g + 8.
// stage_a() stages A's row (every thread of the block calls it; it ends in __syncthreads) once the
// first chunk's loads are out, so the two overlap. H200, int4_decode_probe, us, vs staging first:
// QkvProjectInt4 square widths 9.78-9.85 vs 10.11, Llama widths 7.29-7.36 vs 7.50, 1x14336x4096
// 10.67-10.72 vs 11.02; with two chunks' loads out first 10.46 / 8.17 / 13.87 (slower), and with a
// bulk L2 prefetch of the block's columns at the start 12.0 / 8.3 / 13.8.
template <typename T, bool kZp, bool kPost, int kR = 1, typename Layout = SdRowLayout<false>, typename StageA>
__device__ __forceinline__ void SdOneRowLoop(const MatmulInt4Params& p, int64_t n0, int g, int t, int c0, int c_begin,
                                             int c_end, int lg, const uint4* a_pairs, const float* a_sums,
                                             float (&acc)[4], StageA&& stage_a) {
  static_assert(kR == 1 || kR == 2 || kR == 4, "k ranges a warp step");
  const int n = int(p.n), k = int(p.k);  // (the launcher: K < 2^30, scale rows x N < 2^31)
  // kR > 1: the mma's row g is column g / kR of the tile (16 / kR wide; row g + 8: (g + 8) / kR) over
  // chunk c0 + g % kR. Token slot n of the B operand is fed by the lanes g = n with their own chunk's
  // A, so slot g % kR carries row g's chunk: D[g][g % kR] is row g's sum (the other slots: unused).
  const int r = g % kR, warp_c0 = c0;
  c0 += r;
  const int col0 = min(int(n0) + g / kR, n - 1), col1 = min(int(n0) + (g + 8) / kR, n - 1);
  const uint32_t* w0 = p.b + int64_t(col0) * (k >> 3) + 4 * t + (kChunk / 8) * c0;
  const uint32_t* w1 = p.b + int64_t(col1) * (k >> 3) + 4 * t + (kChunk / 8) * c0;
  const unsigned short* s0p = static_cast<const unsigned short*>(p.scales) + col0;
  const unsigned short* s1p = static_cast<const unsigned short*>(p.scales) + col1;
  const unsigned short* z0p = kZp ? static_cast<const unsigned short*>(p.zero_points) + col0 : nullptr;
  const unsigned short* z1p = kZp ? static_cast<const unsigned short*>(p.zero_points) + col1 : nullptr;
  const uint4* ap = a_pairs + (c0 - c_begin) * Layout::kWords + Layout::Lane(t);
  const int odd = kR > 1 ? (g & 1) : 0;  // D[g][r] is register r % 2 (r's parity is g's)
  struct Chunk {
    uint4 w0, w1;
    uint32_t s0, s1, z0, z1;
  };
  // Chunk c0 + kSdWarps * j: the pointers advance by j chunks of this warp.
  auto load = [&](int j, Chunk& ch) {
    const int c = c0 + kSdWarps * j, kk = c * kChunk + 32 * t;
    const bool ok = c < c_end && kk < k;
    const int row = (kk >> lg) * n;
    ch.w0 = LoadStreamIf(w0 + (kSdWarps * kChunk / 8) * j, ok);
    ch.w1 = LoadStreamIf(w1 + (kSdWarps * kChunk / 8) * j, ok);
    ch.s0 = LoadHalfIf(s0p + row, ok);
    ch.s1 = LoadHalfIf(s1p + row, ok);
    if constexpr (kZp) ch.z0 = LoadHalfIf(z0p + row, ok), ch.z1 = LoadHalfIf(z1p + row, ok);
  };
  auto compute = [&](int j, const Chunk& ch) {
    const uint4* a = ap + kSdWarps * Layout::kWords * j;
    float part[4] = {};
    float* d = kPost ? part : acc;
    uint32_t s0 = 0, s1 = 0, z0 = 0, z1 = 0;
    if constexpr (!kPost) {
      s0 = Bcast(uint16_t(ch.s0)), s1 = Bcast(uint16_t(ch.s1));
      if constexpr (kZp) z0 = Bcast(uint16_t(ch.z0)), z1 = Bcast(uint16_t(ch.z1));
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 av = a[i];
      uint32_t x[4], y[4];
      DequantCodes<T>(Comp(ch.w0, i), x);
      DequantCodes<T>(Comp(ch.w1, i), y);
      if constexpr (!kPost) {
        ScaleCodes<T, kZp>(x, s0, z0);
        ScaleCodes<T, kZp>(y, s1, z1);
      }
      Mma<T>(d, x[0], y[0], x[2], y[2], av.x, av.z);
      Mma<T>(d, x[1], y[1], x[3], y[3], av.y, av.w);
    }
    if constexpr (kPost) {  // acc += scale * (sum q a - zp * sum a)
      float v0 = odd ? part[1] : part[0], v1 = odd ? part[3] : part[2];
      if constexpr (kZp) {
        const float asum = a_sums[c0 - c_begin + kSdWarps * j];
        v0 = fmaf(-ToFloat<T>(uint16_t(ch.z0)), asum, v0);
        v1 = fmaf(-ToFloat<T>(uint16_t(ch.z1)), asum, v1);
      }
      acc[0] = fmaf(ToFloat<T>(uint16_t(ch.s0)), v0, acc[0]);
      acc[2] = fmaf(ToFloat<T>(uint16_t(ch.s1)), v1, acc[2]);
    }
  };
  // This warp's steps (every lane runs them: the mma is warp-wide; a lane's chunks past c_end load
  // zeros, and its A there must be staged zeros: the launcher stages whole steps).
  const int mine = warp_c0 < c_end ? (c_end - warp_c0 + kSdWarps - 1) / kSdWarps : 0;
  Chunk cur, nxt;
  load(0, cur);
  stage_a();  // A's row staged while the first weights are in flight
  for (int j = 0; j < mine; j += 2) {
    load(j + 1, nxt);
    compute(j, cur);
    if (j + 1 >= mine) break;
    load(j + 2, cur);
    compute(j + 1, nxt);
  }
  if constexpr (!kPost)
    if (odd) acc[0] = acc[1], acc[2] = acc[3];
}

// Grid: x = the batch's column tiles, y = `splits` K slices; launched as clusters of 1 x splits
// (splits > 1 only on sm_90, where the cluster's CTAs are the slices of one tile).
// kOneRow (M = 1): A's row staged in dynamic shared memory (SdRowLayout<false>, unpadded).
// kPrefetchA (M = 9..16): each chunk's 32 k of the lane's two tokens are loaded with its weights, one
// chunk ahead, instead of from L1 / L2 right before its mma (32 more registers a chunk, so 3 blocks
// per SM instead of 4). H200, int4_decode_probe, us: 16x4096x4096 8.83 vs 9.68-9.74, 16x4096x14336
// 18.4 vs 21.1, QkvProjectInt4 Llama widths 10.2 vs 11.0; with 448 tiles (16x14336x4096, more than
// one wave of 3 blocks) 22.1 vs 19.0 (2026-11-29_int4_m16_slices_probes_h200.md).
template <typename T, int MW, int NT8, bool kZp, bool kPost, bool kOneRow, bool kPrefetchA = false>
__global__ void __launch_bounds__(kSdThreads, SdMinBlocks<NT8, kOneRow, kPrefetchA>())
    MatmulInt4SplitDecodeKernel(Int4Batch bt, int splits) {
  static_assert(!kPrefetchA || (NT8 == 2 && !kOneRow), "A prefetched with the weights: two token tiles");
  using S = SdShape<MW, NT8>;
  int64_t blk;
  const MatmulInt4Params p = SegmentOf(bt, &blk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t n0 = blk * S::kCols;
  const int chunks = int((p.k + kChunk - 1) / kChunk);
  const int slice = int(blockIdx.y);
  const int c_begin = int(int64_t(chunks) * slice / splits), c_end = int(int64_t(chunks) * (slice + 1) / splits);
  const int lg = __ffs(p.group_size) - 1;

  float acc[MW][NT8][4] = {};
  if constexpr (kOneRow) {
    static_assert(MW == 1 && NT8 == 1, "one token tile, 16 columns");
    extern __shared__ uint4 a_pairs[];
    float* a_sums = reinterpret_cast<float*>(a_pairs + (c_end - c_begin) * SdRowLayout<false>::kWords);
    auto stage_a = [&] { SdStageRow<T, kZp && kPost>(p, c_begin, c_end, a_pairs, a_sums); };
    SdOneRowLoop<T, kZp, kPost>(p, n0, g, t, c_begin + warp, c_begin, c_end, lg, a_pairs, a_sums, acc[0][0], stage_a);
  } else {
    // Two chunks per lane in registers: the next one's loads go out before this one's math.
    SdChunk<T, MW, kZp, kPrefetchA ? NT8 : 0> cur, nxt;
    int c = c_begin + warp;
    SdLoad(p, n0, g, t, c, c_end, lg, &cur);
    for (; c < c_end; c += 2 * kSdWarps) {
      SdLoad(p, n0, g, t, c + kSdWarps, c_end, lg, &nxt);
      SdCompute<T, MW, NT8, kZp, kPost>(p, cur, g, t, c, c_end, acc);
      if (c + kSdWarps >= c_end) break;
      SdLoad(p, n0, g, t, c + 2 * kSdWarps, c_end, lg, &cur);
      SdCompute<T, MW, NT8, kZp, kPost>(p, nxt, g, t, c + kSdWarps, c_end, acc);
    }
  }

  // The warps' partial sums, then the slices' (fixed order both: deterministic).
  __shared__ float red[kSdWarps][S::kAcc][32];
  __shared__ float slice_sum[S::kAcc * 32];
#pragma unroll
  for (int mw = 0; mw < MW; ++mw)
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) red[warp][(mw * NT8 + nt) * 4 + r][lane] = acc[mw][nt][r];
  __syncthreads();
  for (int e = tid; e < S::kAcc * 32; e += kSdThreads) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kSdWarps; ++w) sum += red[w][e >> 5][e & 31];
    slice_sum[e] = sum;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // (Not ClusterSliceSum, which keeps every remote load in flight at once: with it ptxas spilled 24-152
  // bytes in the M = 9..16 and zero-point variants of this kernel; not yet measured here.)
  if (splits > 1) {
    // Slice 0's CTA sums every slice's partials (cluster rank = slice: the cluster spans grid y).
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
    if (slice == 0) {
      const uint32_t local = static_cast<uint32_t>(__cvta_generic_to_shared(slice_sum));
      for (int e = tid; e < S::kAcc * 32; e += kSdThreads) {
        float sum = slice_sum[e];
        for (int r = 1; r < splits; ++r) {
          uint32_t remote;
          float v;
          asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local + 4u * e), "r"(r));
          asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(remote) : "memory");
          sum += v;
        }
        slice_sum[e] = sum;
      }
    }
    // The other CTAs' shared memory must outlive slice 0's reads.
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  }
#endif
  if (slice != 0) return;
  __syncthreads();
  for (int e = tid; e < S::kAcc * 32; e += kSdThreads) {
    const int ln = e & 31, idx = e >> 5, r = idx & 3, nt = (idx >> 2) % NT8, mw = (idx >> 2) / NT8;
    const int64_t col = n0 + 16 * mw + (ln >> 2) + 8 * (r >> 1);
    const int64_t row = 8 * nt + 2 * (ln & 3) + (r & 1);
    if (row < p.m && col < p.n) StoreOut<T>(p, row, col, slice_sum[e]);
  }
}

// M = 1, blocks of 4 kTiles warps and 16 kTiles columns, one staging of A's row (padded layout) for
// all of them. kR = 1: warps 4 i .. 4 i + 3 take 16-column tile i (SdOneRowLoop's loop each).
// kR = 2 / 4: tiles of 16 / kR columns, 4 / kR warps each, a warp's step kR neighbouring chunks (one
// load instruction reads 128 / 256 contiguous bytes of each of its columns, kR = 1: 64 of 8).
// Grid: x = the batch's column blocks, y = `splits` K slices (kSliced), launched as clusters of
// 1 x splits (sm_90) whose CTAs stage and stream only their slice; slice 0 sums the slices' column
// sums from distributed shared memory in a fixed order (deterministic, one launch, no scratch).
// kSliced = false compiles the unsplit kernel without the slicing arithmetic (its division before
// the first loads measured ~0.1 us at the square QKV widths: 9.23-9.25 vs 9.09-9.17 us).
// The launcher takes kTiles = 2, kR = 4 where blocks x slices fill 2-3 per SM: fewer, larger blocks,
// not the shared staging, are what measured faster (3 and 6 tiles a block share it more and ran slower).
template <typename T, bool kZp, bool kPost, int kTiles, int kR, bool kSliced>
__global__ void __launch_bounds__(kSdThreads * kTiles, 6 / kTiles) MatmulInt4OneRowTilesKernel(Int4Batch bt,
                                                                                               int splits) {
  constexpr int kThreads = kSdThreads * kTiles, kWarpsPerTile = kSdWarps / kR, kTileCols = 16 / kR;
  constexpr int kCols = 16 * kTiles;
  using Layout = SdRowLayout<true>;
  int64_t blk;
  const MatmulInt4Params p = SegmentOf(bt, &blk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t n0 = blk * kCols + (warp / kWarpsPerTile) * kTileCols;
  const int chunks = int((p.k + kChunk - 1) / kChunk), slice = int(blockIdx.y);
  // (chunks < 2^23: 32-bit products; unsplit (kSliced false) no division before the first loads)
  const int c_begin = kSliced ? chunks * slice / splits : 0;
  const int c_end = kSliced ? chunks * (slice + 1) / splits : chunks;
  // Whole steps of the slice (past c_end: A's values, or zeros past K, against zero weights).
  const int staged = SdWholeSteps(c_end - c_begin);
  const int lg = __ffs(p.group_size) - 1;
  extern __shared__ uint4 a_pairs[];
  float* a_sums = reinterpret_cast<float*>(a_pairs + staged * Layout::kWords);
  float acc[4] = {};
  auto stage_a = [&] {
    SdStageRow<T, kZp && kPost, kThreads, Layout>(p, c_begin, c_begin + staged, a_pairs, a_sums);
  };
  SdOneRowLoop<T, kZp, kPost, kR, Layout>(p, n0, g, t, c_begin + (warp % kWarpsPerTile) * kR, c_begin, c_end, lg,
                                          a_pairs, a_sums, acc, stage_a);
  // Row g's sums (columns g / kR, (g + 8) / kR of the tile) are token g % kR's: lane t = (g % kR) / 2.
  __shared__ float red[kTiles * kSdWarps][2][8];
  __shared__ __align__(16) float col_sum[kCols];
  if (t == (g % kR) >> 1) red[warp][0][g] = acc[0], red[warp][1][g] = acc[2];
  __syncthreads();
  if (tid < kCols) {  // column tid of the block: the tile's warps and k ranges summed in order
    const int tile = tid / kTileCols, j = tid % kTileCols, h = j / (8 / kR), g0 = (j % (8 / kR)) * kR;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarpsPerTile; ++w)
#pragma unroll
      for (int r = 0; r < kR; ++r) sum += red[kWarpsPerTile * tile + w][h][g0 + r];
    col_sum[tid] = sum;
  }
  if constexpr (kSliced) {  // slice 0 (cluster rank = slice: the cluster spans grid y) adds the others'
    if (splits > 1) ClusterSliceSum(col_sum, kCols, splits, slice);
    __syncthreads();
  }
  if (slice == 0 && tid < kCols) {  // (unsplit: the thread reads back its own column)
    const int64_t col = blk * kCols + tid;
    if (col < p.n) StoreOut<T>(p, 0, col, col_sum[tid]);
  }
}

template <typename T, int NT, bool kZp>
__global__ void __launch_bounds__(kGemmThreads) MatmulInt4GemmKernel(Int4Batch bt) {
  __shared__ alignas(16) uint4 as[2][kGemmM][kUnits];
  int64_t blk;
  const MatmulInt4Params p = SegmentOf(bt, &blk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t m0 = int64_t(blockIdx.y) * kGemmM;
  const int64_t ncol0 = blk * (kGemmWarps * 8 * NT) + warp * 8 * NT + g;
  const int64_t chunks = (p.k + kChunk - 1) / kChunk;
  const T* a = static_cast<const T*>(p.a);

  auto load_a = [&](int stage, int64_t j) {
#pragma unroll
    for (int c = 0; c < kGemmM * kUnits / kGemmThreads; ++c) {
      const int e = tid + c * kGemmThreads, r = e / kUnits, u = e % kUnits;
      const int64_t row = m0 + r, kk = j * kChunk + 8 * u;
      const bool ok = row < p.m && kk < p.k;
      CpAsync16(&as[stage][r][Swz(r, u)], ok ? a + row * p.k + kk : a, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };

  float acc[kGemmMT][NT][4] = {};
  uint4 wv[NT], wn[NT];
  uint32_t s2[NT], z2[NT], sn[NT], zn[NT];
  if (chunks > 0) load_a(0, 0);  // (K = 0: no copy from A at all)
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) LoadWeights<kZp>(p, ncol0 + nt * 8, 32 * t, &wv[nt], &s2[nt], &z2[nt]);

  for (int64_t j = 0; j < chunks; ++j) {
    const int st = int(j & 1);
    if (j + 1 < chunks) {
      load_a(st ^ 1, j + 1);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        LoadWeights<kZp>(p, ncol0 + nt * 8, (j + 1) * kChunk + 32 * t, &wn[nt], &sn[nt], &zn[nt]);
    } else {
      asm volatile("cp.async.commit_group;\n" ::);
    }
    asm volatile("cp.async.wait_group 1;\n" ::);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint4 lo[kGemmMT], hi[kGemmMT];
#pragma unroll
      for (int mt = 0; mt < kGemmMT; ++mt) {
        const int r0 = mt * 16 + g, u = 4 * t + i;
        lo[mt] = as[st][r0][Swz(r0, u)];
        hi[mt] = as[st][r0 + 8][Swz(r0 + 8, u)];
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        uint32_t b[4];
        DequantWord<T, kZp>(Comp(wv[nt], i), s2[nt], z2[nt], b);
#pragma unroll
        for (int mt = 0; mt < kGemmMT; ++mt) {
          MmaOrdered<T>(acc[mt][nt], lo[mt].x, hi[mt].x, lo[mt].y, hi[mt].y, b[0], b[1]);
          MmaOrdered<T>(acc[mt][nt], lo[mt].z, hi[mt].z, lo[mt].w, hi[mt].w, b[2], b[3]);
        }
      }
    }
    __syncthreads();
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      wv[nt] = wn[nt];
      s2[nt] = sn[nt];
      z2[nt] = zn[nt];
    }
  }

#pragma unroll
  for (int mt = 0; mt < kGemmMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t row = m0 + mt * 16 + g + 8 * (r >> 1), col = ncol0 - g + nt * 8 + 2 * t + (r & 1);
        if (row < p.m && col < p.n) StoreOut<T>(p, row, col, acc[mt][nt][r]);
      }
}

}  // namespace int4mm
}  // namespace kaio
