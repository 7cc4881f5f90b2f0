// Launcher of the Hopper matmul (matmul_tc_wgmma_kernel.cuh): the tensor maps of A and B, built on
// the host for each run (they hold the operands' addresses; a few microseconds, and a CUDA graph
// captures them by value with the launch), and a persistent grid of one CTA per SM.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/sm90.cuh"
#include "common/stream_counters.h"
#include "common/tensor_map.h"
#include "matmul_tc/matmul_tc_wgmma_kernel.cuh"

namespace kaio {
namespace {

using matmul_wgmma::kBlockK;
using matmul_wgmma::kRowElems;

// A map over 16-bit (or int8) matrices in boxes of box_rows x one 128-byte swizzled row.
bool MakeMap(CUtensorMap* map, MatmulElem type, const void* base, int64_t rows, int64_t cols, int64_t count,
             int box_rows) {
  if (type == MatmulElem::kI8)
    return MakeTensorMap(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, base, rows, cols, count, box_rows,
                         matmul_wgmma::KTileOf<int8_t>(), CU_TENSOR_MAP_SWIZZLE_128B);
  return MakeTensorMap(map, type == MatmulElem::kF16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                       2, base, rows, cols, count, box_rows, kRowElems, CU_TENSOR_MAP_SWIZZLE_128B);
}

// How many matrices an operand holds: 1 + the largest batch offset over one matrix's elements.
int64_t OperandCount(const MatmulTcParams& p, const int64_t* stride, int64_t matrix_elems) {
  int64_t last = 0;
  for (int i = 0; i < p.batch_rank; ++i) last += (p.batch_dims[i] - 1) * stride[i];
  return last / matrix_elems + 1;
}

template <typename T, class BOp, int kConsumers, bool kTransA, int kCluster = 1, bool kTransposeY = false>
cudaError_t LaunchB(const MatmulTcParams& p, const CUtensorMap& map_a, const CUtensorMap& map_b, cudaStream_t stream) {
  BOp b_op;
  b_op.map = map_b;
  b_op.n = p.n;
  return matmul_wgmma::LaunchWgmma<T, BOp, kConsumers, kTransA, kCluster, kTransposeY>(p, map_a, b_op, stream);
}
template <typename T, bool kTransB, int kConsumers, bool kTransA, int kCluster = 1, int kTileN = 128,
          bool kTransposeY = false>
cudaError_t Launch(const MatmulTcParams& p, const CUtensorMap& map_a, const CUtensorMap& map_b, cudaStream_t stream) {
  return LaunchB<T, matmul_wgmma::DenseB<kTransB, kTileN>, kConsumers, kTransA, kCluster, kTransposeY>(p, map_a, map_b,
                                                                                                      stream);
}

// Pairs of CTAs sharing A tiles (the kernel's kCluster = 2): off unless KAIO_WGMMA_CLUSTER=1; on the
// H200 they measured slower than single CTAs (wgmma_probe 4096^3: 0.202 vs 0.197 ms, at b099734).
bool PairsEnabled() { return EnvSwitch("KAIO_WGMMA_CLUSTER", false); }
// Wide 128 x 256 tiles (two consumers, wgmma m64n256) where 256-row tiles would fill the GPU: the
// same tile area, half the A and B fragment reads per product; KAIO_WGMMA_WIDE=0 keeps 256 x 128.
bool WideEnabled() { return EnvSwitch("KAIO_WGMMA_WIDE", true); }
// [K, N] B in large tiles as Y^T = B^T A^T: B becomes wgmma's MN-major A operand (64 columns of N a
// consumer) and A its K-major B operand, and the epilogue stores the tile transposed. wgmma reads an
// MN-major B operand (the 128-256 columns of the unswapped kernel) 8-17 % slower than a K-major one,
// an MN-major A at the K-major rate (H200, wgmma_probe, 4096^3: 695 [K, N] B, 800 [N, K] B, 783
// swapped; bench/results/2026-11-29_wgmma_swap_probes_h200.md). Its epilogue goes through shared
// memory (the transpose), which costs more than the faster main loop saves where K is short:
// from kSwapMinK on by default. KAIO_WGMMA_SWAP=0 / 1 forces either (A/B runs).
constexpr int64_t kSwapMinK = 2048;
bool SwapOperands(const MatmulTcParams& p) { return EnvSwitch("KAIO_WGMMA_SWAP", p.k >= kSwapMinK); }
// Skinny 64 x 128 tiles (one consumer, an 8-stage ring) for M <= 64: no wgmma rows past M beyond the
// first 64, twice the B bytes in flight per SM; KAIO_WGMMA_SKINNY=0 keeps 128 x 128.
bool SkinnyEnabled() { return EnvSwitch("KAIO_WGMMA_SKINNY", true); }
// Decode tiles (DecodeB) for M <= 16 with [K, N] B: skinny tiles whose stages load 16 A rows, so 12
// stages fit instead of 8. wgmma_probe (H200, two calls): 1.5-4 % faster with [K, N] B at 1 / 16 x
// 4096 x 4096, 16 x 14336 x 4096 and 16 x 4096 x 14336; with [N, K] B from 1 % faster to 2 % slower,
// so not there. KAIO_WGMMA_DECODE=0 keeps the skinny tiles (side-by-side runs).
using DecodeTileB = matmul_wgmma::DecodeB<false>;
bool DecodeEnabled() { return EnvSwitch("KAIO_WGMMA_DECODE", true); }
// The epilogue's quad-transposed 16-byte stores where they measured faster: wide tiles writing
// 16-bit Y (wgmma_probe, H200, bench/results/gpu_checks_4759fb0f.md: 4096^3 0.187 vs 0.206 ms,
// 8192^3 1.462 vs 1.502). With f32 Y they were even (0.197 vs 0.200), with 128 x 128 tiles and short
// K slower (2048x2048x256 0.018 vs 0.014 ms), with 256 x 128 tiles too (0.223 vs 0.197 at 4096^3):
// there each lane stores its column pairs. KAIO_WGMMA_QUAD_STORES=0 / 1 forces either, for A/B runs.
bool QuadStores(bool wide, const MatmulTcParams& p) {
  const bool out16 = !p.partial && p.out_type != MatmulElem::kF32;
  return EnvSwitch("KAIO_WGMMA_QUAD_STORES", wide && out16);
}

// 256-row tiles in pairs side by side, each CTA loading half of the shared A tile (box of 128 rows).
template <typename T>
cudaError_t LaunchPairs(const MatmulTcParams& p, int64_t a_count, const CUtensorMap& map_b, cudaStream_t stream) {
  CUtensorMap map_half_a;
  if (!MakeMap(&map_half_a, p.in_type, p.a, p.m, p.k, a_count, 128)) return cudaErrorNotSupported;
  return p.trans_b ? Launch<T, true, 4, false, 2>(p, map_half_a, map_b, stream)
                   : Launch<T, false, 4, false, 2>(p, map_half_a, map_b, stream);
}

// The tile shape: large (256 x 128 or 128 x 256) where such tiles still give every SM one; skinny
// (64 x 128) for M <= 64 (decode tiles for M <= 16 with [K, N] B); else 128 x 128 (more, smaller
// tiles). Narrow (64 x 64) tiles are the K-sliced skinny products' first try (RunMatmulTcWgmma).
enum class Tiles { kDecode, kNarrow, kSkinny, kSmall, kTall, kWide };
int64_t TileColumns(const MatmulTcParams& p) { return (p.n + matmul_wgmma::kBlockN - 1) / matmul_wgmma::kBlockN; }
bool LargeTiles(const MatmulTcParams& p) { return p.batch_count * ((p.m + 255) / 256) * TileColumns(p) >= p.sm_count; }
// pairs: CTA pairs, which run tall tiles. Int8 (W8A8) has no tall instance: large tiles are wide or none.
Tiles PickTiles(const MatmulTcParams& p, bool pairs) {
  const bool large = LargeTiles(p);
  if (large && (pairs || (p.in_type != MatmulElem::kI8 && !WideEnabled()))) return Tiles::kTall;
  if (large && WideEnabled()) return Tiles::kWide;
  if (p.m > 64 || !SkinnyEnabled()) return Tiles::kSmall;
  const bool decode = p.m <= DecodeTileB::kARows && !p.trans_a && !p.trans_b && p.in_type != MatmulElem::kI8;
  return decode && DecodeEnabled() ? Tiles::kDecode : Tiles::kSkinny;
}
// The rows of A's boxes (a block's rows; K-major A) and of [N, K] B's (a block's columns).
int ABoxRows(Tiles t) {
  switch (t) {
    case Tiles::kTall: return 256;
    case Tiles::kDecode: return DecodeTileB::kARows;
    case Tiles::kNarrow:
    case Tiles::kSkinny: return 64;
    default: return 128;
  }
}
int BBoxRows(Tiles t) { return t == Tiles::kWide ? 256 : t == Tiles::kNarrow ? 64 : 128; }

// The operands' tensor maps for `tiles`. A: boxes of the tile's rows x 64 k, or (trans_a, A is K x M)
// 64 k rows x 64 m per consumer; B: [N, K] boxes of the tile's columns, [K, N] boxes of 64 k x 64 n.
struct OperandMaps {
  CUtensorMap a, b;
};
bool MakeOperandMaps(OperandMaps* maps, const MatmulTcParams& p, Tiles tiles, int64_t a_count, int64_t b_count) {
  const bool ok = p.trans_a ? MakeMap(&maps->a, p.in_type, p.a, p.k, p.m, a_count, kBlockK)
                            : MakeMap(&maps->a, p.in_type, p.a, p.m, p.k, a_count, ABoxRows(tiles));
  return ok && (p.trans_b ? MakeMap(&maps->b, p.in_type, p.b, p.n, p.k, b_count, BBoxRows(tiles))
                          : MakeMap(&maps->b, p.in_type, p.b, p.k, p.n, b_count, kBlockK));
}

template <typename T, bool kTransB, bool kTransA = false>
cudaError_t LaunchTiles(const MatmulTcParams& p, const OperandMaps& maps, cudaStream_t stream, Tiles tiles) {
  const CUtensorMap &map_a = maps.a, &map_b = maps.b;
  switch (tiles) {
    case Tiles::kTall: return Launch<T, kTransB, 4, kTransA>(p, map_a, map_b, stream);
    case Tiles::kWide: return Launch<T, kTransB, 2, kTransA, 1, 256>(p, map_a, map_b, stream);
    case Tiles::kSkinny: return Launch<T, kTransB, 1, kTransA>(p, map_a, map_b, stream);
    case Tiles::kDecode:
      if constexpr (!kTransA && !kTransB) return LaunchB<T, DecodeTileB, 1, false>(p, map_a, map_b, stream);
      return cudaErrorNotSupported;  // (PickTiles: [K, N] B only)
    case Tiles::kNarrow:
      if constexpr (!kTransA) return Launch<T, kTransB, 1, false, 1, 64>(p, map_a, map_b, stream);
      return cudaErrorNotSupported;  // (never with trans_a)
    default: return Launch<T, kTransB, 2, kTransA>(p, map_a, map_b, stream);
  }
}

// K slices of skinny tiles as thread-block clusters summed in slice 0's CTA (the kernel's
// p.slice_cluster) instead of the partial buffer and the combine kernel, where all the clusters fit
// at once. One launch instead of two (a CUDA graph of the op: 7x2056x1032 10 vs 12 us, wgmma_probe,
// ..._slice_clusters_fit_4a87cadf.md), the same device time (through ORT: 9.12 vs 9.15 us,
// bench/results/2026-11-27_hopper_regimes_summary_5e474f59.md). KAIO_WGMMA_SLICE_CLUSTER=0: the
// partial buffer always (side-by-side runs).
bool SliceClustersEnabled() { return EnvSwitch("KAIO_WGMMA_SLICE_CLUSTER", true); }

// K slices through the partial buffer summed by the CTA that finishes a tile's last slice
// (p.tile_counters, the stream's counters) instead of the combine kernel: one launch, Y bit for bit
// the same. KAIO_WGMMA_TILE_COUNTERS=0: the combine kernel (side-by-side runs).
bool TileCountersEnabled() { return EnvSwitch("KAIO_WGMMA_TILE_COUNTERS", true); }

// Narrow 64 x 64 tiles for K-sliced skinny products: twice the tiles of 64 x 128 ones, so the same
// CTAs take half the slices, and their clusters fit where those of the wider tiles do not. Slices:
// the op's k_split, at most the SMs a tile (1: unsplit). Taken only where that gives more CTAs than
// the 64 x 128 tiles' (the op's slices capped by K, not by the SMs): at the same CTA count the
// narrow tiles stream B slower (16x4096x4096, 128 CTAs: 18.1 vs 15.7 us; 7x2056x1032, 66 instead of
// 34 CTAs: 7.3 vs 8.1 us; wgmma_probe, H200); 0 where not. KAIO_WGMMA_NARROW=0: never.
bool NarrowEnabled() { return EnvSwitch("KAIO_WGMMA_NARROW", true); }
int64_t NarrowSlices(const MatmulTcParams& p) {
  const int64_t tiles = (p.n + 63) / 64, slices = std::min<int64_t>(p.k_split, std::max<int64_t>(1, p.sm_count / tiles));
  return NarrowEnabled() && tiles * slices > TileColumns(p) * p.k_split ? slices : 0;
}

// Y = A B with B [K, N] in wide tiles, run as the transposed product (SwapOperands): p' = (B as the
// K x N' "trans_a" A, A as the N' x K "trans_b" B), N' = M, so the kernel's 128 x 256 tiles cover
// 256 rows x 128 columns of Y. a_count / b_count: the matrices A and B hold.
template <typename T>
cudaError_t LaunchSwapped(const MatmulTcParams& p, int64_t a_count, int64_t b_count, cudaStream_t stream) {
  MatmulTcParams s = p;
  s.a = p.b, s.b = p.a;
  s.m = p.n, s.n = p.m;
  s.trans_a = s.trans_b = true;  // (the kernel's kTransposeY epilogue ignores quad_stores)
  for (int i = 0; i < p.batch_rank; ++i) s.a_batch_stride[i] = p.b_batch_stride[i], s.b_batch_stride[i] = p.a_batch_stride[i];
  CUtensorMap map_a, map_b;
  if (!MakeMap(&map_a, s.in_type, s.a, s.k, s.m, b_count, kBlockK) ||
      !MakeMap(&map_b, s.in_type, s.b, s.n, s.k, a_count, BBoxRows(Tiles::kWide)))
    return cudaErrorNotSupported;
  return Launch<T, true, 2, true, 1, 256, true>(s, map_a, map_b, stream);
}

}  // namespace

cudaError_t RunMatmulTcWgmma(const MatmulTcParams& params, cudaStream_t stream) {
  MatmulTcParams p = params;
  using matmul_wgmma::kTmaCoordMax;
  const int64_t a_count = OperandCount(p, p.a_batch_stride, p.m * p.k);
  const int64_t b_count = OperandCount(p, p.b_batch_stride, p.k * p.n);
  // TMA's 16-byte strides and bases: A's rows (K, or M with trans_a) and B's rows hold multiples of
  // 8 elements; N % 8 == 0 also lets the epilogue store column pairs.
  if (p.in_type == MatmulElem::kI8 || !matmul_wgmma::WgmmaRuns(p.sm, p.sm_count, p.m, p.n, p.k) || (p.trans_a ? p.m : p.k) % 8 != 0 ||
      (p.trans_b && p.k % 8 != 0) || p.n % 8 != 0 || (p.trans_a && p.trans_b) || !Aligned16(p.a) ||
      !Aligned16(p.b) || a_count >= kTmaCoordMax || b_count >= kTmaCoordMax)
    return cudaErrorNotSupported;  // the caller takes the mma.sync kernel
  // Large tiles, at least two tile columns, no K slices: pairs of CTAs may read each A tile from L2 once.
  const bool pairs = LargeTiles(p) && !p.trans_a && !p.partial && TileColumns(p) >= 2 && PairsEnabled();
  const Tiles tiles = PickTiles(p, pairs);
  if (tiles == Tiles::kWide && !p.trans_a && !p.trans_b && !p.partial && SwapOperands(p))
    return p.in_type == MatmulElem::kF16 ? LaunchSwapped<__half>(p, a_count, b_count, stream)
                                         : LaunchSwapped<__nv_bfloat16>(p, a_count, b_count, stream);
  p.quad_stores = QuadStores(tiles == Tiles::kWide, p);
  auto launch_tiles = [&](const MatmulTcParams& x, const OperandMaps& maps, Tiles t) {
    if (x.trans_a)
      return x.in_type == MatmulElem::kF16 ? LaunchTiles<__half, false, true>(x, maps, stream, t)
                                           : LaunchTiles<__nv_bfloat16, false, true>(x, maps, stream, t);
    if (x.in_type == MatmulElem::kF16)
      return x.trans_b ? LaunchTiles<__half, true>(x, maps, stream, t) : LaunchTiles<__half, false>(x, maps, stream, t);
    return x.trans_b ? LaunchTiles<__nv_bfloat16, true>(x, maps, stream, t)
                     : LaunchTiles<__nv_bfloat16, false>(x, maps, stream, t);
  };
  // Skinny tiles with 2-8 K slices (8: the portable cluster size), one CTA each: the slices of a
  // tile as one cluster (no partial buffer, no combine kernel), first in narrow tiles where they add
  // CTAs; where no such cluster launches, the partial buffer below.
  const bool slice_clusters = (tiles == Tiles::kSkinny || tiles == Tiles::kDecode) && p.partial && !p.trans_a &&
                              p.batch_count == 1 && p.k_split >= 2 && p.k_split <= 8 && SliceClustersEnabled();
  if (const int64_t slices = slice_clusters ? NarrowSlices(p) : 0) {
    MatmulTcParams q = p;
    q.partial = nullptr;
    q.k_split = slices;
    q.slice_cluster = slices > 1;
    OperandMaps narrow;
    if (MakeOperandMaps(&narrow, q, Tiles::kNarrow, a_count, b_count)) {
      if (const cudaError_t e = launch_tiles(q, narrow, Tiles::kNarrow); e != cudaErrorNotSupported) return e;
    }
  }
  OperandMaps maps;
  if (!MakeOperandMaps(&maps, p, tiles, a_count, b_count)) return cudaErrorNotSupported;
  if (pairs) {
    const cudaError_t e = p.in_type == MatmulElem::kF16 ? LaunchPairs<__half>(p, a_count, maps.b, stream)
                                                        : LaunchPairs<__nv_bfloat16>(p, a_count, maps.b, stream);
    if (e != cudaErrorNotSupported) return e;  // else: no cluster fits; the single-CTA kernel below
  }
  if (slice_clusters) {
    MatmulTcParams q = p;
    q.partial = nullptr;
    q.slice_cluster = true;
    if (const cudaError_t e = launch_tiles(q, maps, tiles); e != cudaErrorNotSupported) return e;
  }
  const bool counted = tiles == Tiles::kSmall || tiles == Tiles::kSkinny || tiles == Tiles::kDecode;  // (the kernel's)
  if (int* counters = p.partial && counted && !pairs && Aligned16(p.y) && p.k_split * p.m * p.n < matmul_wgmma::kMaxPartialFloats &&
                          TileCountersEnabled()
                          ? StreamCounters(stream, ((p.m + 63) / 64) * ((p.n + 63) / 64))
                          : nullptr) {
    MatmulTcParams q = p;
    q.tile_counters = counters;
    return launch_tiles(q, maps, tiles);  // the last slice of each tile writes Y
  }
  const cudaError_t e = launch_tiles(p, maps, tiles);
  if (e != cudaSuccess || !p.partial) return e;
  return static_cast<cudaError_t>(RunMatmulTcCombine(p, stream));  // the slices' sums into Y
}

// MatmulInt8 W8A8's GEMM (in_type kI8): A int8 [M, K] and B int8 [N, K] (trans_b; the launcher's
// transpose of the [K, N] weights), one matrix each, s32 sums times *acc_scale into f32 or f16 Y. The
// tiles as the dense GEMM's, less tall tiles and pairs (three int8 kernels): wide 128 x 256 where
// they fill the GPU, skinny 64 x 128 for M <= 64, else 128 x 128; no K slices. Needs K % 16 == 0
// (TMA's 16-byte row strides), N % 8 == 0 (16-byte epilogue stores), 16-byte aligned A, B and Y.
cudaError_t RunMatmulS8Wgmma(const MatmulTcParams& p, cudaStream_t stream) {
  if (p.in_type != MatmulElem::kI8 || !p.trans_b || p.trans_a || p.batch_count != 1 || p.partial || !p.acc_scale ||
      !matmul_wgmma::WgmmaRuns(p.sm, p.sm_count, p.m, p.n, p.k) || p.k % 16 != 0 || p.n % 8 != 0 ||
      !Aligned16(p.a) || !Aligned16(p.b) || !Aligned16(p.y) ||
      (p.out_type != MatmulElem::kF32 && p.out_type != MatmulElem::kF16))
    return cudaErrorNotSupported;  // the caller takes the mma.sync kernel
  const Tiles tiles = PickTiles(p, false);
  CUtensorMap map_a, map_b;
  if (!MakeMap(&map_a, p.in_type, p.a, p.m, p.k, 1, ABoxRows(tiles)) ||
      !MakeMap(&map_b, p.in_type, p.b, p.n, p.k, 1, BBoxRows(tiles)))
    return cudaErrorNotSupported;
  switch (tiles) {
    case Tiles::kWide: return Launch<int8_t, true, 2, false, 1, 256>(p, map_a, map_b, stream);
    case Tiles::kSkinny: return Launch<int8_t, true, 1, false>(p, map_a, map_b, stream);
    default: return Launch<int8_t, true, 2, false>(p, map_a, map_b, stream);
  }
}

}  // namespace kaio
