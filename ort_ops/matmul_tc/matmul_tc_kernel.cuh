// Tensor-core matmul with mma.sync m16n8k16 (sm_80+), KAIO's "sync" design: no cp.async.
// Global tiles are prefetched into registers while the tensor cores work on the shared-memory
// tile of the previous step (two shared-memory stages, one barrier per K step).
//
// Block tile 128 x kBlockN x 32, 8 warps in a 2 x 4 grid (SyncTile): the narrow tile, 128 x 128 with
// warps of 64 x 32 (4 x 4 mma tiles) at two blocks per SM, or the wide one, 128 x 256 with warps of
// 64 x 64 (4 x 8 mma tiles) at one block per SM: 8 ldmatrix.x4 feed 32 mma instead of 6 feeding 16.
// Rows of the shared tiles are padded by 16 bytes so ldmatrix reads are bank-conflict free.
// Edges: rows/cols past M, N, K are zero-filled on load and skipped on store, so any shape works.
// kVec: 16-byte loads (needs K % 8 == 0, N % 8 == 0 unless trans_b, 16-byte aligned bases);
// otherwise element loads.
//
// kCpStages > 0 (the Async ops off Hopper, opt-in: matmul_tc_sm80.cu): the same tiles, warps,
// fragments and epilogue, but the global tiles go straight to shared memory with cp.async (16 bytes,
// zero fill past M, N, K) through a ring of kCpStages stages in dynamic shared memory: kCpStages - 2
// tiles in flight while the tensor cores work on the oldest, the next one issued after them, one
// barrier per K step. kVec and DenseB only (cp.async moves whole aligned 16-byte segments); the other
// shapes keep the register-prefetch path.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

#include "common/elem.cuh"
#include "common/ptx.cuh"
#include "matmul_tc/matmul_tc_params.h"

namespace kaio {
namespace matmul_tc {

constexpr int kBlockM = 128, kBlockN = 128, kBlockK = 32;  // kBlockN: the narrow tile's (the default)
constexpr int kThreads = 256;
constexpr int kPad = 8;                         // halves of padding per shared row
constexpr int kLdA = kBlockK + kPad;            // As[m][k]
constexpr int kLdBnk = kBlockK + kPad;          // Bs[n][k] (trans_b: B is N x K)
constexpr int kLdAkm = kBlockM + kPad;          // As[k][m] (trans_a: A is K x M)

// The block's N extent, a warp's (the 2 x 4 warp grid's columns) and the blocks an SM must hold
// (__launch_bounds__: 2 caps registers at 128, 1 at 255).
template <int kBlockN_, int kMinBlocks_>
struct SyncTile {
  static constexpr int kBlockN = kBlockN_, kMinBlocks = kMinBlocks_;
  static constexpr int kWarpN = kBlockN / 4, kNi = kWarpN / 8;  // a warp's columns, its n8 mma tiles
  static constexpr int kLdBkn = kBlockN + kPad;                  // Bs[k][n] (B row-major K x N)
  static constexpr int kBSegs = kBlockN * kBlockK / 8 / kThreads;  // 8-element B segments a thread moves
  static_assert(kNi % 2 == 0 && kBSegs * 8 * kThreads == kBlockN * kBlockK, "whole ldmatrix.x4 and segments");
};
using NarrowTile = SyncTile<kBlockN, 2>;
using WideTile = SyncTile<256, 1>;
constexpr int kASegs = kBlockM * kBlockK / 8 / kThreads;  // 8-element A segments a thread moves

// Where segment v (8 consecutive elements; thread t moves t, t + kThreads, ...) of a kBlockK x kMN
// operand tile lies: the tile stored as read, k-major ([k][mn]: A with trans_a, B as [K, N]) or
// mn-major ([mn][k]), each shared row padded by kPad. Its k and m / n offsets in the tile and its
// element offset in a shared stage, for the global loads and the shared stores alike.
template <bool kKMajor, int kMN>
struct Segment {
  static constexpr int kRow = kKMajor ? kMN : kBlockK;  // elements along a stored row
  static constexpr int kPerRow = kRow / 8, kLd = kRow + kPad;
  static __device__ __forceinline__ int Row(int v) { return v / kPerRow; }
  static __device__ __forceinline__ int Col(int v) { return (v % kPerRow) * 8; }
  static __device__ __forceinline__ int K(int v) { return kKMajor ? Row(v) : Col(v); }
  static __device__ __forceinline__ int MN(int v) { return kKMajor ? Col(v) : Row(v); }
  static __device__ __forceinline__ int Smem(int v) { return Row(v) * kLd + Col(v); }
};

using ptx::LdMatrixX4;
using ptx::LdMatrixX4Trans;
using ptx::Mma16816;

// Loads one 8-element row segment [col, col + 8) of a row-major matrix with `rows` x `cols`
// elements and leading dimension `ld`; out-of-range elements are zero.
template <typename T, bool kVec>
__device__ __forceinline__ uint4 LoadSegment(const T* base, int64_t row, int64_t col, int64_t rows, int64_t cols,
                                             int64_t ld) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (row >= rows) return v;
  const T* p = base + row * ld + col;
  if constexpr (kVec) {
    if (col < cols) v = __ldg(reinterpret_cast<const uint4*>(p));  // cols % 8 == 0: all 8 in range
  } else {
    uint16_t h[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) h[i] = col + i < cols ? __ldg(reinterpret_cast<const uint16_t*>(p) + i) : 0;
    v.x = h[0] | (uint32_t(h[1]) << 16);
    v.y = h[2] | (uint32_t(h[3]) << 16);
    v.z = h[4] | (uint32_t(h[5]) << 16);
    v.w = h[6] | (uint32_t(h[7]) << 16);
  }
  return v;
}

// B operand as stored: T, row-major [K, N] or (trans_b) [N, K].
struct DenseB {
  template <typename T, bool kVec>
  __device__ __forceinline__ uint4 Load(const T* b, int64_t row, int64_t col, int64_t rows, int64_t cols) const {
    return LoadSegment<T, kVec>(b, row, col, rows, cols, cols);
  }
};

// Elements of one shared stage of A and of B.
template <bool kTransA>
constexpr int kAsStageElems = kTransA ? kBlockK * kLdAkm : kBlockM * kLdA;
template <bool kTransB, class Tile = NarrowTile>
constexpr int kBsStageElems = kTransB ? Tile::kBlockN * kLdBnk : kBlockK * Tile::kLdBkn;
// Shared memory of kStages stages of A and B: the cp.async ring, or the register-prefetch kernel's
// two stages, which the wide tile holds in dynamic shared memory (past the 48 KB of static arrays).
template <typename T, bool kTransB, bool kTransA, int kStages, class Tile = NarrowTile>
constexpr int kStageSmemBytes = kStages * (kAsStageElems<kTransA> + kBsStageElems<kTransB, Tile>) * int(sizeof(T));
template <typename T, bool kTransB, bool kTransA, class Tile>
constexpr bool kDynamicStages = 2 * kStageSmemBytes<T, kTransB, kTransA, 1, Tile> > 48 * 1024;

// BSource::Load gives the 8 B values [col, col + 8) of row `row` as T (DenseB, or a quantized
// source that dequantises them: quant_matmul/matmul_int8_kernel.cuh).
// Two blocks per SM (at most 128 registers): MatmulInt8Params grew (QkvProjectInt8's out_scale, bias
// and scale-less weights, 15d008c) and took the Int8Source instantiations from 128 to 160 registers,
// one block per SM, and MatmulInt8 at 128x4096x4096 from 69 to 124 us (H200, 4e74140 vs 3a28382).
// kTransA: A is K x M (op(A) = A^T, MatmulTcGrad's dB); its tile is stored as read, [k][m], and
// ldmatrix.trans gives the row-major fragments (as for a [K, N] B).
// kCpStages: 0 for the register-prefetch pipeline above, else the cp.async ring (see the top).
// Tile: NarrowTile or WideTile (SyncTile).
template <typename T, bool kTransB, bool kVec, class BSource, bool kTransA = false, int kCpStages = 0,
          class Tile = NarrowTile>
__global__ void __launch_bounds__(kThreads, Tile::kMinBlocks) MatmulTcSyncKernel(MatmulTcParams p, BSource src) {
  constexpr int kBsElems = kBsStageElems<kTransB, Tile>;
  constexpr int kAsElems = kAsStageElems<kTransA>;
  constexpr int kNi = Tile::kNi, kWarpN = Tile::kWarpN, kLdBkn = Tile::kLdBkn, kBSegs = Tile::kBSegs;
  using ASeg = Segment<kTransA, kBlockM>;
  using BSeg = Segment<!kTransB, Tile::kBlockN>;
  static_assert(ASeg::kLd == (kTransA ? kLdAkm : kLdA) && BSeg::kLd == (kTransB ? kLdBnk : kLdBkn),
                "the segments' shared rows are the ldmatrix reads' rows");
  constexpr bool kDenseVec = kVec && std::is_same<BSource, DenseB>::value;
  static_assert(kCpStages == 0 || (kCpStages >= 2 && kVec && std::is_same<BSource, DenseB>::value),
                "the cp.async pipeline moves aligned 16-byte segments of dense operands");
  // Two static stages, or (the ring, the wide tile's two stages) dynamic shared memory; the static
  // arrays are then a token 16 bytes each, unused.
  constexpr bool kDynamic = kCpStages > 0 || kDynamicStages<T, kTransB, kTransA, Tile>;
  __shared__ __align__(16) T As[kDynamic ? 1 : 2][kDynamic ? 8 : kAsElems];
  __shared__ __align__(16) T Bs[kDynamic ? 1 : 2][kDynamic ? 8 : kBsElems];
  extern __shared__ __align__(16) unsigned char matmul_tc_cp_smem[];
  constexpr int kStages = kCpStages ? kCpStages : 2;
  // Stage s of A at as_base + s * kAsElems, of B at bs_base + s * kBsElems.
  T* const as_base = kDynamic ? reinterpret_cast<T*>(matmul_tc_cp_smem) : &As[0][0];
  T* const bs_base = kDynamic ? as_base + kStages * kAsElems : &Bs[0][0];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t m0 = int64_t(blockIdx.y) * kBlockM, n0 = int64_t(blockIdx.x) * Tile::kBlockN;
  const int64_t M = p.m, N = p.n, K = p.k;

  // With `partial`, grid.z runs over K slices (k_split of them, maybe 1) and batch_count is 1.
  const bool split = p.partial != nullptr;
  const int64_t k_tiles_all = (K + kBlockK - 1) / kBlockK;
  const int64_t kt_lo = split ? k_tiles_all * blockIdx.z / p.k_split : 0;
  const int64_t kt_hi = split ? k_tiles_all * (blockIdx.z + 1) / p.k_split : k_tiles_all;
  for (int64_t batch = split ? 0 : blockIdx.z; batch < p.batch_count; batch += split ? p.batch_count : gridDim.z) {
    int64_t a_off = 0, b_off = 0, rest = batch;
    for (int i = p.batch_rank - 1; i >= 0; --i) {
      int64_t idx = rest % p.batch_dims[i];
      rest /= p.batch_dims[i];
      a_off += idx * p.a_batch_stride[i];
      b_off += idx * p.b_batch_stride[i];
    }
    const T* A = static_cast<const T*>(p.a) + a_off;
    const T* B = static_cast<const T*>(p.b) + b_off;

    // Dense 16-byte segments (the register loads of kDenseVec, cp.async): each thread's segment sources
    // are fixed but for k: a base pointer, the k step between tiles (1 along a row, else a row's
    // length), the fixed coordinate's check and the k offset inside the tile.
    const T* a_src[kASegs];
    const T* b_src[kBSegs];
    bool a_in[kASegs], b_in[kBSegs];
    if constexpr (kDenseVec) {
#pragma unroll
      for (int i = 0; i < kASegs; ++i) {
        const int v = tid + i * kThreads, k = ASeg::K(v), mn = ASeg::MN(v);
        a_in[i] = m0 + mn < M;
        a_src[i] = kTransA ? A + int64_t(k) * M + m0 + mn : A + (m0 + mn) * K + k;
      }
#pragma unroll
      for (int i = 0; i < kBSegs; ++i) {
        const int v = tid + i * kThreads, k = BSeg::K(v), mn = BSeg::MN(v);
        b_in[i] = n0 + mn < N;
        b_src[i] = kTransB ? B + (n0 + mn) * K + k : B + int64_t(k) * N + n0 + mn;
      }
    }
    // Each thread moves kASegs 8-element segments of the A tile and kBSegs of the B tile. Dense
    // operands with 16-byte loads (kDenseVec) take them from the per-thread pointers above, one
    // predicate each; others through LoadSegment / BSource::Load, which check every coordinate.
    uint4 ra[kASegs], rb[kBSegs];
    auto load_tiles = [&](int64_t k0) {
      if constexpr (kDenseVec) {
        const int k_rem = K - k0 < kBlockK ? int(K - k0) : kBlockK;  // the tile's k extent
#pragma unroll
        for (int i = 0; i < kASegs; ++i) {
          const int k = ASeg::K(tid + i * kThreads);
          ra[i] = make_uint4(0, 0, 0, 0);
          if (a_in[i] && k < k_rem) ra[i] = __ldg(reinterpret_cast<const uint4*>(a_src[i] + k0 * (kTransA ? M : 1)));
        }
#pragma unroll
        for (int i = 0; i < kBSegs; ++i) {
          const int k = BSeg::K(tid + i * kThreads);
          rb[i] = make_uint4(0, 0, 0, 0);
          if (b_in[i] && k < k_rem) rb[i] = __ldg(reinterpret_cast<const uint4*>(b_src[i] + k0 * (kTransB ? 1 : N)));
        }
      } else {
#pragma unroll
        for (int i = 0; i < kASegs; ++i) {
          const int v = tid + i * kThreads;
          const int64_t m = m0 + ASeg::MN(v), k = k0 + ASeg::K(v);
          ra[i] = kTransA ? LoadSegment<T, kVec>(A, k, m, K, M, M) : LoadSegment<T, kVec>(A, m, k, M, K, K);
        }
#pragma unroll
        for (int i = 0; i < kBSegs; ++i) {
          const int v = tid + i * kThreads;
          const int64_t n = n0 + BSeg::MN(v), k = k0 + BSeg::K(v);
          rb[i] = kTransB ? src.template Load<T, kVec>(B, n, k, N, K) : src.template Load<T, kVec>(B, k, n, K, N);
        }
      }
    };
    auto store_tiles = [&](int stage) {
      T* as = as_base + stage * kAsElems;
      T* bs = bs_base + stage * kBsElems;
#pragma unroll
      for (int i = 0; i < kASegs; ++i) *reinterpret_cast<uint4*>(&as[ASeg::Smem(tid + i * kThreads)]) = ra[i];
#pragma unroll
      for (int i = 0; i < kBSegs; ++i) *reinterpret_cast<uint4*>(&bs[BSeg::Smem(tid + i * kThreads)]) = rb[i];
    };
    auto copy_tiles = [&](int64_t k0, int stage) {
      T* as = as_base + stage * kAsElems;
      T* bs = bs_base + stage * kBsElems;
#pragma unroll
      for (int i = 0; i < kASegs; ++i) {
        const int v = tid + i * kThreads;
        const bool a_ok = a_in[i] && k0 + ASeg::K(v) < K;
        const T* a_g = a_src[i] + k0 * (kTransA ? M : 1);
        ptx::CpAsync16(&as[ASeg::Smem(v)], a_ok ? a_g : A, a_ok);
      }
#pragma unroll
      for (int i = 0; i < kBSegs; ++i) {
        const int v = tid + i * kThreads;
        const bool b_ok = b_in[i] && k0 + BSeg::K(v) < K;
        const T* b_g = b_src[i] + k0 * (kTransB ? 1 : N);
        ptx::CpAsync16(&bs[BSeg::Smem(v)], b_ok ? b_g : B, b_ok);
      }
    };

    float acc[4][kNi][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kNi; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    // The tensor-core work on one shared stage (its A and B tiles' shared addresses): two k16 steps of
    // the warp's 4 x kNi mma tiles. Each lane's ldmatrix row offsets (step 0, tile 0) are fixed; steps
    // and tiles add constants.
    const int mat = lane >> 3, mat_row = lane & 7;
    const uint32_t a_lane =
        2 * (kTransA ? ((mat >> 1) * 8 + mat_row) * kLdAkm + warp_m * 64 + (mat & 1) * 8  // (m 0-7 | 8-15, k 0-7 | 8-15)
                     : (warp_m * 64 + (lane & 15)) * kLdA + (lane >> 4) * 8);
    const uint32_t b_lane = 2 * (kTransB ? (warp_n * kWarpN + (mat >> 1) * 8 + mat_row) * kLdBnk + (mat & 1) * 8
                                         : ((mat & 1) * 8 + mat_row) * kLdBkn + warp_n * kWarpN + (mat >> 1) * 8);
    // Software-pipelined against ldmatrix latency (with 2 warps a scheduler little else hides it):
    // the next k16 step's A fragments load during this step's mma, B's in pairs of n8 tiles one pair
    // ahead. ptxas keeps this schedule for [N, K] B (wide tile, 4096^3: 0.547 ms against 0.584 with
    // all of a step's fragments loaded before its mma) and compiles [K, N] B to the same code as that.
    auto load_a = [&](uint32_t (&af)[4][4], uint32_t as, int ks) {
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        if constexpr (kTransA) LdMatrixX4Trans(af[mi], as + a_lane + 2 * (ks * 16 * kLdAkm + mi * 16));
        else LdMatrixX4(af[mi], as + a_lane + 2 * (mi * 16 * kLdA + ks * 16));
      }
    };
    auto load_b = [&](uint32_t (&bf)[4], uint32_t bs, int ks, int nj) {  // n8 tiles 2 nj, 2 nj + 1
      if constexpr (kTransB) LdMatrixX4(bf, bs + b_lane + 2 * (nj * 16 * kLdBnk + ks * 16));
      else LdMatrixX4Trans(bf, bs + b_lane + 2 * (ks * 16 * kLdBkn + nj * 16));
    };
    auto mma_stage = [&](uint32_t as, uint32_t bs) {
      constexpr int kSteps = kBlockK / 16;
      uint32_t af[2][4][4];
      load_a(af[0], as, 0);
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
        if (ks + 1 < kSteps) load_a(af[(ks + 1) & 1], as, ks + 1);
        uint32_t bf[2][4];
        load_b(bf[0], bs, ks, 0);
#pragma unroll
        for (int nj = 0; nj < kNi / 2; ++nj) {
          if (nj + 1 < kNi / 2) load_b(bf[(nj + 1) & 1], bs, ks, nj + 1);
#pragma unroll
          for (int mi = 0; mi < 4; ++mi) {
            Mma16816<T>(acc[mi][2 * nj], af[ks & 1][mi], &bf[nj & 1][0]);
            Mma16816<T>(acc[mi][2 * nj + 1], af[ks & 1][mi], &bf[nj & 1][2]);
          }
        }
      }
    };
    const uint32_t as_smem = ptx::SmemAddr(as_base), bs_smem = ptx::SmemAddr(bs_base);
    constexpr uint32_t kAsStageBytes = kAsElems * sizeof(T), kBsStageBytes = kBsElems * sizeof(T);

    if constexpr (kCpStages == 0) {
      if (kt_lo < kt_hi) {
        load_tiles(kt_lo * kBlockK);
        store_tiles(0);
      }
      __syncthreads();
      for (int64_t kt = kt_lo; kt < kt_hi; ++kt) {
        const int stage = (kt - kt_lo) & 1;
        const bool next = kt + 1 < kt_hi;
        if (next) load_tiles((kt + 1) * kBlockK);  // in flight during the mma below
        mma_stage(as_smem + stage * kAsStageBytes, bs_smem + stage * kBsStageBytes);
        if (next) store_tiles(stage ^ 1);
        __syncthreads();
      }
    } else {
      // Prologue: tiles 0 .. kCpStages - 2 in flight, one commit group each (empty past the slice, so
      // the group count, and with it the wait below, stays the same for every K step).
#pragma unroll
      for (int s = 0; s < kCpStages - 1; ++s) {
        if (kt_lo + s < kt_hi) copy_tiles((kt_lo + s) * kBlockK, s);
        ptx::CpAsyncCommit();
      }
      int read = 0, write = kCpStages - 1;
      for (int64_t kt = kt_lo; kt < kt_hi; ++kt) {
        // Step i has committed kCpStages - 1 + i groups: at most kCpStages - 2 pending leaves group i
        // (tile kt) complete for this thread; the barrier makes every thread's copies visible and
        // ends every warp's reads of step i - 1's stage, the one refilled after the mma below
        // (issued after it, not before: before, ptxas spilled 72-100 bytes at the 128-register cap
        // of two blocks per SM; after, none, with kCpStages - 2 tiles in flight during the mma).
        ptx::CpAsyncWait<kCpStages - 2>();
        __syncthreads();
        mma_stage(as_smem + read * kAsStageBytes, bs_smem + read * kBsStageBytes);
        if (kt + kCpStages - 1 < kt_hi) copy_tiles((kt + kCpStages - 1) * kBlockK, write);
        ptx::CpAsyncCommit();
        read = read + 1 == kCpStages ? 0 : read + 1;
        write = write + 1 == kCpStages ? 0 : write + 1;
      }
      ptx::CpAsyncWait<0>();  // (only empty groups left)
      __syncthreads();        // every warp done with the ring before the next batch's prologue
    }

    // Epilogue: fragments straight to global memory, edges skipped.
    const int64_t y_off = batch * M * N;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          int64_t row = m0 + warp_m * 64 + mi * 16 + (lane >> 2) + h * 8;
          int64_t col = n0 + warp_n * kWarpN + ni * 8 + (lane & 3) * 2;
          if (row >= M) continue;
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            if (col + e >= N) continue;
            float v = acc[mi][ni][h * 2 + e];
            int64_t idx = y_off + row * N + col + e;
            if (split) p.partial[int64_t(blockIdx.z) * M * N + row * N + col + e] = v;
            else StoreElem<T>(p.y, idx, v, p.out_type == MatmulElem::kF32);
          }
        }
  }
}

// Y = the fixed-order sum of the k_split slices in `partial`, rounded once to Y's type. kVec
// consecutive elements a thread, one load of kVec floats a slice: the launcher takes kVec = 4
// (16-byte loads) where M N % 4 == 0 and `partial` is 16-byte aligned, so a warp keeps 4x the bytes
// in flight per round of L2 latency (the kernel is latency-bound at the small shapes that split K).
template <typename T, int kVec>
__global__ void __launch_bounds__(256) MatmulTcCombineKernel(MatmulTcParams p) {
  static_assert(kVec == 1 || kVec == 4, "float or float4 loads");
  using V = std::conditional_t<kVec == 4, float4, float>;
  const int64_t units = p.m * p.n / kVec;
  const V* part = reinterpret_cast<const V*>(p.partial);
  for (int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; u < units; u += int64_t(gridDim.x) * blockDim.x) {
    float sum[kVec] = {};
#pragma unroll 4
    for (int64_t z = 0; z < p.k_split; ++z) {
      const V v = part[z * units + u];
#pragma unroll
      for (int i = 0; i < kVec; ++i) sum[i] += reinterpret_cast<const float*>(&v)[i];
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) StoreElem<T>(p.y, kVec * u + i, sum[i], p.out_type == MatmulElem::kF32);
  }
}

// MatmulTcGrad's f32 dY rounded to the operands' type (the tensor cores multiply 16-bit values).
template <typename T>
__global__ void __launch_bounds__(256) MatmulTcRoundKernel(const float* x, T* y, int64_t count) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += int64_t(gridDim.x) * blockDim.x)
    StoreElem<T>(y, e, x[e], false);
}

// X[x] = the fixed-order sum over output batches t with x(t) == x of the f32 products P[t] (each
// `matrix` elements), rounded once: MatmulTcGrad's gradient of an operand that broadcasts over
// some batch dims. x(t) is the operand's matrix index, from its batch strides (in elements).
template <typename T>
__global__ void __launch_bounds__(256) MatmulTcBatchSumKernel(MatmulTcBatchSum s) {
  const int64_t total = s.x_count * s.matrix;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = e / s.matrix, i = e % s.matrix;
    float sum = 0.f;
    for (int64_t t = 0; t < s.batch_count; ++t) {
      int64_t off = 0, rest = t;
      for (int d = s.batch_rank - 1; d >= 0; --d) {
        off += rest % s.batch_dims[d] * s.x_batch_stride[d];
        rest /= s.batch_dims[d];
      }
      if (off / s.matrix == x) sum += s.products[t * s.matrix + i];
    }
    StoreElem<T>(s.x, e, sum, false);
  }
}

}  // namespace matmul_tc
}  // namespace kaio
