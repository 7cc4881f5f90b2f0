// Tensor-core matmul for Hopper (sm_90a), the Async ops' path there and MatmulInt4's GEMM regime:
// TMA tile loads into a ring of shared-memory stages completing on mbarriers, wgmma by warpgroups,
// a persistent grid. What B is comes from a policy (BOp): DenseB here (f16 / bf16 tiles TMA writes
// where wgmma reads them), Int4B in quant_matmul/matmul_int4_wgmma.cuh (packed codes dequantised by
// the consumers into an f16 / bf16 tile first).
//
// Block: warpgroup 0 produces (one thread issues the TMA loads), kConsumers warpgroups (1, 2 or 4)
// consume: each multiplies 64 rows of the (64 kConsumers) x kTileN output tile with wgmma m64nNk16
// (N = kTileN: 128; DenseB's wide tiles 256, its narrow ones 64), f32 accumulators in registers, and
// stores them (the producer meanwhile loads the next tile's first stages). Stages of (64 kConsumers)
// x 64 (A) and 64 x kTileN (B), 128-byte swizzled as TMA writes them; kStages deep (one consumer: as
// many as fit in kSkinnyRingBytes). Tiles of 256 x 128 (four consumers) or 128 x 256 (two, wide)
// halve the operand traffic per output against 128 x 128; 128 x 128 keeps more CTAs busy when the
// output has few tiles; 64 x 128 (one consumer, skinny) serves M <= 64 without multiplying rows past
// M, and 64 x 64 (narrow) gives such products twice the tiles where they are K-sliced.
// Clusters (kCluster = 2, dense B): the two CTAs of a cluster take horizontally adjacent tiles (the
// same rows of A) and each loads half of the A tile, multicast into both CTAs' stages, so A crosses
// L2 once per pair: a stage's full barrier counts both halves, its empty barrier the consumers of
// both CTAs (a producer overwrites the peer's stage too). The CTAs run the same units in lockstep; a
// tile wholly past N (odd tile columns) still loads its A half and computes, but stores nothing.
// Split K (p.partial, batch_count 1): the persistent loop runs over (tile, K slice) units and each
// writes its f32 slice to partial[z]; the launcher's second kernel adds them. With p.slice_cluster
// (one consumer, one unit per CTA, clusters of k_split CTAs = the slices of one tile) slice 0's CTA
// adds the other slices' accumulators from their shared memory instead, in slice order, and writes
// Y itself: no partial buffer traffic, no second kernel.
// Element size (T): 16-bit (f16 / bf16, f32 accumulators) or int8 (MatmulInt8 W8A8: wgmma k32
// .s32.s8.s8, s32 accumulators, both operands K-major, so only K-major A and DenseB<true>). Every
// stage holds 128-byte swizzled rows, so the K tile is one row: 64 k for 16-bit, 128 k for int8
// (KTileOf<T>), and a tile's 4 wgmma k steps each move 32 bytes along the row either way. The int8
// epilogue converts the exact s32 sum s to Y = float(double(s) * double(*p.acc_scale)) (the CPU
// kernel's arithmetic: one f32 rounding, then float16's where Y is f16); no K slices (p.partial).
// Edges: TMA fills rows and columns past M, N, K with zeros (one 3-D tensor map per operand, the
// batch its third dim, so no tile reads another batch's rows); stores skip rows past M, columns
// past N. Needs K % 8 == 0 and N % 8 == 0 (TMA's 16-byte strides) and 16-byte aligned bases: the
// launcher (matmul_tc_sm90.cu) checks and otherwise leaves the shape to the mma.sync kernel.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "common/ptx.cuh"
#include "common/sm90.cuh"
#include "common/smem_opt_in.h"
#include "matmul_tc/matmul_tc_params.h"

namespace kaio {
namespace matmul_wgmma {

constexpr int kRowElems = 64;  // 16-bit elements in one 128-byte swizzled shared-memory row (a TMA box's width)
constexpr int kBlockN = 128, kBlockK = 64;  // kBlockN: the quantized policies' tile width (DenseB's is 128 or 256)
// The code below takes a K tile (A, [N, K] B) or a 64-column box of the N tile ([K, N] B) to be one
// swizzled row wide: 128-byte row strides, the n0 + 64 b boxes, the descriptors' offsets.
static_assert(kBlockK == kRowElems && kBlockN == 2 * kRowElems, "tiles are built from 128-byte swizzled rows");
// Elements of T in one 128-byte swizzled row: the kernel's K tile (64 for 16-bit types, 128 for int8).
template <typename T>
constexpr int KTileOf() {
  return 128 / static_cast<int>(sizeof(T));
}
template <typename T>
constexpr bool IsS8() {
  return std::is_same<T, int8_t>::value;
}
constexpr int kStages = 4;  // ring depth of 2- and 4-consumer blocks
constexpr int kBoxBBytes = kRowElems * kBlockK * 2;   // one 64-column box of a [K, N] B tile: 8 KiB
constexpr int kGroupM = 8;                             // tile order: 8 row tiles, then the next columns

// One consumer (skinny 64-row tiles, for M <= 64, where the product streams B from memory): as many
// stages as fit in this many bytes (64 x 128 tiles: 8 of 24 KiB; 64 x 64: 12 of 16 KiB).
constexpr int kSkinnyRingBytes = 192 * 1024;

// The shape of a block with kConsumers consumer warpgroups of 64 rows each: a ring of kRing stages,
// each holding the A tile and BOp::kStageBytes of B, rounded up to 1024 bytes (swizzle atoms stay
// aligned); BOp's own buffers (kExtraBytes) follow the ring. A policy's kRing and kARows override the
// block's ring depth and A rows where nonzero; else kStages (one consumer: the deep ring of
// kSkinnyRingBytes, more bytes in flight) and all kRows rows.
template <class BOp, int kConsumers>
struct Block {
  static constexpr int kRows = 64 * kConsumers;                  // block tile rows (M)
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kTileABytes = (BOp::kARows ? BOp::kARows : kRows) * kBlockK * 2;
  static_assert(BOp::kARows == 0 || kConsumers == 1, "fewer A rows: one consumer");
  static constexpr int kStageBytes = (kTileABytes + BOp::kStageBytes + 1023) / 1024 * 1024;
  static constexpr int kRing = BOp::kRing ? BOp::kRing : kConsumers == 1 ? kSkinnyRingBytes / kStageBytes : kStages;
  static constexpr int kSmemBytes = kRing * kStageBytes + BOp::kExtraBytes + 1024;  // + slack to align to 1024
  static_assert(kSmemBytes <= kSm90SmemPerBlock, "a block's opt-in shared memory on sm_90");
};

// B as f16 / bf16 tiles of a 3-D tensor map (cols, rows, batch), kTileN (64, 128 or 256) columns wide.
// kTransB: B is [N, K] (K-major, as wgmma reads it), one box of kTileN rows; otherwise [K, N], read
// MN-major from kTileN / 64 boxes of 64 columns.
// Byte for byte the same with int8 B (W8A8, kTransB only): a box of kTileN rows x 128 bytes (128 k).
template <bool kTransB, int kN = kBlockN>
struct DenseB {
  CUtensorMap map;
  int64_t n;
  static constexpr int kTileN = kN;
  static constexpr int kBoxes = kN / kRowElems;
  static constexpr int kStageBytes = kBoxes * kBoxBBytes;
  static constexpr int kExtraBytes = 0;
  static constexpr int kRing = 0, kARows = 0;  // the block's (Block)
  static constexpr int kWgmmaTransB = kTransB ? 0 : 1;
  static constexpr bool kRowStores = true;  // the epilogue's row-wise stores (see the kernel)
  static_assert(kN == 64 || kN == 128 || kN == 256, "wgmma m64n64, m64n128 or m64n256");

  // [K, N] boxes wholly past N are not loaded: the columns they would hold are never stored, and a
  // column's products do not mix with other columns'. A tile wholly past N (a cluster's second CTA
  // on odd tile columns) loads no B.
  __device__ __forceinline__ int Boxes(int n0) const {
    if (n0 >= n) return 0;
    if (kTransB) return kBoxes;
    const int64_t left = (n - n0 + kRowElems - 1) / kRowElems;
    return left < kBoxes ? static_cast<int>(left) : kBoxes;
  }
  __device__ __forceinline__ uint32_t Bytes(int n0) const { return Boxes(n0) * kBoxBBytes; }
  __device__ __forceinline__ void Load(uint8_t* stage, uint64_t* bar, int k0, int n0, int b_index) const {
    if (n0 >= n) return;
    if constexpr (kTransB) {
      sm90::TmaLoad3d(stage, &map, bar, k0, n0, b_index);
    } else {
      const int boxes = Boxes(n0);
#pragma unroll
      for (int box = 0; box < kBoxes; ++box)
        if (box < boxes) sm90::TmaLoad3d(stage + box * kBoxBBytes, &map, bar, n0 + box * kRowElems, k0, b_index);
    }
  }
  // The tile wgmma reads: the stage itself.
  template <int kConsumerThreads>
  __device__ __forceinline__ const uint8_t* Ready(const uint8_t* stage, uint8_t*, uint32_t, int) const {
    return stage;
  }
  __device__ __forceinline__ uint64_t Desc(const uint8_t* tile, int kk) const {
    return kTransB ? sm90::DescSw128(tile + kk * 32, 16, 1024)
                   : sm90::DescSw128(tile + kk * 16 * 128, kBoxBBytes, 1024);
  }
};

// DenseB's 64 x 128 skinny tiles for M <= kARows: a stage holds 16 A rows (2 KiB, not 8), wgmma's
// rows 16-63 reading the B tile that follows (their sums are never stored), so 12 stages of 18 KiB
// fit (216 KiB, past kSkinnyRingBytes): 192 KiB of B in flight instead of 128.
template <bool kTransB>
struct DecodeB : DenseB<kTransB, kBlockN> {
  static constexpr int kARows = 16;
  static constexpr int kRing = 12;
};

// Output tile `tile` of the persistent schedule: its batch, first row and first column. Within a
// batch, tiles go down a group of kGroupM row tiles before the next column tile, so the CTAs in
// flight share A row blocks and B column blocks in L2.
struct TileCoord {
  int64_t batch, m0, n0;
};
// Unsigned 32-bit arithmetic: LaunchWgmma declines kMaxUnits (2^31) units or more, so every index
// here fits, and a 64-bit division is a subroutine of ~100 cycles; a dozen of them before the
// producer's first load were ~0.6 us of a small GEMM's time (bench/device/kernel_start_probe.cu,
// bench/results/2026-11-28_kernel_start_h100_d43ff23c.md).
__device__ __forceinline__ TileCoord TileAt(uint32_t tile, uint32_t m_tiles, uint32_t n_tiles, int block_m,
                                            int block_n = kBlockN) {
  const uint32_t per_batch = m_tiles * n_tiles;
  TileCoord c;
  const uint32_t batch = tile / per_batch;
  const uint32_t r = tile - batch * per_batch, group = kGroupM * n_tiles;
  const uint32_t first_m = r / group * kGroupM, in_group = r % group;
  const uint32_t rows = m_tiles - first_m < kGroupM ? m_tiles - first_m : kGroupM;
  c.batch = batch;
  c.m0 = static_cast<int64_t>(first_m + in_group % rows) * block_m;
  c.n0 = static_cast<int64_t>(in_group / rows) * block_n;
  return c;
}

// Index of the A and B matrices (the tensor maps' third coordinate) output batch `batch` reads.
__device__ __forceinline__ void OperandBatches(const MatmulTcParams& p, int64_t batch, int* a_index, int* b_index) {
  if (p.batch_rank == 0) {  // one product (no 64-bit divisions)
    *a_index = *b_index = 0;
    return;
  }
  int64_t a_off = 0, b_off = 0, rest = batch;
  for (int i = p.batch_rank - 1; i >= 0; --i) {
    const int64_t idx = rest % p.batch_dims[i];
    rest /= p.batch_dims[i];
    a_off += idx * p.a_batch_stride[i];
    b_off += idx * p.b_batch_stride[i];
  }
  *a_index = static_cast<int>(a_off / (p.m * p.k));
  *b_index = static_cast<int>(b_off / (p.k * p.n));
}

// An accumulator as the float Y holds: itself (f32), or the int8 kernel's exact s32 sum times the
// scale, rounded once to float.
__device__ __forceinline__ float AccValue(float acc, double) { return acc; }
__device__ __forceinline__ float AccValue(int32_t acc, double scale) {
  return static_cast<float>(static_cast<double>(acc) * scale);
}

// Column blocks 4 g .. 4 g + 3 (8 columns each) of the m64nN fragment's rows 8 h + lane / 4, as 16-byte
// units: value(i) is accumulator i as Y's float. The fragment gives lane q columns 2 q, 2 q + 1 of each
// block; QuadTranspose regroups them so that lane q holds all 8 columns of block 4 g + q: f32 in lo
// (even columns) and hi (odd), 16-bit in v. kMovMatrix: each 8 x 8 block is first transposed across
// the warp (movmatrix), so the lane holds 8 consecutive elements of a row of the tile's transpose.
template <bool kMovMatrix, class Value>
__device__ __forceinline__ void QuadUnitsF32(const Value& value, int g, int h, uint32_t (&lo)[4], uint32_t (&hi)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    lo[i] = __float_as_uint(value((4 * g + i) * 4 + h * 2));
    hi[i] = __float_as_uint(value((4 * g + i) * 4 + h * 2 + 1));
    if constexpr (kMovMatrix) ptx::MovMatrixTrans32(lo[i], hi[i]);
  }
  ptx::QuadTranspose(lo);
  ptx::QuadTranspose(hi);
}
template <typename OutT, bool kMovMatrix, class Value>
__device__ __forceinline__ void QuadUnits16(const Value& value, int g, int h, uint32_t (&v)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = ptx::Pack2<OutT>(value((4 * g + i) * 4 + h * 2), value((4 * g + i) * 4 + h * 2 + 1));
    if constexpr (kMovMatrix) v[i] = ptx::MovMatrixTrans(v[i]);
  }
  ptx::QuadTranspose(v);
}

// kTransposeY's staging: per consumer, 64 Y rows of its 64 Y columns, f32 (256-byte rows; 16-bit Y
// uses half), in 16-byte units swizzled by TransposedUnitXor so that neither the fragment's writes (8
// lanes: rows 8 q + r, r in {2 i, 2 i + 1}) nor the row reads conflict in banks.
constexpr int kTransposedYRowsBytes = 64 * 256;
__device__ __forceinline__ int TransposedUnitXor(int row) { return ((row >> 3) & 3) | ((row & 1) << 2); }

// The epilogue of kTransposeY for one consumer: accumulators of a 64 x kTileN tile of Y^T (the m64nN
// fragment) into Y rows y_row0 .. + kTileN, columns y_col0 .. + 64, in chunks of 64 rows through
// y_tile (kTransposedYRowsBytes); barrier_id: a named barrier of this consumer's 128 threads. p.m, p.n:
// Y's columns and rows.
template <typename OutT, int kAcc>
__device__ __forceinline__ void StoreTransposed(const float (&acc)[kAcc], uint8_t* y_tile, bool out_f32,
                                                int64_t y_row0, int64_t y_col0, int64_t y_base,
                                                const MatmulTcParams& p, int barrier_id) {
  constexpr int kTileN = kAcc * 2;
  const int t = threadIdx.x % 128, q = t % 4, lane_row = (t % 32) / 4, warp = t / 32;
  auto sync = [&] { asm volatile("bar.sync %0, 128;\n" ::"r"(barrier_id) : "memory"); };
  uint4* units = reinterpret_cast<uint4*>(y_tile);
  auto value = [&](int i) { return acc[i]; };
#pragma unroll
  for (int chunk = 0; chunk < kTileN / 64; ++chunk) {
    if (chunk > 0) sync();  // the previous chunk's rows are read out
#pragma unroll
    for (int gg = 0; gg < 2; ++gg) {
      const int g = 2 * chunk + gg, row = 32 * gg + 8 * q + lane_row, x = TransposedUnitXor(row);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int piece = 2 * warp + h;  // Y columns 8 piece .. + 7 of the 64
        if (out_f32) {
          uint32_t lo[4], hi[4];
          QuadUnitsF32<true>(value, g, h, lo, hi);
          units[row * 16 + ((2 * piece) ^ x)] = make_uint4(lo[0], hi[0], lo[1], hi[1]);
          units[row * 16 + ((2 * piece + 1) ^ x)] = make_uint4(lo[2], hi[2], lo[3], hi[3]);
        } else {
          uint32_t v[4];
          QuadUnits16<OutT, true>(value, g, h, v);
          units[row * 8 + (piece ^ x)] = make_uint4(v[0], v[1], v[2], v[3]);
        }
      }
    }
    sync();  // the chunk's 64 rows are in y_tile
    // Out as rows: 16-byte units of 8 (f32: 4) Y columns, a warp's store covering 4 (2) whole row
    // segments. N % 8 == 0: a unit lies wholly inside or past Y's columns.
    const int units_per_row = out_f32 ? 16 : 8;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int u = i * 128 + t;
      if (!out_f32 && i >= 4) break;
      const int row = u / units_per_row, unit = u % units_per_row;
      const int64_t y_row = y_row0 + 64 * chunk + row, y_col = y_col0 + unit * (64 / units_per_row);
      if (y_row >= p.n || y_col >= p.m) continue;
      const uint4 val = units[row * units_per_row + (unit ^ TransposedUnitXor(row))];
      if (out_f32) *reinterpret_cast<uint4*>(static_cast<float*>(p.y) + y_base + y_row * p.m + y_col) = val;
      else *reinterpret_cast<uint4*>(static_cast<OutT*>(p.y) + y_base + y_row * p.m + y_col) = val;
    }
  }
  sync();  // y_tile is free for the next tile's epilogue
}

// Split K with p.tile_counters (the launcher's alternative to the combine kernel), after every
// consumer thread (kThreads of them, thread index tid) stored this CTA's slice of tile `tile` to
// p.partial: one thread counts the slice in on the tile's counter; the CTA that brings it to `splits`
// adds the tile's slices in slice order from p.partial (the combine kernel's order and rounding: Y
// is bit for bit the same), writes Y and returns the counter to zero for the next launch on this
// stream. Ordering: barrier, one thread's acq_rel atomic (its release cumulative over the CTA's
// stores, as in CUTLASS's split-K semaphore), barrier. The tile: rows m0 .. + block_m, columns n0 ..
// + kTileN of Y.
// AddSlicesIfLast's partial-buffer indices are 32-bit: fewer than this many floats (k_split * M * N).
constexpr int64_t kMaxPartialFloats = int64_t(1) << 31;
template <typename OutT, int kTileN, int kThreads>
__device__ __forceinline__ void AddSlicesIfLast(const MatmulTcParams& p, uint32_t tile, uint32_t splits, int64_t m0,
                                                int64_t n0, int block_m, int tid, int* last) {
  asm volatile("bar.sync 1, %0;\n" ::"n"(kThreads) : "memory");
  if (tid == 0) {
    int done;  // acq_rel: releases the CTA's slice (ordered before by the barrier), acquires the others'
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(done) : "l"(p.tile_counters + tile) : "memory");
    *last = done == static_cast<int>(splits) - 1;
    if (*last) asm volatile("st.relaxed.gpu.global.s32 [%0], 0;\n" ::"l"(p.tile_counters + tile) : "memory");  // all counted in
  }
  asm volatile("bar.sync 1, %0;\n" ::"n"(kThreads) : "memory");
  if (!*last) return;
  // 4-column units, 4 a thread at a time; the loads of 4 slices issued before their adds (branch-free:
  // a unit past the tile reads unit 0 of the slice, and is not stored).
  constexpr int kUnitsPerRow = kTileN / 4;
  const int rows = static_cast<int>(min(p.m - m0, static_cast<int64_t>(block_m)));
  const int cols = static_cast<int>(min(p.n - n0, static_cast<int64_t>(kTileN)));  // % 8 == 0
  const int units = rows * kUnitsPerRow;
  const uint32_t slice = static_cast<uint32_t>(p.m * p.n);  // (the launcher: k_split * M * N < kMaxPartialFloats)
  const bool out_f32 = p.out_type == MatmulElem::kF32;
  const float4* part = reinterpret_cast<const float4*>(p.partial);
  for (int u0 = 0; u0 < units; u0 += 4 * kThreads) {
    uint32_t at[4];  // float4 index in a slice
    bool in[4];
    float4 sum[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int u = u0 + j * kThreads + tid, row = u / kUnitsPerRow, col = u % kUnitsPerRow * 4;
      in[j] = u < units && col < cols;
      at[j] = in[j] ? static_cast<uint32_t>(((m0 + row) * p.n + n0 + col) / 4) : 0u;
      sum[j] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    for (uint32_t z0 = 0; z0 < splits; z0 += 4) {
      float4 v[4][4];
#pragma unroll
      for (int zz = 0; zz < 4; ++zz) {
        const uint32_t z = min(z0 + zz, splits - 1) * (slice / 4);
#pragma unroll
        for (int j = 0; j < 4; ++j) v[zz][j] = __ldcg(part + z + at[j]);
      }
#pragma unroll
      for (int zz = 0; zz < 4; ++zz)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (z0 + zz < splits) sum[j].x += v[zz][j].x, sum[j].y += v[zz][j].y, sum[j].z += v[zz][j].z, sum[j].w += v[zz][j].w;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (!in[j]) continue;
      const int64_t e = int64_t(at[j]) * 4;
      if (out_f32)
        *reinterpret_cast<float4*>(static_cast<float*>(p.y) + e) = sum[j];
      else
        *reinterpret_cast<uint2*>(static_cast<OutT*>(p.y) + e) =
            make_uint2(ptx::Pack2<OutT>(sum[j].x, sum[j].y), ptx::Pack2<OutT>(sum[j].z, sum[j].w));
    }
  }
}

// kTransA (MatmulTcGrad's dB): A is K x M, its map's boxes 64 k rows x 64 m columns, one per
// consumer (the consumer's 64 rows of the tile), read MN-major by wgmma. A box wholly past M is not
// loaded: the rows it would hold are never stored.
// kTransposeY: the product is Y^T (p's A and B are the caller's B and A, swapped by the launcher:
// [K, N] B as the MN-major A operand, A as [N, K]-style K-major B), stored into Y as its transpose
// (p.m and p.n are Y's columns and rows). wgmma reads an MN-major A operand (64 rows a consumer) at
// the K-major rate, an MN-major B (128-256 columns) 8-17 % slower
// (bench/results/2026-11-29_wgmma_swap_probes_h200.md).
template <typename T, class BOp, int kConsumers, bool kTransA = false, int kCluster = 1, bool kTransposeY = false>
__global__ void __launch_bounds__(Block<BOp, kConsumers>::kThreads, 1)
    MatmulWgmmaKernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ BOp b_op, MatmulTcParams p) {
  static_assert(kCluster == 1 || (kCluster == 2 && !kTransA && kConsumers == 4),
                "pairs: K-major A, 256-row tiles in halves of 128 rows (LaunchPairs' box), DenseB's skip past N");
  static_assert(!kTransposeY || (kTransA && kCluster == 1 && !IsS8<T>()), "Y^T: the swapped dense operands");
#if KAIO_SM90A_DEVICE
  using namespace sm90;
  using B = Block<BOp, kConsumers>;
  constexpr int kBlockM = B::kRows, kTileABytes = B::kTileABytes, kStageBytes = B::kStageBytes;
  constexpr int kTileN = BOp::kTileN, kAcc = kTileN / 2, kStages = B::kRing;
  constexpr bool kS8 = IsS8<T>();
  constexpr int kKTile = KTileOf<T>();  // k per stage: one 128-byte row (kBlockK for 16-bit types)
  static_assert(!kS8 || (!kTransA && BOp::kWgmmaTransB == 0), "int8 wgmma reads both operands K-major");
  using Acc = std::conditional_t<kS8, int32_t, float>;
  using OutT = std::conditional_t<kS8, __half, T>;  // Y's 16-bit type (W8A8: float16)
  extern __shared__ uint8_t smem_raw[];
  __shared__ uint64_t full[kStages], empty[kStages];
  __shared__ int slice_last;  // AddSlicesIfLast's answer to the consumers
  // The swizzle pattern repeats every 1024 bytes and wgmma's descriptors assume atoms aligned to it.
  // (Offset from the shared array itself, so the compiler keeps shared loads and stores.)
  uint8_t* ring = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  uint8_t* extra = ring + kStages * kStageBytes;  // BOp's buffers

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      MbarInit(&full[s], 1);
      MbarInit(&empty[s], kConsumers * kCluster);
    }
    FenceBarrierInit();
  }
  // The peer may signal this CTA's barriers only once they exist.
  if constexpr (kCluster > 1) ClusterSync();
  else __syncthreads();

  // Units: (output tile, or with clusters a group of kCluster adjacent tiles) x K slice; a cluster
  // runs its units in order, its CTA `rank` taking tile column rank of each group.
  const uint32_t rank = kCluster > 1 ? ClusterCtaRank() : 0;
  // Unit indices are 32-bit (see TileAt).
  const uint32_t first_unit = blockIdx.x / kCluster, unit_stride = gridDim.x / kCluster;
  const uint32_t m_tiles = static_cast<uint32_t>((p.m + kBlockM - 1) / kBlockM);
  const uint32_t n_groups = static_cast<uint32_t>(((p.n + kTileN - 1) / kTileN + kCluster - 1) / kCluster);
  const uint32_t splits = p.partial || p.slice_cluster ? static_cast<uint32_t>(p.k_split) : 1;
  const uint32_t units = static_cast<uint32_t>(p.batch_count) * m_tiles * n_groups * splits;
  auto tile_at = [&](uint32_t unit) {
    TileCoord c = TileAt(unit / splits, m_tiles, n_groups, kBlockM, kTileN * kCluster);
    c.n0 += rank * kTileN;
    return c;
  };
  // A consumer is done with stage s: tell every CTA whose producer writes it.
  auto release = [&](int s) {
    if constexpr (kCluster > 1) {
#pragma unroll
      for (int c = 0; c < kCluster; ++c) MbarArriveCluster(&empty[s], c);
    } else {
      MbarArrive(&empty[s]);
    }
  };
  const uint32_t k_tiles_all = static_cast<uint32_t>((p.k + kKTile - 1) / kKTile);
  // Unit u: output tile u / splits, K tiles [k_lo, k_hi) of slice u % splits (k_tiles_all * splits
  // < 2^32: K < 2^31, splits <= kMaxKSplit).
  auto k_range = [&](uint32_t unit, int* k_lo, int* k_hi) {
    const uint32_t z = unit % splits;
    *k_lo = static_cast<int>(k_tiles_all * z / splits);
    *k_hi = static_cast<int>(k_tiles_all * (z + 1) / splits);
  };
  const int warpgroup = threadIdx.x / 128;

  if (warpgroup == 0) {  // producer
    if (threadIdx.x == 0) {
    uint32_t it = 0;
    for (uint32_t unit = first_unit; unit < units; unit += unit_stride) {
      const TileCoord c = tile_at(unit);
      int a_index, b_index, k_lo, k_hi;
      OperandBatches(p, c.batch, &a_index, &b_index);
      k_range(unit, &k_lo, &k_hi);
      for (int kt = k_lo; kt < k_hi; ++kt, ++it) {
        const int s = it % kStages;
        const uint32_t round = it / kStages;
        if (round > 0) MbarWait(&empty[s], (round - 1) & 1);  // every consumer (of both CTAs with clusters) is done
        uint8_t* a_tile = ring + s * kStageBytes;
        const int k0 = kt * kKTile, m0 = static_cast<int>(c.m0), n0 = static_cast<int>(c.n0);
        if constexpr (kCluster > 1) {  // this CTA's half of the A rows, into both CTAs
          // A half wholly past M is loaded by neither CTA (both leave its bytes out): its rows are
          // never stored.
          constexpr int kHalf = kBlockM / 2;
          const int halves = p.m - m0 > kHalf ? 2 : 1;
          MbarArriveExpectTx(&full[s], halves * (kHalf * 128) + b_op.Bytes(n0));
          if (static_cast<int>(rank) < halves)
            TmaLoad3dMulticast(a_tile + rank * (kHalf * 128), &map_a, &full[s], k0,
                               m0 + static_cast<int>(rank) * kHalf, a_index, (1 << kCluster) - 1);
        } else if constexpr (kTransA) {
          const int boxes = min(kConsumers, static_cast<int>((p.m - m0 + 63) / 64));
          MbarArriveExpectTx(&full[s], boxes * (64 * 128) + b_op.Bytes(n0));
          for (int box = 0; box < boxes; ++box)
            TmaLoad3d(a_tile + box * (64 * 128), &map_a, &full[s], m0 + 64 * box, k0, a_index);
        } else {
          MbarArriveExpectTx(&full[s], kTileABytes + b_op.Bytes(n0));
          TmaLoad3d(a_tile, &map_a, &full[s], k0, m0, a_index);
        }
        b_op.Load(a_tile + kTileABytes, &full[s], k0, n0, b_index);
      }
    }
    }
    __syncwarp();
    if constexpr (kConsumers == 1 && kCluster == 1 && !kS8) {
      if (p.slice_cluster) {  // the consumers' two cluster barriers (every thread of the cluster takes part)
        ClusterSync();
        ClusterSync();
      }
    }
  } else {

  // Consumers: warpgroup 1 + w owns rows [64 w, 64 w + 64) of the tile.
  const int w = warpgroup - 1, t = threadIdx.x % 128;
  OutT* y_t = static_cast<OutT*>(p.y);
  float* y_f = static_cast<float*>(p.y);
  const bool out_f32 = p.out_type == MatmulElem::kF32;
  Acc acc[kAcc];
  double acc_scale = 1.0;  // int8: Y = float(double(s32 sum) * scale)
  if constexpr (kS8) acc_scale = static_cast<double>(*p.acc_scale);
  uint32_t it = 0;
  for (uint32_t unit = first_unit; unit < units; unit += unit_stride) {
    const TileCoord c = tile_at(unit);
    int k_lo, k_hi;
    k_range(unit, &k_lo, &k_hi);
#pragma unroll
    for (int i = 0; i < kAcc; ++i) acc[i] = Acc(0);
    FenceOperands(acc);
    for (int kt = k_lo; kt < k_hi; ++kt, ++it) {
      const int s = it % kStages;
      MbarWait(&full[s], (it / kStages) & 1);
      const uint8_t* a_tile = ring + s * kStageBytes + w * (64 * 128);
      const uint8_t* b_tile = b_op.template Ready<128 * kConsumers>(ring + s * kStageBytes + kTileABytes, extra, it,
                                                                     threadIdx.x - 128);
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < 128 / 32; ++kk) {  // k steps of 32 bytes (k16 of 16-bit types, k32 of int8)
        // K-major A: a k step moves 32 bytes along the swizzled row; MN-major A: 16 rows of 128 bytes.
        const uint64_t desc_a =
            kTransA ? DescSw128(a_tile + kk * 16 * 128, 64 * 128, 1024) : DescSw128(a_tile + kk * 32, 16, 1024);
        if constexpr (kS8) WgmmaM64K32S8<kTileN>(acc, desc_a, b_op.Desc(b_tile, kk));
        else WgmmaM64K16<T, kTileN, BOp::kWgmmaTransB, kTransA ? 1 : 0>(acc, desc_a, b_op.Desc(b_tile, kk));
      }
      WgmmaCommit();
      WgmmaWait<1>();  // the previous step's wgmmas are done: release its stage
      if (kt > k_lo && t == 0) release((it - 1) % kStages);
    }
    WgmmaWait<0>();
    FenceOperands(acc);  // the stores below read the accumulators only after the wait
    if (k_hi > k_lo && t == 0) release((it - 1) % kStages);
    if constexpr (kConsumers == 1 && kCluster == 1 && !kS8) {
      if (p.slice_cluster) {
        // Every stage is consumed (one unit per CTA): the ring holds this slice's sums, [i / 4][t][4].
        float4* mine = reinterpret_cast<float4*>(ring);
#pragma unroll
        for (int i = 0; i < kAcc / 4; ++i) mine[i * 128 + t] = make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]);
        ClusterSync();  // every slice's sums are in its shared memory
        const uint32_t z = ClusterCtaRank();  // = unit % splits
        if (z == 0) {
          const uint32_t local = SmemAddr(mine);
          for (int r = 1; r < splits; ++r) {
            float4 v[kAcc / 4];
#pragma unroll
            for (int i = 0; i < kAcc / 4; ++i) {
              uint32_t remote;
              asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local + 16u * (i * 128 + t)), "r"(r));
              asm volatile("ld.shared::cluster.v4.f32 {%0,%1,%2,%3}, [%4];\n"
                           : "=f"(v[i].x), "=f"(v[i].y), "=f"(v[i].z), "=f"(v[i].w)
                           : "r"(remote)
                           : "memory");
            }
#pragma unroll
            for (int i = 0; i < kAcc / 4; ++i)
              acc[4 * i] += v[i].x, acc[4 * i + 1] += v[i].y, acc[4 * i + 2] += v[i].z, acc[4 * i + 3] += v[i].w;
          }
        }
        ClusterSync();  // slice 0 has read the others' shared memory: they may leave
        if (z != 0) continue;
      }
    }

    // The m64nN fragment: per 8-column block j, rows r and r + 8, columns 2 (t % 4) and + 1. With
    // p.quad_stores, a quad transpose over four blocks gives lane t % 4 all 8 columns of block
    // 4 g + t % 4: 16-byte stores (32 bytes of f32); else each lane stores its column pairs.
    // N % 8 == 0: an 8-column block lies wholly inside or past N.
    const int q = t % 4;
    const int64_t row0 = c.m0 + w * 64 + (t / 32) * 16 + (t % 32) / 4;
    const int64_t y_base = p.partial ? unit % splits * p.m * p.n : c.batch * p.m * p.n;  // (slice_cluster: partial unset)
    float* out_f = p.partial ? p.partial : y_f;
    auto value = [&](int i) { return AccValue(acc[i], acc_scale); };  // accumulator i as Y's float
    if (!kTransposeY && !p.quad_stores) {
      // Each lane's column pairs. BOp::kRowStores (dense B): one row test per row and one predicate
      // per column block (the columns' offsets fit 32 bits); a branch and 64-bit index math per
      // store cost a one-tile GEMM ~1.3 us (7x128x64: 3.9 -> 2.65 us; a bare TMA + wgmma kernel
      // takes 1.9, kernel_start_probe). The quantized B ops keep the per-store loop: with row stores
      // their K-slice GEMMs were slower (H100, wgmma_probe, 128x4096x4096: int8 175 vs 183
      // TFLOP/s, int4 187 vs 210; bench/results/2026-11-28_epilogue_ab_h100.md).
      // Accumulators i, i + 1 (one column pair) at `at`: a float2, or two OutT in one 32-bit store.
      auto store_pair = [&](auto* at, int i) {
        if constexpr (std::is_same_v<std::remove_pointer_t<decltype(at)>, float>)
          *reinterpret_cast<float2*>(at) = make_float2(value(i), value(i + 1));
        else
          *reinterpret_cast<uint32_t*>(at) = ptx::Pack2<OutT>(value(i), value(i + 1));
      };
      const int cols_left = static_cast<int>(min(p.n - c.n0, static_cast<int64_t>(kTileN))) - 2 * q;
      auto store_rows = [&](auto* out) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = row0 + 8 * h;
          if (row >= p.m) continue;
          auto* y_row = out + y_base + row * p.n + c.n0 + 2 * q;
#pragma unroll
          for (int j = 0; j < kTileN / 8; ++j)
            if (8 * j < cols_left) store_pair(y_row + 8 * j, j * 4 + h * 2);
        }
      };
      if constexpr (BOp::kRowStores) {
        if (p.partial || out_f32) store_rows(out_f);
        else store_rows(y_t);
      } else {
#pragma unroll
        for (int j = 0; j < kTileN / 8; ++j) {
          const int64_t col = c.n0 + 8 * j + 2 * q;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t row = row0 + 8 * h;
            if (row >= p.m || col >= p.n) continue;
            const int64_t at = y_base + row * p.n + col;
            if (p.partial || out_f32) store_pair(out_f + at, j * 4 + h * 2);
            else store_pair(y_t + at, j * 4 + h * 2);
          }
        }
      }
    } else if constexpr (kTransposeY) {
      // The tile is Y^T's: 64 Y columns a consumer (its rows), kTileN Y rows. movmatrix transposes
      // each 8 x 8 block of the fragment, so lane (r, q) holds Y row 8 j + r, Y columns 2 q and + 1
      // of the block's 8; the quad transpose then gives lane q Y row 8 (4 g + q) + r, 8 consecutive Y
      // columns. Stored straight to Y, a warp's store would touch 32 rows (4096^3: 512 vs 694
      // TFLOP/s), so they go through this consumer's shared tile of 64 Y rows first, then out as rows.
      uint8_t* y_tile = extra + BOp::kExtraBytes + w * kTransposedYRowsBytes;
      StoreTransposed<OutT>(acc, y_tile, out_f32, c.n0, c.m0 + w * 64, y_base, p, 2 + w);
    } else {
#pragma unroll
      for (int g = 0; g < kTileN / 32; ++g) {
        const int64_t col = c.n0 + 32 * g + 8 * q;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = row0 + 8 * h;
          const bool in = row < p.m && col < p.n;
          const int64_t at = y_base + row * p.n + col;
          if (p.partial || out_f32) {
            uint32_t lo[4], hi[4];
            QuadUnitsF32<false>(value, g, h, lo, hi);
            if (in) {
              float4* dst = reinterpret_cast<float4*>(out_f + at);
              dst[0] = make_float4(__uint_as_float(lo[0]), __uint_as_float(hi[0]), __uint_as_float(lo[1]),
                                   __uint_as_float(hi[1]));
              dst[1] = make_float4(__uint_as_float(lo[2]), __uint_as_float(hi[2]), __uint_as_float(lo[3]),
                                   __uint_as_float(hi[3]));
            }
          } else {
            uint32_t v[4];
            QuadUnits16<OutT, false>(value, g, h, v);
            if (in) *reinterpret_cast<uint4*>(y_t + at) = make_uint4(v[0], v[1], v[2], v[3]);
          }
        }
      }
    }
    if constexpr (!kS8 && !kTransposeY && kConsumers <= 2 && kCluster == 1) {  // (the launcher's tiles)
      if (p.tile_counters)
        AddSlicesIfLast<OutT, kTileN, 128 * kConsumers>(p, unit / splits, splits, c.m0, c.n0, kBlockM, t + 128 * w,
                                                        &slice_last);
    }
  }
  }  // consumers
  // No CTA leaves while its peer may still arrive on its barriers or multicast into its stages.
  if constexpr (kCluster > 1) ClusterSync();
#else
  __trap();  // never launched without sm_90a code (kBuiltForSm90a); if it were, fail loudly, not silently
#endif
}

// Host: TMA coordinates are 32-bit: sizes and matrix counts below this.
constexpr int64_t kTmaCoordMax = int64_t(1) << 31;
// The kernel's unit and K-tile indices are 32-bit: fewer than kMaxUnits units, at most kMaxKSplit
// K slices.
constexpr int64_t kMaxUnits = int64_t(1) << 31, kMaxKSplit = 64;

// Host: whether the kernel can run a product of these sizes at all: an sm_90a build on a 9.0 device,
// 32-bit TMA coordinates. Each launcher adds its operands' layout and alignment rules.
inline bool WgmmaRuns(int sm, int sm_count, int64_t m, int64_t n, int64_t k) {
  return sm90::kBuiltForSm90a && sm == 90 && sm_count > 0 && k > 0 && m < kTmaCoordMax && n < kTmaCoordMax &&
         k < kTmaCoordMax;
}

// Host: one CTA per SM (or per unit of work where there are fewer), the shared memory opted in.
// Host: how many clusters of `config` (clusters of cluster_size CTAs, 1-8) the device holds at once,
// asked once per kernel, device and cluster size (so launches inside a CUDA graph capture make no
// occupancy query); 0 where it cannot say.
template <auto kKernel>
int ResidentClusters(const cudaLaunchConfig_t& config, int cluster_size) {
  static std::atomic<int> cache[8][9];  // devices 0-7 (zero-initialised: not asked yet); others ask every time
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cluster_size < 1 || cluster_size > 8) return 0;
  if (device < 8) {
    if (const int known = cache[device][cluster_size].load(std::memory_order_relaxed)) return known;
  }
  int resident = 0;
  if (cudaOccupancyMaxActiveClusters(&resident, kKernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();  // not left for a later launch's error check
    return 0;
  }
  if (device < 8) cache[device][cluster_size].store(resident, std::memory_order_relaxed);
  return resident;
}

// Host: a cluster launch config of `cluster_size` CTAs along x.
template <class B>
cudaLaunchConfig_t ClusterConfig(cudaLaunchAttribute* cluster, int cluster_size, cudaStream_t stream) {
  cluster->id = cudaLaunchAttributeClusterDimension;
  cluster->val.clusterDim.x = static_cast<unsigned>(cluster_size);
  cluster->val.clusterDim.y = 1;
  cluster->val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(cluster_size));
  config.blockDim = dim3(B::kThreads);
  config.dynamicSmemBytes = B::kSmemBytes;
  config.stream = stream;
  config.attrs = cluster;
  config.numAttrs = 1;
  return config;
}

// With kCluster > 1: clusters of kCluster CTAs, as many as can be resident at once (a cluster's CTAs
// share a GPC, so fewer than sm_count / kCluster may fit), map_a's boxes holding half the tile rows.
template <typename T, class BOp, int kConsumers, bool kTransA = false, int kCluster = 1, bool kTransposeY = false>
cudaError_t LaunchWgmma(const MatmulTcParams& p, const CUtensorMap& map_a, const BOp& b_op, cudaStream_t stream) {
  using B = Block<BOp, kConsumers>;
  constexpr auto kernel = MatmulWgmmaKernel<T, BOp, kConsumers, kTransA, kCluster, kTransposeY>;
  constexpr int kSmemBytes = B::kSmemBytes + (kTransposeY ? kConsumers * kTransposedYRowsBytes : 0);
  if (cudaError_t e = AllowSharedMemory<kernel>(kSmemBytes)) return e;
  const int64_t n_groups = ((p.n + BOp::kTileN - 1) / BOp::kTileN + kCluster - 1) / kCluster;
  const int64_t units =
      p.batch_count * ((p.m + B::kRows - 1) / B::kRows) * n_groups * (p.partial || p.slice_cluster ? p.k_split : 1);
  if (units >= kMaxUnits || p.k_split > kMaxKSplit) return cudaErrorNotSupported;
  if constexpr (kCluster == 1) {
    if (p.slice_cluster) {  // one CTA per unit, clusters of k_split: the slices of a tile
      if constexpr (kConsumers != 1 || IsS8<T>()) return cudaErrorNotSupported;
      // Only where every tile's cluster is resident at once (one wave): a cluster's CTAs share a GPC,
      // and at one CTA per SM an H200 holds 66 clusters of 2 but 39 of 3, 30 of 4 and 15 of 8, not
      // 132 / size. Else the caller's partial buffer: a second wave (16x4096x4096 in 4 slices: 27 vs
      // 16 us) or fewer, longer slices (3: 18 vs 16 us) cost more than the combine kernel saves
      // (bench/results/2026-11-27_matmul_slice_clusters_fit_4a87cadf.md).
      const int64_t tiles = units / p.k_split;
      cudaLaunchAttribute cluster;
      cudaLaunchConfig_t config = ClusterConfig<B>(&cluster, static_cast<int>(p.k_split), stream);
      if (tiles > ResidentClusters<kernel>(config, static_cast<int>(p.k_split))) return cudaErrorNotSupported;
      config.gridDim = dim3(static_cast<unsigned>(units));
      const cudaError_t e = cudaLaunchKernelEx(&config, kernel, map_a, b_op, p);
      if (e != cudaSuccess) (void)cudaGetLastError();  // the caller falls back to the partial buffer
      return e == cudaSuccess ? e : cudaErrorNotSupported;
    }
    const int64_t ctas = units < p.sm_count ? units : p.sm_count;
    kernel<<<static_cast<unsigned>(ctas), B::kThreads, kSmemBytes, stream>>>(map_a, b_op, p);
    return cudaGetLastError();
  } else {
    cudaLaunchAttribute cluster;
    cudaLaunchConfig_t config = ClusterConfig<B>(&cluster, kCluster, stream);
    const int resident = ResidentClusters<kernel>(config, kCluster);
    if (resident <= 0) return cudaErrorNotSupported;  // the caller takes another kernel
    const int64_t clusters = units < resident ? units : resident;
    config.gridDim = dim3(static_cast<unsigned>(clusters * kCluster));
    const cudaError_t e = cudaLaunchKernelEx(&config, kernel, map_a, b_op, p);
    if (e == cudaErrorNotSupported) (void)cudaGetLastError();  // the caller falls back: no stale error for it
    return e;
  }
}

}  // namespace matmul_wgmma
}  // namespace kaio
