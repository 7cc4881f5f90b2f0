// MatmulInt8's (W8A16) GEMM regime on Hopper (sm_90a): the wgmma kernel of matmul_tc_wgmma_kernel.cuh
// with B given as int8 [K, N]. Each ring stage holds a 64-k x 128-column tile of int8 weights and the
// scale (and zero-point) rows it needs; the consumer warpgroups dequantise it, (b - zp) * s in A's
// type as the mma.sync GEMM does (int8mm::DequantSegment), into a 64 x 128 tile in the layout TMA
// gives a dense [K, N] B (two 64-column halves, 128-byte swizzled rows: MN-major for wgmma), then
// multiply. Three dequantised tiles rotate, as in matmul_int4_wgmma.cuh (same argument).
#pragma once

#include <cuda.h>
#include <cstdint>

#include "common/sm90.cuh"
#include "matmul_tc/matmul_tc_wgmma_kernel.cuh"
#include "quant_matmul/quant_wgmma.cuh"
#include "quant_matmul/matmul_int8_kernel.cuh"

namespace kaio {
namespace matmul_wgmma {

template <typename T, bool kZp>
struct Int8B {
  CUtensorMap weights;      // int8 [K, N], boxes of 64 rows x 128 columns
  CUtensorMap scales;       // [K/g, N] (or [1, N]) in T, boxes of ScaleRows() rows x 128 columns
  CUtensorMap zero_points;  // as scales (kZp)
  int64_t group_size;       // 0 (per channel), 32, or a multiple of 64

  static constexpr int kWeightBytes = kBlockK * kBlockN;        // 8 KiB
  static constexpr int kScaleRowsMax = kBlockK / 32;
  static constexpr int kScaleBytes = kScaleRowsMax * kBlockN * 2;
  static constexpr int kStageBytes = kWeightBytes + (kZp ? 2 : 1) * kScaleBytes;
  static constexpr int kTileBytes = kBlockN * kBlockK * 2;
  static constexpr int kExtraBytes = 3 * kTileBytes;
  // Ring depth: five 25 KiB stages (A tile, weights, scales) beside the three dequantised tiles, one
  // more than dense B's stages allow. H200, wgmma_probe under ncu (cold caches), 4 K slices:
  // 128x4096x4096 17.4 vs 19.3 us at 4 stages, 128x4096x14336 42.2 vs 43.7; 7 stages 18.1 / 44.1.
  static constexpr int kRing = 5;
  static constexpr int kARows = 0;  // the block's (Block)
  // The epilogue's per-store loop, not its row-wise stores (the kernel's kRowStores: measured).
  static constexpr bool kRowStores = false;
  static constexpr int kWgmmaTransB = 1;                        // [K, N] tile: MN-major
  static constexpr int kTileN = kBlockN;

  __host__ __device__ int ScaleRows() const { return group_size == 32 ? 2 : 1; }
  __device__ __forceinline__ int ScaleRow(int k0) const { return group_size > 0 ? int(k0 / group_size) : 0; }
  __device__ __forceinline__ uint32_t Bytes(int) const {
    return kWeightBytes + (kZp ? 2 : 1) * ScaleRows() * kBlockN * 2;
  }
  __device__ __forceinline__ void Load(uint8_t* stage, uint64_t* bar, int k0, int n0, int) const {
    sm90::TmaLoad3d(stage, &weights, bar, n0, k0, 0);
    sm90::TmaLoad3d(stage + kWeightBytes, &scales, bar, n0, ScaleRow(k0), 0);
    if constexpr (kZp) sm90::TmaLoad3d(stage + kWeightBytes + kScaleBytes, &zero_points, bar, n0, ScaleRow(k0), 0);
  }

  // Consumer thread `tc` of kConsumerThreads dequantises 8-column segments into tile `step` % 3
  // and returns it once every consumer's part is written and visible to wgmma. Segment
  // i * kConsumerThreads + tc: a half-warp reads one k row's 128 bytes (no bank conflicts).
  template <int kConsumerThreads>
  __device__ __forceinline__ const uint8_t* Ready(const uint8_t* stage, uint8_t* extra, uint32_t step, int tc) const {
    constexpr int kSegs = kBlockK * (kBlockN / 8) / kConsumerThreads;  // 4 (2 warpgroups) or 2 (4)
    static_assert(kSegs * kConsumerThreads == kBlockK * (kBlockN / 8), "segments split evenly");
    uint8_t* tile = extra + (step % 3) * kTileBytes;
#pragma unroll
    for (int i = 0; i < kSegs; ++i) {
      const int seg = i * kConsumerThreads + tc, r = seg / (kBlockN / 8);
      const int c = 8 * (seg % (kBlockN / 8));  // first column of the segment
      const int srow = group_size == 32 ? r / 32 : 0;  // the scale row of k row r within the stage
      const uint16_t* s_row = reinterpret_cast<const uint16_t*>(stage + kWeightBytes) + srow * kBlockN;
      const uint2 b = *reinterpret_cast<const uint2*>(stage + r * kBlockN + c);
      const uint4 s = *reinterpret_cast<const uint4*>(s_row + c);
      const uint4 z = kZp ? *reinterpret_cast<const uint4*>(s_row + kScaleBytes / 2 + c) : make_uint4(0, 0, 0, 0);
      // Half c / 64 of the tile, row r, 16-byte chunk (c % 64) / 8 placed as TMA's 128-byte swizzle places it.
      *reinterpret_cast<uint4*>(tile + (c / kRowElems) * (kTileBytes / 2) + r * 128 +
                                ((((c % kRowElems) / 8) ^ (r & 7)) << 4)) = int8mm::DequantSegment<T>(b, s, z, kZp);
    }
    sm90::PublishToWgmma<kConsumerThreads>();
    return tile;
  }
  __device__ __forceinline__ uint64_t Desc(const uint8_t* tile, int kk) const {
    return sm90::DescSw128(tile + kk * 16 * 128, kTileBytes / 2, 1024);
  }
};

}  // namespace matmul_wgmma
}  // namespace kaio
