// MatmulInt8 W8A16 CUDA kernels: int8 weights [K, N] (row-major, KAIO's layout) dequantised in
// registers; never expanded in memory.
//
// Dequantisation of one word (4 int8 of consecutive columns) into two pairs of A's type T:
//   f16:  PRMT puts (b ^ 0x80) = b + 128 under the exponent byte 0x64: 1024 + (b + 128), exact;
//         HSUB2 1152 gives b exactly.
//   bf16: (b + 128) under the f32 exponent 0x4B: 2^23 + (b + 128), exact; FADD -(2^23 + 128) gives b
//         exactly; one cvt packs two into bf16x2 (exact: |b| <= 128).
// Then (b - zp) and * scale in T (HSUB2, HMUL2): MatmulInt4's rounding chain.
//
// GEMV regime (small M, MatmulInt8GemvKernel): a block owns 256 columns (lane l: columns 8l..8l+7,
// one 8-byte load of a weight row, 256 contiguous bytes per warp), a K slice and up to 8 rows of A;
// its 8 warps take chunks of 8 weight rows in turn (8 row loads in flight per lane, one scale load
// per chunk), dequantise each weight once for all rows. Where the column blocks alone do not fill
// the GPU, K is split over blocks (grid.y): each writes float partial sums for its slice and
// MatmulInt8CombineKernel adds them in a fixed order (deterministic) and rounds once.
//
// Decode regime (M <= 16, N % 16 == 0, K % 8 == 0; MatmulInt8DecodeKernel below): weights
// streamed from memory straight into mma.sync's A operand, K split over a thread-block cluster on
// sm_90, and up to three weights of the same A in one launch (QkvProjectInt8). Elsewhere the GEMV.
//
// GEMM regime (larger M): the tensor-core MatmulTc kernel (matmul_tc_kernel.cuh) with Int8Source
// as its B operand (each 8-column row segment dequantised on its way to shared memory), K split
// over blocks the same way where its 128 x 128 tiles do not fill the GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

#include "common/elem.cuh"
#include "quant_matmul/quant_kernel_common.cuh"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
namespace int8mm {

// Bytes (P, P + 1) of w as two exact integers in T.
template <typename T, int P>
__device__ __forceinline__ uint32_t IntPair(uint32_t w) {
  const uint32_t u = w ^ 0x80808080u;  // b + 128, unsigned
  if constexpr (std::is_same<T, __half>::value) {
    constexpr uint32_t sel = P == 0 ? 0x7170u : 0x7372u;
    return Sub2<T>(__byte_perm(u, 0x64646464u, sel), 0x64806480u);
  } else {
    constexpr uint32_t s0 = P == 0 ? 0x7540u : 0x7542u, s1 = P == 0 ? 0x7541u : 0x7543u;
    const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, s0)) - 8388736.f;
    const float f1 = __uint_as_float(__byte_perm(u, 0x4B000000u, s1)) - 8388736.f;
    __nv_bfloat162 h = __floats2bfloat162_rn(f0, f1);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// 8 weights of one row (b: 8 int8 of columns n..n+7) as 8 T: (b - zp) * s, s / z 8 T each.
template <typename T>
__device__ __forceinline__ uint4 DequantSegment(uint2 b, uint4 s, uint4 z, bool zp) {
  uint32_t q[4] = {IntPair<T, 0>(b.x), IntPair<T, 2>(b.x), IntPair<T, 0>(b.y), IntPair<T, 2>(b.y)};
  const uint32_t sv[4] = {s.x, s.y, s.z, s.w}, zv[4] = {z.x, z.y, z.z, z.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (zp) q[i] = Sub2<T>(q[i], zv[i]);
    q[i] = Mul2<T>(q[i], sv[i]);
  }
  return make_uint4(q[0], q[1], q[2], q[3]);
}

// 8 consecutive 16-bit values [n, n + 8) of a row of `cols` (zeros past the end).
template <bool kVec>
__device__ __forceinline__ uint4 Load8x16(const uint16_t* row, int64_t n, int64_t cols) {
  if constexpr (kVec) {
    return n < cols ? __ldg(reinterpret_cast<const uint4*>(row + n)) : make_uint4(0, 0, 0, 0);
  } else {
    uint32_t h[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t lo = n + 2 * i < cols ? __ldg(row + n + 2 * i) : 0;
      const uint32_t hi = n + 2 * i + 1 < cols ? __ldg(row + n + 2 * i + 1) : 0;
      h[i] = lo | (hi << 16);
    }
    return make_uint4(h[0], h[1], h[2], h[3]);
  }
}

// 8 int8 [n, n + 8) of a weight row (zeros past the end).
template <bool kVec>
__device__ __forceinline__ uint2 Load8x8(const int8_t* row, int64_t n, int64_t cols) {
  if constexpr (kVec) {
    return n < cols ? __ldg(reinterpret_cast<const uint2*>(row + n)) : make_uint2(0, 0);
  } else {
    uint32_t w[2] = {0, 0};
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (n + i < cols) w[i >> 2] |= uint32_t(uint8_t(__ldg(row + n + i))) << (8 * (i & 3));
    return make_uint2(w[0], w[1]);
  }
}

// Group of weight row k (32-bit division: K < 2^32 in every real model; 64-bit otherwise).
__device__ __forceinline__ int64_t GroupOf(const MatmulInt8Params& p, int64_t k) {
  if (p.group_size <= 0) return 0;
  if (p.k <= int64_t(0xFFFFFFFFu)) return uint32_t(k) / uint32_t(p.group_size);
  return k / p.group_size;
}

// Scales and zero points [n, n + 8) of group gk.
template <typename T>
constexpr uint32_t kOnes2 = std::is_same<T, __half>::value ? 0x3C003C00u : 0x3F803F80u;  // 1.0 in both halves

template <typename T, bool kVec>
__device__ __forceinline__ void LoadGroup(const MatmulInt8Params& p, int64_t gk, int64_t n, uint4* s, uint4* z) {
  *s = p.scales ? Load8x16<kVec>(static_cast<const uint16_t*>(p.scales) + gk * p.n, n, p.n)
                : make_uint4(kOnes2<T>, kOnes2<T>, kOnes2<T>, kOnes2<T>);  // w = b (times 1: exact)
  *z = p.zero_points ? Load8x16<kVec>(static_cast<const uint16_t*>(p.zero_points) + gk * p.n, n, p.n)
                     : make_uint4(0, 0, 0, 0);
}

// Row k's dequantised weights [n, n + 8) in T (zeros past K or N).
template <typename T, bool kVec>
__device__ __forceinline__ uint4 WeightSegment(const MatmulInt8Params& p, int64_t k, int64_t n) {
  if (k >= p.k) return make_uint4(0, 0, 0, 0);
  uint4 s, z;
  LoadGroup<T, kVec>(p, GroupOf(p, k), n, &s, &z);
  return DequantSegment<T>(Load8x8<kVec>(p.b + k * p.n, n, p.n), s, z, p.zero_points != nullptr);
}

// The B operand of MatmulTcSyncKernel: row-major [K, N] segments dequantised from int8.
struct Int8Source {
  MatmulInt8Params p;
  template <typename T, bool kVec>
  __device__ __forceinline__ uint4 Load(const T*, int64_t row, int64_t col, int64_t, int64_t) const {
    return WeightSegment<T, kVec>(p, row, col);
  }
};

template <typename T>
__device__ __forceinline__ void StoreOut(const MatmulInt8Params& p, int64_t row, int64_t col, float v) {
  if (p.out_scale) v *= p.out_scale[p.out_scale_per_channel ? col : 0];
  if (p.bias) v += ToFloat<T>(__ldg(static_cast<const uint16_t*>(p.bias) + col));
  StoreElem<T>(p.y, row * p.n + col, v, p.out_f32);
}

// ---------------------------------------------------------------- GEMV regime
// Rows [MR z, MR z + MR) of A for grid.z = z (M up to kGemvMaxM in row blocks of MR).
constexpr int kGemvWarps = 8, kGemvThreads = kGemvWarps * 32, kGemvCols = 256, kGemvRows = 8;

template <typename T, int MR, bool kVec>
__global__ void __launch_bounds__(kGemvThreads) MatmulInt8GemvKernel(MatmulInt8Params p, float* partial,
                                                                     int64_t slice) {
  constexpr int kRedRows = MR < 4 ? MR : 4;  // rows reduced per round (32 KB of shared memory)
  __shared__ float red[kGemvWarps][kRedRows][kGemvCols];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = int64_t(blockIdx.x) * kGemvCols, n = n0 + 8 * lane;
  const int64_t k_begin = int64_t(blockIdx.y) * slice, k_end = min(p.k, k_begin + slice);
  const int64_t r0 = int64_t(blockIdx.z) * MR;
  const int rows = int(min(int64_t(MR), p.m - r0));
  const uint16_t* a = static_cast<const uint16_t*>(p.a) + r0 * p.k;
  const bool zp = p.zero_points != nullptr;
  float acc[MR][8] = {};
  for (int64_t k0 = k_begin + kGemvRows * warp; k0 < k_end; k0 += kGemvRows * kGemvWarps) {
    uint2 b[kGemvRows];
#pragma unroll
    for (int i = 0; i < kGemvRows; ++i)
      b[i] = k0 + i < k_end ? Load8x8<kVec>(p.b + (k0 + i) * p.n, n, p.n) : make_uint2(0, 0);
    // One group for the whole chunk unless it straddles a group boundary (group_size < 8 or unaligned).
    const int64_t g0 = GroupOf(p, k0), g1 = GroupOf(p, min(k0 + kGemvRows, k_end) - 1);
    uint4 s, z;
    LoadGroup<T, kVec>(p, g0, n, &s, &z);
    // A[r][k0..k0+8) as packed pairs (zeros past the slice), converted where used.
    uint32_t ah[MR][4];
#pragma unroll
    for (int r = 0; r < MR; ++r) {
      const uint4 av = r < rows ? Load8x16<kVec>(a + r * p.k, k0, k_end) : make_uint4(0, 0, 0, 0);
      ah[r][0] = av.x, ah[r][1] = av.y, ah[r][2] = av.z, ah[r][3] = av.w;
    }
#pragma unroll
    for (int i = 0; i < kGemvRows; ++i) {
      if (g1 != g0) LoadGroup<T, kVec>(p, GroupOf(p, min(k0 + i, p.k - 1)), n, &s, &z);
      const uint4 w = DequantSegment<T>(b[i], s, z, zp);
      const uint32_t wv[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int r = 0; r < MR; ++r) {
        const float x = ToFloat<T>(uint16_t(i & 1 ? ah[r][i >> 1] >> 16 : ah[r][i >> 1] & 0xFFFF));
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = ToFloat2<T>(wv[j]);
          acc[r][2 * j] = fmaf(f.x, x, acc[r][2 * j]);
          acc[r][2 * j + 1] = fmaf(f.y, x, acc[r][2 * j + 1]);
        }
      }
    }
  }
  const int64_t col = n0 + threadIdx.x;
#pragma unroll
  for (int rb = 0; rb < MR; rb += kRedRows) {
    if (rb > 0) __syncthreads();  // the previous round's sums are read
#pragma unroll
    for (int r = 0; r < kRedRows; ++r)
#pragma unroll
      for (int j = 0; j < 8; ++j) red[warp][r][8 * lane + j] = acc[rb + r][j];
    __syncthreads();
    for (int r = rb; r < rb + kRedRows && r < rows; ++r) {
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kGemvWarps; ++w) sum += red[w][r - rb][threadIdx.x];
      if (col < p.n) {
        if (partial)
          partial[(int64_t(blockIdx.y) * p.m + r0 + r) * p.n + col] = sum;
        else
          StoreOut<T>(p, r0 + r, col, sum);
      }
    }
  }
}

// Y = the sum of the `splits` partial results (in split order), rounded once.
template <typename T>
__global__ void __launch_bounds__(256) MatmulInt8CombineKernel(MatmulInt8Params p, const float* partial, int splits) {
  const int64_t total = p.m * p.n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += partial[s * total + e];
    StoreOut<T>(p, e / p.n, e % p.n, sum);
  }
}

// ---------------------------------------------------------------- decode regime (M <= 16)
// Roles exchanged (weights = mma's A operand, 16 columns x 16 k; tokens = its B operand, 8 per n8
// tile), so M <= 8 wastes no tensor-core work. Lane (g, t) of a warp owns the 16 columns
// [16 g, 16 g + 16) of its block's 128 and, of each 32-row step, the 8 weight rows [8 t, 8 t + 8):
// eight 16-byte streaming loads (8 lanes read 128 contiguous bytes of a row), and the same 8 k of
// each token (one 16-byte load through L1: A is small and every block reads it).
// Column 16 g + 2 j + h is row g + 8 h of m16 tile j (j = 0..7). Rows 8 t + 4 u + {0, 1} and
// + {2, 3} are mma's k {2 t, 2 t + 1} and {2 t + 8, 2 t + 9} in half u of the step (the k order
// inside one mma is free as long as A and B agree): a token's 16-byte load is its B fragments,
// {x, y} for half 0 and {z, w} for half 1.
// A weight pair (rows r, r + 1 of one column) is one PRMT of the two row words, one LOP3 (mask,
// f16 exponent 0x64, sign flip) and one HSUB2: exact integers in T; then (b - zp) * scale in T as
// the other kernels round (scales and zero points of a group: the 8 rows of a lane share one when
// group_size % 8 == 0). Warps of a block take the slice's steps in turn; their sums meet in shared
// memory, the slices' (cluster CTAs on sm_90) in slice 0's through distributed shared memory, in a
// fixed order: deterministic.
constexpr int kDecCols = 128, kDecStep = 32, kDecMaxSplits = 8;

// How the integers become weights: w = b (QkvProjectInt8's f32 scale comes after the sum), b * s, (b - zp) * s.
enum DecScaling : int { kDecRaw = 0, kDecScaled = 1, kDecScaledZp = 2 };

using Int8Batch = SegmentBatch<MatmulInt8Params>;

// Byte B of w0 (low half) and of w1 (high half) as two exact integers in T.
template <typename T, int B>
__device__ __forceinline__ uint32_t RowPair(uint32_t w0, uint32_t w1) {
  if constexpr (std::is_same<T, __half>::value) {
    // 0x64 | (b ^ 0x80) = 1024 + b + 128; minus 1152 = b.
    const uint32_t x = __byte_perm(w0, w1, B | ((B + 4) << 8));
    return Sub2<T>(AndXor(x, 0x00FF00FFu, 0x64806480u), 0x64806480u);
  } else {  // bf16 holds 8 significant bits: through f32 (2^23 + b + 128, exact), one packing cvt
    const float f0 = __uint_as_float(__byte_perm(w0 ^ 0x80808080u, 0x4B000000u, 0x7540 | B)) - 8388736.f;
    const float f1 = __uint_as_float(__byte_perm(w1 ^ 0x80808080u, 0x4B000000u, 0x7540 | B)) - 8388736.f;
    __nv_bfloat162 h = __floats2bfloat162_rn(f0, f1);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// One lane's share of a step: 8 weight rows x 16 columns, its columns' scales / zero points, and
// its tokens' 8 k (loaded with the weights: an L2 round trip per step otherwise).
template <int NT8>
struct DecStep {
  uint4 w[8];
  uint4 s[2], z[2];
  uint4 x[NT8];
};

template <int NT8, int kMode>
__device__ __forceinline__ void DecLoad(const MatmulInt8Params& p, int64_t col, int step, int step_end, int g,
                                        int t, DecStep<NT8>* st) {
  const int64_t k = int64_t(step) * kDecStep + 8 * t;
  const bool ok = step < step_end && k < p.k && col < p.n;  // K % 8 == 0: all 8 rows or none
  const uint32_t* b = reinterpret_cast<const uint32_t*>(p.b + k * p.n + col);
#pragma unroll
  for (int r = 0; r < 8; ++r) st->w[r] = ok ? LoadStream(b + r * (p.n >> 2)) : make_uint4(0, 0, 0, 0);
  const bool k_ok = step < step_end && k < p.k;
#pragma unroll
  for (int nt = 0; nt < NT8; ++nt) {
    const int tok = 8 * nt + g;
    st->x[nt] = k_ok && tok < p.m
                    ? __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.a) + tok * p.k + k))
                    : make_uint4(0, 0, 0, 0);
  }
  if constexpr (kMode != kDecRaw) {
    const int64_t gi = (p.group_size > 0 ? k / p.group_size : 0) * p.n + col;
    const uint4* s = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.scales) + gi);
    st->s[0] = ok ? __ldg(s) : make_uint4(0, 0, 0, 0);
    st->s[1] = ok ? __ldg(s + 1) : make_uint4(0, 0, 0, 0);
    if constexpr (kMode == kDecScaledZp) {
      const uint4* z = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.zero_points) + gi);
      st->z[0] = ok ? __ldg(z) : make_uint4(0, 0, 0, 0);
      st->z[1] = ok ? __ldg(z + 1) : make_uint4(0, 0, 0, 0);
    }
  }
}

template <typename T, int NT8, int kMode>
__device__ __forceinline__ void DecCompute(const DecStep<NT8>& st, float (&acc)[8][NT8][4]) {
  const uint4* x = st.x;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    // Scale / zero point of columns 2 j (even) and 2 j + 1 (odd), each in both halves.
    uint32_t se = 0, so = 0, ze = 0, zo = 0;
    if constexpr (kMode != kDecRaw) {
      const uint32_t sw = Comp(st.s[j >> 2], j & 3);
      se = __byte_perm(sw, 0, 0x1010), so = __byte_perm(sw, 0, 0x3232);
      if constexpr (kMode == kDecScaledZp) {
        const uint32_t zw = Comp(st.z[j >> 2], j & 3);
        ze = __byte_perm(zw, 0, 0x1010), zo = __byte_perm(zw, 0, 0x3232);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const uint32_t w0 = Comp(st.w[4 * u], j >> 1), w1 = Comp(st.w[4 * u + 1], j >> 1);
      const uint32_t w2 = Comp(st.w[4 * u + 2], j >> 1), w3 = Comp(st.w[4 * u + 3], j >> 1);
      uint32_t a[4];  // bytes 2 (j & 1) (column 2 j) and 2 (j & 1) + 1 (column 2 j + 1) of the words
      if (j & 1) {
        a[0] = RowPair<T, 2>(w0, w1), a[1] = RowPair<T, 3>(w0, w1);
        a[2] = RowPair<T, 2>(w2, w3), a[3] = RowPair<T, 3>(w2, w3);
      } else {
        a[0] = RowPair<T, 0>(w0, w1), a[1] = RowPair<T, 1>(w0, w1);
        a[2] = RowPair<T, 0>(w2, w3), a[3] = RowPair<T, 1>(w2, w3);
      }
      if constexpr (kMode == kDecScaledZp) {
        a[0] = Sub2<T>(a[0], ze), a[1] = Sub2<T>(a[1], zo), a[2] = Sub2<T>(a[2], ze), a[3] = Sub2<T>(a[3], zo);
      }
      if constexpr (kMode != kDecRaw) {
        a[0] = Mul2<T>(a[0], se), a[1] = Mul2<T>(a[1], so), a[2] = Mul2<T>(a[2], se), a[3] = Mul2<T>(a[3], so);
      }
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt)
        Mma<T>(acc[j][nt], a[0], a[1], a[2], a[3], u ? x[nt].z : x[nt].x, u ? x[nt].w : x[nt].y);
    }
  }
}

// Registers: NT8 = 1 fits 3 blocks of 4 warps per SM (168 a thread), NT8 = 2 two (255): at 4 / 3
// blocks ptxas spilled (up to 72 / 248 bytes with scales). 12 warps keep ~96 KB of weights in flight per SM.
// W = 8 (NT8 = 1 only): 2 blocks of 8 warps per SM at 128 registers (ptxas spills 12 bytes without
// scales, 120 with): 16 warps, ~128 KB in flight per SM.
// W = 16 (NT8 = 1, unsplit): one block per SM, its warps taking the 32-row steps in turn.
template <int NT8, int W>
constexpr int DecMinBlocks() { return W == 16 ? 1 : W == 8 ? 2 : NT8 == 1 ? 3 : 2; }

// Grid: x = the batch's 128-column blocks, y = `splits` K slices; launched as clusters of 1 x splits
// (splits > 1 only on sm_90, where the cluster's CTAs are the slices of one column block).
// W warps a block (4, 8 or 16) take the slice's 32-row steps in turn.
template <typename T, int NT8, int kMode, int W>
__global__ void __launch_bounds__(32 * W, DecMinBlocks<NT8, W>()) MatmulInt8DecodeKernel(Int8Batch bt, int splits) {
  constexpr int kAcc = 8 * NT8 * 4, kDecWarps = W, kDecThreads = 32 * W;
  int64_t blk;
  const MatmulInt8Params p = SegmentOf(bt, &blk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t col = blk * kDecCols + 16 * g;
  const int steps = int((p.k + kDecStep - 1) / kDecStep);
  const int slice = int(blockIdx.y);
  const int s_begin = int(int64_t(steps) * slice / splits), s_end = int(int64_t(steps) * (slice + 1) / splits);

  float acc[8][NT8][4] = {};
  // Two steps per lane in registers: the next one's loads go out before this one's math.
  DecStep<NT8> cur, nxt;
  int s = s_begin + warp;
  DecLoad<NT8, kMode>(p, col, s, s_end, g, t, &cur);
  for (; s < s_end; s += 2 * kDecWarps) {
    DecLoad<NT8, kMode>(p, col, s + kDecWarps, s_end, g, t, &nxt);
    DecCompute<T, NT8, kMode>(cur, acc);
    if (s + kDecWarps >= s_end) break;
    DecLoad<NT8, kMode>(p, col, s + 2 * kDecWarps, s_end, g, t, &cur);
    DecCompute<T, NT8, kMode>(nxt, acc);
  }

  // The warps' partial sums, then the slices' (fixed order both: deterministic). Past 8 warps, warp
  // w + 8 adds its sums to warp w's first (red holds 8 warps: 32 KB).
  constexpr int kRedWarps = kDecWarps < 8 ? kDecWarps : 8;
  __shared__ float red[kRedWarps][kAcc][32];
  __shared__ __align__(16) float slice_sum[kAcc * 32];
#pragma unroll
  for (int half = 0; half < kDecWarps / kRedWarps; ++half) {
    if (warp / kRedWarps == half)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            float& cell = red[warp % kRedWarps][(j * NT8 + nt) * 4 + r][lane];
            cell = half == 0 ? acc[j][nt][r] : cell + acc[j][nt][r];
          }
    __syncthreads();
  }
  for (int e = tid; e < kAcc * 32; e += kDecThreads) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kRedWarps; ++w) sum += red[w][e >> 5][e & 31];
    slice_sum[e] = sum;
  }
  if (splits > 1) ClusterSliceSum(slice_sum, kAcc * 32, splits, slice);  // slice 0 ends with every slice's sums
  if (slice != 0) return;
  __syncthreads();
  const int64_t n0 = blk * kDecCols;
  for (int e = tid; e < kAcc * 32; e += kDecThreads) {
    const int ln = e & 31, idx = e >> 5, r = idx & 3, nt = (idx >> 2) % NT8, j = (idx >> 2) / NT8;
    const int64_t c = n0 + 16 * (ln >> 2) + 2 * j + (r >> 1);
    const int64_t row = 8 * nt + 2 * (ln & 3) + (r & 1);
    if (row < p.m && c < p.n) StoreOut<T>(p, row, c, slice_sum[e]);
  }
}

}  // namespace int8mm
}  // namespace kaio
