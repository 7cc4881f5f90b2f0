// FlashAttention-2 forward with mma.sync m16n8k16 (sm_80+).
//
// Block = 4 warps and a tile of 64 * kMT query rows of one (batch, head); each warp owns 16 * kMT
// rows (kMT = 2 reads each K/V fragment from shared memory once for two row tiles: ldmatrix
// traffic, not the tensor cores, bounds this kernel). The
// block walks the K/V sequence in tiles of kBlockN keys through a two-stage cp.async ring (tile
// t + 1 loads while tile t is computed). Per tile a warp computes S = Q K^T (ldmatrix from shared
// memory), masks it (keys past Sk, the bottom-right causal triangle), updates its rows' running
// max and sum (online softmax in base 2, scale * log2(e) folded into the scores), and adds
// P V to its f32 output accumulators, P going from the S accumulators to mma's A operand in
// registers. Nothing of size Sq x Sk is ever stored.
//
// kD is the head dim rounded up to a supported tile width (32, 64, 96, 128, 256); the real D and
// Dv may be smaller: columns past them are zero-filled on load and never stored. Rows past Sq/Sk
// are zero-filled too, so any shape works. Split-KV (flash-decoding): with splits > 1 each block
// takes one slice of the K/V tiles and writes its normalised partial O and LSE to a workspace;
// AttentionCombineKernel merges the slices.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "attention/attention_params.h"
#include "common/elem.cuh"
#include "common/ptx.cuh"

namespace kaio {
namespace attention_flash {

constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kPad = 8;  // halves of padding per shared row: ldmatrix rows hit distinct banks
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// kMT: 16-row tiles per warp (1 or 2). kBlockN: keys per K/V tile, narrower where the f32
// accumulators (kMT * (kD + kBlockN) / 2 per thread) would not fit the registers.
template <int kD, int kMT>
struct Tiles {
  static constexpr int kBlockM = kWarps * 16 * kMT;
  static constexpr int kBlockN = (kMT == 2 ? kD > 64 : kD > 128) ? 32 : 64;
  static constexpr int kLd = kD + kPad;
  static constexpr int kQElems = kBlockM * kLd, kKVElems = kBlockN * kLd;
  static constexpr int kSmemBytes = (kQElems + 4 * kKVElems) * 2;  // Q + two stages of K and V
};

// Where split-KV blocks put their slices: o [split][row][Dv] (normalised), lse [split][row],
// row = (b * Hq + h) * Sq + i. splits == 1: no workspace, blocks write O and LSE directly.
struct SplitKv {
  float* o = nullptr;
  float* lse = nullptr;
  int splits = 1;
};

// Rows [row0, row0 + kRows) of one head's matrix (row stride `ld` elements, `rows` valid rows,
// `cols` valid columns) into a shared tile of kRows x kD (row stride kD + kPad), zero-filled
// outside. vec: 16-byte cp.async (cols % 8 == 0, 16-byte aligned rows); else element loads.
template <typename T, int kD, int kRows>
__device__ __forceinline__ void LoadTile(T* tile, const T* base, int64_t ld, int64_t row0, int64_t rows, int64_t cols,
                                         bool vec) {
  constexpr int kChunks = kD / 8, kLd = kD + kPad;
#pragma unroll
  for (int i = 0; i < (kRows * kChunks + kThreads - 1) / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c >= kRows * kChunks) break;
    const int r = c / kChunks, col = (c % kChunks) * 8;
    T* dst = tile + r * kLd + col;
    const int64_t row = row0 + r;
    if (vec) {
      const bool in = row < rows && col < cols;
      ptx::CpAsync16(dst, in ? base + row * ld + col : base, in);
    } else {
      uint16_t h[8];
      const uint16_t* src = reinterpret_cast<const uint16_t*>(base + (row < rows ? row * ld : 0) + col);
#pragma unroll
      for (int e = 0; e < 8; ++e) h[e] = row < rows && col + e < cols ? src[e] : 0;
      *reinterpret_cast<uint4*>(dst) = make_uint4(h[0] | (uint32_t(h[1]) << 16), h[2] | (uint32_t(h[3]) << 16),
                                                  h[4] | (uint32_t(h[5]) << 16), h[6] | (uint32_t(h[7]) << 16));
    }
  }
}

// One step of a two-stage K/V ring of kN-row tiles (stage_elems elements per stage): when has_next,
// loads K and V rows [next_row, next_row + kN) into stage `stage ^ 1`; then waits until this
// thread's loads of the current stage have landed (a __syncthreads must follow before reading).
template <typename T, int kD, int kN>
__device__ __forceinline__ void KvRingStep(T* sk, T* sv, int stage_elems, int stage, bool has_next, int64_t next_row,
                                           const T* K, const T* V, int64_t k_ld, int64_t v_ld, int64_t rows,
                                           int64_t d, int64_t dv, bool vec) {
  if (has_next) {
    LoadTile<T, kD, kN>(sk + (stage ^ 1) * stage_elems, K, k_ld, next_row, rows, d, vec);
    LoadTile<T, kD, kN>(sv + (stage ^ 1) * stage_elems, V, v_ld, next_row, rows, dv, vec);
    ptx::CpAsyncCommit();
    ptx::CpAsyncWait<1>();
  } else {
    ptx::CpAsyncWait<0>();
  }
}

// Where result row (b, h, i) goes: its split-KV slice (f32, normalised) or O, and its LSE (natural
// log; nullptr when not requested).
struct RowTarget {
  float* part;     // split-KV slice row, or nullptr: O at o_offset
  int64_t o_offset;
  float* lse;
};
__device__ __forceinline__ RowTarget TargetOf(const AttentionFlashParams& p, const SplitKv& split, int64_t split_index,
                                              int64_t b, int64_t h, int64_t i) {
  const int64_t row = (b * p.hq + h) * p.sq + i;
  if (split.splits > 1) {
    const int64_t slot = split_index * p.batch * p.hq * p.sq + row;
    return {split.o + slot * p.dv, 0, split.lse + slot};
  }
  return {nullptr, b * p.o_str.batch + h * p.o_str.head + i * p.o_str.row, p.lse ? p.lse + row : nullptr};
}
template <typename T>
__device__ __forceinline__ void Store(const AttentionFlashParams& p, const RowTarget& t, int64_t col, float v) {
  if (t.part) t.part[col] = v;
  else StoreElem<T>(p.o, t.o_offset + col, v, p.out_f32);
}

// One K/V tile's online-softmax step for a 16-row mma tile in accumulator layout (a thread holds
// rows lane / 4 and + 8, columns 2 (lane % 4) and + 1 of each 8-column block). s: the tile's
// base-2 logits, -inf where masked. Updates the rows' running max and (quad-partial) sum, rescales
// the output accumulators, and leaves the probabilities P in s.
template <int kSN, int kON>
__device__ __forceinline__ void SoftmaxStep(float (&s)[kSN][4], float (&row_max)[2], float (&row_sum)[2],
                                            float (&o_acc)[kON][4]) {
  float tile_max[2] = {row_max[0], row_max[1]};
#pragma unroll
  for (int n = 0; n < kSN; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[n][e]);
  float base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    base[r] = tile_max[r] == -INFINITY ? 0.f : tile_max[r];  // a row that has seen no key yet
    const float corr = exp2f(row_max[r] - base[r]);
    row_max[r] = tile_max[r];
    row_sum[r] *= corr;
#pragma unroll
    for (int n = 0; n < kON; ++n) {
      o_acc[n][2 * r] *= corr;
      o_acc[n][2 * r + 1] *= corr;
    }
  }
#pragma unroll
  for (int n = 0; n < kSN; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[n][e] = exp2f(s[n][e] - base[e >> 1]);
      row_sum[e >> 1] += s[n][e];
    }
}

// P's keys [16 j, 16 j + 16) as mma's A fragment (two 8-column accumulator blocks = one k16 step).
template <typename T, int kSN>
__device__ __forceinline__ void PFragment(const float (&s)[kSN][4], int j, uint32_t (&a)[4]) {
  a[0] = ptx::Pack2<T>(s[2 * j][0], s[2 * j][1]);
  a[1] = ptx::Pack2<T>(s[2 * j][2], s[2 * j][3]);
  a[2] = ptx::Pack2<T>(s[2 * j + 1][0], s[2 * j + 1][1]);
  a[3] = ptx::Pack2<T>(s[2 * j + 1][2], s[2 * j + 1][3]);
}

// The quad-partial row sums of SoftmaxStep, summed over the 4 lanes that share the rows.
__device__ __forceinline__ void QuadSum(float (&row_sum)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
}

template <typename T, int kD, int kMT>
__global__ void __launch_bounds__(kThreads) AttentionFlashKernel(AttentionFlashParams p, SplitKv split, bool vec) {
  using Tl = Tiles<kD, kMT>;
  constexpr int kM = Tl::kBlockM, kN = Tl::kBlockN, kLd = Tl::kLd, kSN = kN / 8, kON = kD / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem);
  T* sk = sq + Tl::kQElems;        // stages 0, 1
  T* sv = sk + 2 * Tl::kKVElems;   // stages 0, 1

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t q_tiles = (p.sq + kM - 1) / kM;
  const int64_t q_tile = blockIdx.x % q_tiles, split_index = blockIdx.x / q_tiles;
  const int64_t h = blockIdx.y, b = blockIdx.z, kvh = h / (p.hq / p.hkv);
  const int64_t m0 = q_tile * kM;
  const T* Q = static_cast<const T*>(p.q) + b * p.q_str.batch + h * p.q_str.head;
  const T* K = static_cast<const T*>(p.k) + b * p.k_str.batch + kvh * p.k_str.head;
  const T* V = static_cast<const T*>(p.v) + b * p.v_str.batch + kvh * p.v_str.head;
  const int64_t diag = p.sk - p.sq;  // causal: query i sees keys j <= i + diag

  // The K/V tiles this block visits: all keys any of its rows sees, then this split's slice.
  const int64_t kv_end = p.causal ? max(int64_t(0), min(p.sk, m0 + kM + diag)) : p.sk;
  const int64_t n_tiles = (kv_end + kN - 1) / kN;
  int64_t t_begin = 0, t_end = n_tiles;
  if (split.splits > 1) {
    const int64_t per = (n_tiles + split.splits - 1) / split.splits;
    t_begin = min(n_tiles, split_index * per);
    t_end = min(n_tiles, t_begin + per);
  }

  const int warp_tile_row = warp * 16 * kMT;  // the warp's first row in the Q tile
  const int64_t warp_row0 = m0 + warp_tile_row;
  const bool warp_active = warp_row0 < p.sq;
  const int64_t warp_key_end = p.causal ? warp_row0 + 16 * kMT + diag : p.sk;  // keys past it: masked in every row
  const float scale_log2 = p.scale * kLog2e;

  // Thread (lane) holds rows warp_row0 + 16 mt + lane / 4 (+ 8) and, per 8-column block, the
  // columns 2 (lane % 4) and + 1: mma's accumulator layout.
  float o_acc[kMT][kON][4];
  float row_max[kMT][2], row_sum[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int n = 0; n < kON; ++n) o_acc[mt][n][0] = o_acc[mt][n][1] = o_acc[mt][n][2] = o_acc[mt][n][3] = 0.f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  if (t_begin < t_end) {
    LoadTile<T, kD, kM>(sq, Q, p.q_str.row, m0, p.sq, p.d, vec);
    LoadTile<T, kD, kN>(sk, K, p.k_str.row, t_begin * kN, p.sk, p.d, vec);
    LoadTile<T, kD, kN>(sv, V, p.v_str.row, t_begin * kN, p.sk, p.dv, vec);
    ptx::CpAsyncCommit();
  }
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int stage = static_cast<int>((t - t_begin) & 1);
    KvRingStep<T, kD, kN>(sk, sv, Tl::kKVElems, stage, t + 1 < t_end, (t + 1) * kN, K, V, p.k_str.row, p.v_str.row,
                          p.sk, p.d, p.dv, vec);
    __syncthreads();
    const int64_t n0 = t * kN;
    if (warp_active && n0 < warp_key_end) {
      const T* k_tile = sk + stage * Tl::kKVElems;
      const T* v_tile = sv + stage * Tl::kKVElems;
      // S = Q K^T for the warp's rows x kN keys; each K fragment serves all kMT row tiles.
      float s[kMT][kSN][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int n = 0; n < kSN; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        uint32_t a[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
          ptx::LdMatrixX4(a[mt], sq + (warp_tile_row + mt * 16 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int j = 0; j < kN / 16; ++j) {
          uint32_t bk[4];
          ptx::LdMatrixX4(bk, k_tile + (j * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            ptx::Mma16816<T>(s[mt][2 * j], a[mt], bk);
            ptx::Mma16816<T>(s[mt][2 * j + 1], a[mt], bk + 2);
          }
        }
      }
      // Scale into base-2 logits; mask keys past Sk and, causal, past each row's diagonal.
      const bool masked = n0 + kN > p.sk || (p.causal && n0 + kN - 1 > warp_row0 + diag);
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        const int64_t row_a = warp_row0 + mt * 16 + (lane >> 2);
#pragma unroll
        for (int n = 0; n < kSN; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float x = s[mt][n][e] * scale_log2;
            if (masked) {
              const int64_t key = n0 + n * 8 + (lane & 3) * 2 + (e & 1);
              if (key >= p.sk || (p.causal && key > row_a + (e >> 1) * 8 + diag)) x = -INFINITY;
            }
            s[mt][n][e] = x;
          }
        SoftmaxStep(s[mt], row_max[mt], row_sum[mt], o_acc[mt]);
      }
      // O += P V: P's accumulators become mma's A fragments (16 keys per k step); each V
      // fragment serves all kMT row tiles.
#pragma unroll
      for (int j = 0; j < kN / 16; ++j) {
        uint32_t a[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) PFragment<T>(s[mt], j, a[mt]);
#pragma unroll
        for (int n = 0; n < kD / 16; ++n) {
          uint32_t bv[4];
          ptx::LdMatrixX4Trans(bv, v_tile + (j * 16 + (lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + n * 16 + (lane >> 4) * 8);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            ptx::Mma16816<T>(o_acc[mt][2 * n], a[mt], bv);
            ptx::Mma16816<T>(o_acc[mt][2 * n + 1], a[mt], bv + 2);
          }
        }
      }
    }
    __syncthreads();  // the stage just read is the one the next iteration's loads overwrite
  }

  // Epilogue: finish the row sums across the quad, normalise, store.
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) QuadSum(row_sum[mt]);
  if (!warp_active) return;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = warp_row0 + mt * 16 + (lane >> 2) + r * 8;
      if (row >= p.sq) continue;
      const float sum = row_sum[mt][r];
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const RowTarget target = TargetOf(p, split, split_index, b, h, row);
#pragma unroll
      for (int n = 0; n < kON; ++n) {
        const int64_t col = n * 8 + (lane & 3) * 2;
        if (col < p.dv) Store<T>(p, target, col, o_acc[mt][n][2 * r] * inv);
        if (col + 1 < p.dv) Store<T>(p, target, col + 1, o_acc[mt][n][2 * r + 1] * inv);
      }
      if (target.lse && (lane & 3) == 0) *target.lse = sum > 0.f ? (row_max[mt][r] + log2f(sum)) * kLn2 : -INFINITY;
    }
}

// Merges the split-KV slices of each row: O = sum_s exp(lse_s - lse) O_s. One warp per (row, 32 of
// Dv's columns), a lane per column; the slices' LSEs are read once, lane s holding slice s (and
// s + 32, ...), their max and sum reduced with shuffles, and each slice's weight broadcast to the
// lanes, so a warp waits for two rounds of loads whatever the slice count. (The previous kernel, a
// warp per row looping over the slices for each column, measured ~10 us at 8 slices on the H200.)
constexpr int kCombineThreads = 256;
template <typename T>
__global__ void __launch_bounds__(kCombineThreads) AttentionCombineKernel(AttentionFlashParams p, SplitKv split) {
  const int64_t rows = p.batch * p.hq * p.sq, col_tiles = (p.dv + 31) / 32;
  const int64_t wid = int64_t(blockIdx.x) * (kCombineThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (wid >= rows * col_tiles) return;
  const int64_t row = wid / col_tiles, col = (wid % col_tiles) * 32 + lane;
  float m = -INFINITY;
  for (int s = lane; s < split.splits; s += 32) m = fmaxf(m, split.lse[s * rows + row]);
#pragma unroll
  for (int off = 16; off; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  float sum = 0.f;
  for (int s = lane; s < split.splits; s += 32) {
    const float l = split.lse[s * rows + row];
    if (l != -INFINITY) sum += exp2f((l - m) * kLog2e);
  }
#pragma unroll
  for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  float acc = 0.f;
  const float* o = split.o + row * p.dv + (col < p.dv ? col : 0);
  for (int s0 = 0; s0 < split.splits; s0 += 32) {
    const float l = s0 + lane < split.splits ? split.lse[(s0 + lane) * rows + row] : -INFINITY;
    const float w = l == -INFINITY ? 0.f : exp2f((l - m) * kLog2e) / sum;  // slice s0 + lane's weight
    const int n = min(32, split.splits - s0);
#pragma unroll 8
    for (int j = 0; j < n; ++j) {
      const float wj = __shfl_sync(0xffffffffu, w, j);
      const float v = o[(s0 + j) * rows * p.dv];
      acc = fmaf(wj, wj != 0.f ? v : 0.f, acc);  // (a slice that saw no key adds nothing)
    }
  }
  const int64_t i = row % p.sq, bh = row / p.sq, h = bh % p.hq, b = bh / p.hq;
  if (col < p.dv) StoreElem<T>(p.o, b * p.o_str.batch + h * p.o_str.head + i * p.o_str.row + col, acc, p.out_f32);
  if (p.lse && wid % col_tiles == 0 && lane == 0) p.lse[row] = m == -INFINITY ? -INFINITY : m + logf(sum);
}

}  // namespace attention_flash
}  // namespace kaio
