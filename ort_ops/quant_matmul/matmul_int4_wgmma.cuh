// MatmulInt4's GEMM regime on Hopper (sm_90a): the wgmma kernel of matmul_tc_wgmma_kernel.cuh with
// B given as KAIO's packed INT4 codes. Each ring stage holds a 128-column x 64-k tile of codes
// (B_packed [N, K/8]: 128 rows of 8 words) and the scale (and zero-point) rows it needs; the
// consumer warpgroups dequantise it, (q - zp) * s in A's type as the other GEMM kernels do
// (DequantPair), into a 128 x 64 tile in the 128-byte swizzled K-major layout wgmma reads, then
// multiply. Dequantising is ~1.4 instructions a weight: ~90 issue cycles of a 128 x 64 tile against
// ~512 cycles of the tile's wgmma at 128 rows, overlapped with the previous tile's wgmma.
// Three dequantised tiles rotate: while a warpgroup writes tile i, the other's wgmma may still read
// tiles i - 2 and i - 1, not i - 3 (the same buffer as i): it waited for that wgmma before reaching
// the barrier of tile i - 1, which this warpgroup has passed.
#pragma once

#include <cuda.h>
#include <cstdint>

#include "common/sm90.cuh"
#include "matmul_tc/matmul_tc_wgmma_kernel.cuh"
#include "quant_matmul/quant_wgmma.cuh"
#include "quant_matmul/matmul_int4_kernel.cuh"

namespace kaio {
namespace matmul_wgmma {

template <typename T, bool kZp>
struct Int4B {
  CUtensorMap codes;        // B_packed [N, K/8] uint32, boxes of 128 rows x 8 words
  CUtensorMap scales;       // [K/g, N] in T, boxes of kScaleRows rows x 128 columns
  CUtensorMap zero_points;  // as scales (kZp)
  int group_size;           // 32, 64 or 128

  static constexpr int kCodeBytes = kBlockN * (kBlockK / 8) * 4;  // 4 KiB
  static constexpr int kScaleRowsMax = kBlockK / 32;              // group 32: two rows a stage
  static constexpr int kScaleBytes = kScaleRowsMax * kBlockN * 2;
  static constexpr int kStageBytes = kCodeBytes + (kZp ? 2 : 1) * kScaleBytes;
  static constexpr int kTileBytes = kBlockN * kBlockK * 2;        // one dequantised tile
  static constexpr int kExtraBytes = 3 * kTileBytes;
  // Ring depth: six 21 KiB stages (A tile, codes, scales) beside the three dequantised tiles, two
  // more than dense B's 32 KiB stages allow. H200, wgmma_probe under ncu (cold caches), 4 K slices:
  // 128x4096x4096 17.3 vs 18.9 us at 4 stages, 128x4096x14336 39.8 vs 43.8; 8 stages 18.4 / 41.0.
  static constexpr int kRing = 6;
  static constexpr int kARows = 0;  // the block's (Block)
  // The epilogue's per-store loop, not its row-wise stores (the kernel's kRowStores: measured).
  static constexpr bool kRowStores = false;
  static constexpr int kWgmmaTransB = 0;                          // [N, K] tile: K-major
  static constexpr int kTileN = kBlockN;

  __host__ __device__ int ScaleRows() const { return group_size < kBlockK ? kBlockK / group_size : 1; }
  __device__ __forceinline__ uint32_t Bytes(int) const {
    return kCodeBytes + (kZp ? 2 : 1) * ScaleRows() * kBlockN * 2;
  }
  __device__ __forceinline__ void Load(uint8_t* stage, uint64_t* bar, int k0, int n0, int) const {
    sm90::TmaLoad3d(stage, &codes, bar, k0 / 8, n0, 0);
    sm90::TmaLoad3d(stage + kCodeBytes, &scales, bar, n0, k0 / group_size, 0);
    if constexpr (kZp) sm90::TmaLoad3d(stage + kCodeBytes + kScaleBytes, &zero_points, bar, n0, k0 / group_size, 0);
  }

  // Dequantises the stage's codes into dequantised tile `step` % 3 (consumer thread `tc` of
  // kConsumerThreads takes 1024 / kConsumerThreads consecutive words of one column) and returns it
  // once every consumer's part is written and visible to wgmma.
  template <int kConsumerThreads>
  __device__ __forceinline__ const uint8_t* Ready(const uint8_t* stage, uint8_t* extra, uint32_t step, int tc) const {
    constexpr int kWords = kBlockN * (kBlockK / 8) / kConsumerThreads;  // 4 (2 warpgroups) or 2 (4)
    static_assert(kWords == 2 || kWords == 4, "a thread's words lie in one 32-k group");
    uint8_t* tile = extra + (step % 3) * kTileBytes;
    const int first = tc * kWords, n = first / 8, w0 = first % 8;
    uint32_t words[kWords];
    if constexpr (kWords == 4) {
      const uint4 v = *reinterpret_cast<const uint4*>(stage + n * 32 + w0 * 4);
      words[0] = v.x, words[1] = v.y, words[2] = v.z, words[3] = v.w;
    } else {
      const uint2 v = *reinterpret_cast<const uint2*>(stage + n * 32 + w0 * 4);
      words[0] = v.x, words[1] = v.y;
    }
    const int srow = group_size < kBlockK ? w0 * 8 / group_size : 0;  // the scale row of these k
    const uint16_t* s_row = reinterpret_cast<const uint16_t*>(stage + kCodeBytes) + srow * kBlockN;
    const uint32_t s2 = Bcast(s_row[n]);
    uint32_t z2 = 0;
    if constexpr (kZp) z2 = Bcast((s_row + kScaleBytes / 2)[n]);
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      const uint32_t w = words[i], w4 = w >> 4;
      uint4 out;
      out.x = int4mm::DequantPair<T, kZp, 0>(w, w4, s2, z2);
      out.y = int4mm::DequantPair<T, kZp, 1>(w, w4, s2, z2);
      out.z = int4mm::DequantPair<T, kZp, 2>(w, w4, s2, z2);
      out.w = int4mm::DequantPair<T, kZp, 3>(w, w4, s2, z2);
      // 16-byte chunk (w0 + i) of row n, placed as TMA's 128-byte swizzle places it.
      *reinterpret_cast<uint4*>(tile + n * 128 + (((w0 + i) ^ (n & 7)) << 4)) = out;
    }
    sm90::PublishToWgmma<kConsumerThreads>();
    return tile;
  }
  __device__ __forceinline__ uint64_t Desc(const uint8_t* tile, int kk) const {
    return sm90::DescSw128(tile + kk * 32, 16, 1024);
  }
};

}  // namespace matmul_wgmma
}  // namespace kaio
