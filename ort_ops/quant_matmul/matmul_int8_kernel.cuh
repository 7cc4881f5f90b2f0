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
// One launch for up to three projections of the same A (QkvProjectInt8; MatmulInt8 is a batch of
// one): the projections are column segments (Int8Batch) and block x of the grid works on the segment
// its column block belongs to. The batch is a __grid_constant__ kernel parameter, so a block reads
// its segment's fields from parameter space with a run-time index (no local-memory copy); the plans
// (K split, combine) are made for the column blocks of all segments together, so narrow projections
// fill the GPU together. Each output element is computed as a single projection computes it with
// the same K slices (same weights, same f32 accumulation order, one rounding).
//
// GEMV regime (small M, MatmulInt8GemvKernel): a block owns 256 columns of one segment (lane l:
// columns 8l..8l+7, one 8-byte load of a weight row, 256 contiguous bytes per warp), a K slice and up
// to 8 rows of A; its 8 warps take chunks of 8 weight rows in turn (8 row loads in flight per lane,
// one scale load per chunk), dequantise each weight once for all rows. Where the column blocks alone
// do not fill the GPU, K is split over blocks (grid.y): each writes float partial sums for its slice
// and MatmulInt8CombineKernel adds them in a fixed order (deterministic) and rounds once, for every
// segment in one launch.
//
// GEMM regime (larger M): the tensor-core MatmulTc kernel (matmul_tc_kernel.cuh) with
// Int8BatchSource as its B operand (each 8-column row segment dequantised on its way to shared
// memory; the block's segment gives its columns, Y and partial sums), K split over blocks the same
// way where its 128 x 128 tiles (of all segments) do not fill the GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

#include "common/elem.cuh"
#include "matmul_tc/matmul_tc_kernel.cuh"
#include "quant_matmul/quant_matmul_params.h"
#include "quant_matmul/segments.cuh"

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

// The projections of one launch (MatmulInt8: one; QkvProjectInt8: three). first_block: each one's
// first column block along grid.x (blocks of the regime's width); first_elem: m * (the columns
// before it). The partial sums of split K are segment-major: segment s's splits x m x n floats
// start at splits * first_elem[s], each split's m x n as a single projection lays them out.
struct Int8Batch {
  MatmulInt8Params seg[kMaxInt8Segments];
  int64_t first_block[kMaxInt8Segments];
  int64_t first_elem[kMaxInt8Segments];
  int64_t elems;  // m * (all segments' columns)
  int count;
};

// This block's segment (by blockIdx.x), its column block inside it and its partial sums' base. bt
// must be a __grid_constant__ kernel parameter: the run-time index then reads parameter space.
__device__ __forceinline__ const MatmulInt8Params& BlockSegment(const Int8Batch& bt, int64_t splits, int64_t* block,
                                                                int64_t* partial_offset) {
  const int64_t bx = blockIdx.x;
  const int s = SegmentIndex(bt.first_block, bt.count, bx);
  *block = bx - bt.first_block[s];
  *partial_offset = splits * bt.first_elem[s];
  return bt.seg[s];
}

// Segment s's parameters as a value: the shared fields from segment 0, its own ones picked with
// constant indices (as the INT4 kernels do), for MatmulTcSyncKernel, whose B source is a plain
// kernel parameter (no __grid_constant__ there: the dense instantiations stay as they are), so a
// run-time index into it would copy it to local memory.
__device__ __forceinline__ MatmulInt8Params SegmentParams(const Int8Batch& bt, int s) {
  MatmulInt8Params p = bt.seg[0];
  p.b = Pick(s, bt.seg[0].b, bt.seg[1].b, bt.seg[2].b);
  p.scales = Pick(s, bt.seg[0].scales, bt.seg[1].scales, bt.seg[2].scales);
  p.zero_points = Pick(s, bt.seg[0].zero_points, bt.seg[1].zero_points, bt.seg[2].zero_points);
  p.y = Pick(s, bt.seg[0].y, bt.seg[1].y, bt.seg[2].y);
  p.n = Pick(s, bt.seg[0].n, bt.seg[1].n, bt.seg[2].n);
  return p;  // (out_scale and bias: applied by the combine pass, not by the tensor-core kernel)
}

// The B operand of MatmulTcSyncKernel for one segment: row-major [K, N] segments dequantised from
// int8; its output p.y, its partial sums at partial_offset in the launch's buffer.
struct Int8Source {
  MatmulInt8Params p;
  int64_t partial_offset;
  template <typename T, bool kVec>
  __device__ __forceinline__ uint4 Load(const T*, int64_t row, int64_t col, int64_t, int64_t) const {
    return WeightSegment<T, kVec>(p, row, col);
  }
  __device__ __forceinline__ void* Y(const MatmulTcParams&) const { return p.y; }
  __device__ __forceinline__ float* Partial(const MatmulTcParams& tp) const { return tp.partial + partial_offset; }
};

// The B source of a batch: block x of the grid reads (and writes the columns of) the segment its
// 128-column block belongs to (first_block in 128-column blocks); the launch's MatmulTcParams hold
// only what the segments share (a, m, k, the types, the partial buffer and its split count).
struct Int8BatchSource {
  Int8Batch bt;
  __device__ __forceinline__ Int8Source Block(const MatmulTcParams& tp, matmul_tc::BlockCols* c) const {
    const int64_t bx = blockIdx.x;
    const int s = SegmentIndex(bt.first_block, bt.count, bx);
    const MatmulInt8Params p = SegmentParams(bt, s);
    const int64_t blk = bx - Pick(s, int64_t(0), bt.first_block[1], bt.first_block[2]);
    *c = {blk * matmul_tc::kBlockN, p.n};
    return Int8Source{p, tp.k_split * Pick(s, int64_t(0), bt.first_elem[1], bt.first_elem[2])};
  }
};

template <typename T>
__device__ __forceinline__ float2 ToFloat2(uint32_t v) {
  return make_float2(ToFloat<T>(uint16_t(v & 0xFFFF)), ToFloat<T>(uint16_t(v >> 16)));
}

template <typename T>
__device__ __forceinline__ void StoreOut(const MatmulInt8Params& p, int64_t row, int64_t col, float v) {
  if (p.out_scale) v *= p.out_scale[p.out_scale_per_channel ? col : 0];
  if (p.bias) v += ToFloat<T>(__ldg(static_cast<const uint16_t*>(p.bias) + col));
  StoreElem<T>(p.y, row * p.n + col, v, p.out_f32);
}

// ---------------------------------------------------------------- GEMV regime
// Rows [MR z, MR z + MR) of A for grid.z = z (M up to kGemvMaxM in row blocks of MR).
constexpr int kGemvWarps = 8, kGemvThreads = kGemvWarps * 32, kGemvCols = 256, kGemvRows = 8;

// Block x of the grid: column block x of the batch's (first_block in 256-column blocks).
template <typename T, int MR, bool kVec>
__global__ void __launch_bounds__(kGemvThreads)
    MatmulInt8GemvKernel(const __grid_constant__ Int8Batch bt, float* partial, int64_t slice) {
  constexpr int kRedRows = MR < 4 ? MR : 4;  // rows reduced per round (32 KB of shared memory)
  __shared__ float red[kGemvWarps][kRedRows][kGemvCols];
  int64_t blk, partial_offset;
  const MatmulInt8Params& p = BlockSegment(bt, gridDim.y, &blk, &partial_offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = blk * kGemvCols, n = n0 + 8 * lane;
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
          partial[partial_offset + (int64_t(blockIdx.y) * p.m + r0 + r) * p.n + col] = sum;
        else
          StoreOut<T>(p, r0 + r, col, sum);
      }
    }
  }
}

// Every segment's Y = the sum of its `splits` partial results (in split order), rounded once. The
// threads run over the segments' elements in turn (element e of the batch: m * n elements a segment).
template <typename T>
__global__ void __launch_bounds__(256)
    MatmulInt8CombineKernel(const __grid_constant__ Int8Batch bt, const float* partial, int splits) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < bt.elems;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int sg = SegmentIndex(bt.first_elem, bt.count, e);
    const MatmulInt8Params& p = bt.seg[sg];
    const int64_t first = bt.first_elem[sg], le = e - first;
    const int64_t total = p.m * p.n;
    const float* part = partial + splits * first;
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += part[s * total + le];
    StoreOut<T>(p, le / p.n, le % p.n, sum);
  }
}

}  // namespace int8mm
}  // namespace kaio
