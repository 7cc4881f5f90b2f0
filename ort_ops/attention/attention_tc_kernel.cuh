// AttentionTc / AttentionTcCausal forward, KAIO's design: a query tile's scores in shared memory,
// tensor cores (mma.sync m16n8k16, f32 accumulation) for both products.
//
// Block = 4 warps and block_m (16, 32 or 64, chosen at launch) query rows of one (batch, head).
//  1. S = scale * log2(e) * Q K^T for every key the tile sees: K streams through a two-stage
//     cp.async ring of 64-key chunks; the f32 scores go to a shared tile [block_m][ScoreLd(Sk)].
//     Warp w computes the 16-row tile w % (block_m / 16) against 64 / (4 / (block_m / 16)) keys of
//     each chunk. No masking here: phase 2 reads only the keys a row sees.
//  2. Row softmax in shared memory, one warp per row: max over the visible keys, P = exp2(s - max)
//     rounded to T (the tensor cores' operand type) and written in place over the row's scores (a T
//     takes half a float: element j lands on bytes already read), zeros for the keys the row does not
//     see up to the last chunk phase 3 reads; 1 / (sum of the rounded P) per row. A row that sees no
//     key gets P = 0 and 1 / sum = 0: O = 0, as the CPU kernel.
//  3. O = P V: V streams through the same ring (its first chunk loads during phase 2, over the
//     Q and K stages phase 1 no longer needs); warp w computes the 16-row tile w % (block_m / 16)
//     for kD / (4 / (block_m / 16)) columns, P's fragments by ldmatrix from the shared rows. O is
//     scaled by 1 / sum and rounded once to float or T.
// Causal (bottom-right aligned, query i sees keys j <= i + Sk - Sq): the tile visits the keys up to
// its last row's diagonal only, and a warp skips key blocks past its own rows' diagonal in both
// products; causal tiles run longest first.
//
// kD is the head-dim tile (64, 128, 256) holding D and Dv; columns past them are zero-filled on load
// and never stored, rows past Sq / Sk likewise (any shape, any alignment: element loads where the
// 16-byte cp.async rules do not hold).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "attention/attention_flash_kernel.cuh"
#include "attention/attention_params.h"
#include "common/elem.cuh"
#include "common/ptx.cuh"

namespace kaio {
namespace attention_tc {

using attention_flash::kLog2e;
using attention_flash::kPad;
using attention_flash::kThreads;
using attention_flash::kWarps;

constexpr int kChunk = 64;      // keys per K / V chunk in shared memory
constexpr int kScorePad = 4;    // floats past the padded keys in a score row: the row stride is 16
                                // bytes mod 32, so ldmatrix's 8 rows of P hit distinct banks

// Floats per score row: Sk rounded up to whole chunks, plus the pad.
__host__ __device__ constexpr int64_t ScoreLd(int64_t sk) { return (sk + kChunk - 1) / kChunk * kChunk + kScorePad; }

// Dynamic shared memory of a block: scores [block_m][ScoreLd], then the staging area (the Q tile and
// two K chunks in phase 1, two V chunks in phase 3; rows of kD + kPad elements), then 1 / sum per row.
__host__ __device__ constexpr int64_t SmemBytes(int block_m, int64_t sk, int kd) {
  return int64_t(block_m) * ScoreLd(sk) * 4 + int64_t(block_m + 2 * kChunk) * (kd + kPad) * 2 + int64_t(block_m) * 4;
}

// The two-stage ring of key chunks (K in phase 1, V in phase 3; chunk 0 already issued): issues chunk
// c + 1 of `src` (rows x cols valid, row stride ld) into the stage chunk c does not use, when there is
// one, waits for chunk c and syncs the block; returns chunk c's stage. The caller syncs again after
// reading it (the next call overwrites the other stage).
template <typename T, int kD>
__device__ __forceinline__ const T* RingNext(T* ring, const T* src, int64_t ld, int c, int n_chunks, int64_t rows,
                                             int64_t cols, bool vec) {
  constexpr int kStage = kChunk * (kD + kPad);
  const int st = c & 1;
  if (c + 1 < n_chunks) {
    attention_flash::LoadTile<T, kD, kChunk>(ring + (st ^ 1) * kStage, src, ld, int64_t(c + 1) * kChunk, rows, cols,
                                             vec);
    ptx::CpAsyncCommit();
    ptx::CpAsyncWait<1>();
  } else {
    ptx::CpAsyncWait<0>();
  }
  __syncthreads();
  return ring + st * kStage;
}

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads) AttentionTcKernel(AttentionFlashParams p, int block_m, bool vec) {
  static_assert(kD % 64 == 0, "a quarter of the head-dim tile must be whole 16-column blocks");
  constexpr int kLd = kD + kPad, kN = kChunk;
  extern __shared__ __align__(16) unsigned char smem[];
  const int ld_s = static_cast<int>(ScoreLd(p.sk));
  float* scores = reinterpret_cast<float*>(smem);
  T* stage = reinterpret_cast<T*>(smem + static_cast<size_t>(block_m) * ld_s * 4);
  T* sq = stage;                    // phase 1: the Q tile, then two K chunks
  T* sk = stage + block_m * kLd;
  T* sv = stage;                    // phase 3: two V chunks
  float* inv_sum = reinterpret_cast<float*>(stage + (block_m + 2 * kN) * kLd);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row_tiles = block_m / 16;                    // 1, 2, 4
  const int rt = warp % row_tiles, part = warp / row_tiles, parts = kWarps / row_tiles;
  const int64_t q_tiles = (p.sq + block_m - 1) / block_m;
  const int64_t q_tile = p.causal ? q_tiles - 1 - blockIdx.x : blockIdx.x;  // causal: longest tiles first
  const int64_t h = blockIdx.y, b = blockIdx.z, kvh = h / (p.hq / p.hkv);
  const int64_t m0 = q_tile * block_m;
  const T* Q = static_cast<const T*>(p.q) + b * p.q_str.batch + h * p.q_str.head;
  const T* K = static_cast<const T*>(p.k) + b * p.k_str.batch + kvh * p.k_str.head;
  const T* V = static_cast<const T*>(p.v) + b * p.v_str.batch + kvh * p.v_str.head;
  const int64_t diag = p.sk - p.sq;  // causal: query i sees keys j <= i + diag

  // Keys any row of the tile sees, in whole chunks; keys at or past warp_key_end are seen by no row
  // of the warp's 16-row tile.
  const int64_t kv_end = p.causal ? max(int64_t(0), min(p.sk, m0 + block_m + diag)) : p.sk;
  const int n_chunks = static_cast<int>((kv_end + kN - 1) / kN);
  const int64_t warp_key_end = p.causal ? m0 + rt * 16 + 16 + diag : p.sk;
  const float scale_log2 = p.scale * kLog2e;

  // ---- Phase 1: scores. The warp's 16-key blocks of a chunk: part * row_tiles + j, j < row_tiles.
  if (n_chunks > 0) {
    for (int g = 0; g < row_tiles; ++g)
      attention_flash::LoadTile<T, kD, 16>(sq + g * 16 * kLd, Q, p.q_str.row, m0 + g * 16, p.sq, p.d, vec);
    attention_flash::LoadTile<T, kD, kN>(sk, K, p.k_str.row, 0, p.sk, p.d, vec);
    ptx::CpAsyncCommit();
  }
  for (int c = 0; c < n_chunks; ++c) {
    const T* k_tile = RingNext<T, kD>(sk, K, p.k_str.row, c, n_chunks, p.sk, p.d, vec);
    const int kb0 = part * row_tiles;           // the warp's first 16-key block in the chunk
    const int64_t key0 = int64_t(c) * kN + kb0 * 16;
    if (key0 < warp_key_end) {
      float s[4][2][4];
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][0][e] = s[j][1][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        uint32_t a[4];
        ptx::LdMatrixX4(a, sq + (rt * 16 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j < row_tiles) {
            uint32_t bk[4];
            ptx::LdMatrixX4(bk, k_tile + ((kb0 + j) * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + kk * 16 +
                                    ((lane >> 3) & 1) * 8);
            ptx::Mma16816<T>(s[j][0], a, bk);
            ptx::Mma16816<T>(s[j][1], a, bk + 2);
          }
        }
      }
      // Accumulator layout: rows lane / 4 (+ 8), columns 2 (lane % 4) (+ 1) of each 8-key half.
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (j < row_tiles) {
#pragma unroll
          for (int half = 0; half < 2; ++half)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              const int row = rt * 16 + (lane >> 2) + r * 8;
              const int64_t col = key0 + j * 16 + half * 8 + (lane & 3) * 2;
              *reinterpret_cast<float2*>(scores + row * ld_s + col) =
                  make_float2(s[j][half][2 * r] * scale_log2, s[j][half][2 * r + 1] * scale_log2);
            }
        }
      }
    }
    __syncthreads();  // the stage just read is the one the next iteration's loads overwrite
  }

  // The first V chunk loads while the softmax runs (the staging area is free: phase 1 is done).
  if (n_chunks > 0) {
    attention_flash::LoadTile<T, kD, kN>(sv, V, p.v_str.row, 0, p.sk, p.dv, vec);
    ptx::CpAsyncCommit();
  }

  // ---- Phase 2: softmax, one warp per row; P (in T) over the row's scores, up to p_end keys.
  const int p_end = n_chunks * kN;
  for (int r = warp; r < block_m; r += kWarps) {
    const int64_t i = m0 + r;
    int64_t n = 0;  // keys the row sees (a prefix)
    if (i < p.sq) n = p.causal ? min(p.sk, max(int64_t(0), i + diag + 1)) : p.sk;
    float* srow = scores + r * ld_s;
    float mx = -INFINITY;
    for (int64_t j = lane; j < n; j += 32) mx = fmaxf(mx, srow[j]);
#pragma unroll
    for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    T* prow = reinterpret_cast<T*>(srow);
    float sum = 0.f;
    for (int j0 = 0; j0 < p_end; j0 += 32) {
      const int j = j0 + lane;
      const float x = j < n ? srow[j] : 0.f;
      // P[j] covers bytes of score j / 2: read by this iteration (j0 = 0) or an earlier one.
      __syncwarp();
      const T e = FromFloat<T>(j < n ? exp2f(x - mx) : 0.f);
      sum += static_cast<float>(e);
      prow[j] = e;
    }
#pragma unroll
    for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) inv_sum[r] = n > 0 ? 1.f / sum : 0.f;  // sum >= 1: the row's max gives exp2(0)
  }
  __syncthreads();  // P and inv_sum complete (also when no chunk follows)

  // ---- Phase 3: O = P V. The warp's 16-column blocks of O: col0 / 16 + n, n < n_blocks.
  constexpr int kOB = kD / 16;
  const int n_blocks = kOB / parts, col0 = part * (kD / parts);
  const T* P = reinterpret_cast<const T*>(scores);
  const int ld_p = 2 * ld_s;  // T elements per P row
  float o[kOB][2][4];
#pragma unroll
  for (int n = 0; n < kOB; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][0][e] = o[n][1][e] = 0.f;
  for (int c = 0; c < n_chunks; ++c) {
    const T* v_tile = RingNext<T, kD>(sv, V, p.v_str.row, c, n_chunks, p.sk, p.dv, vec);
#pragma unroll
    for (int ks = 0; ks < kN / 16; ++ks) {
      const int key0 = c * kN + ks * 16;
      if (key0 >= warp_key_end) break;  // P is zero there for every row of the warp
      uint32_t a[4];
      ptx::LdMatrixX4(a, P + (rt * 16 + (lane & 15)) * ld_p + key0 + (lane >> 4) * 8);
#pragma unroll
      for (int n = 0; n < kOB; ++n) {
        if (n < n_blocks) {
          uint32_t bv[4];
          ptx::LdMatrixX4Trans(bv, v_tile + (ks * 16 + (lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + col0 + n * 16 +
                                       (lane >> 4) * 8);
          ptx::Mma16816<T>(o[n][0], a, bv);
          ptx::Mma16816<T>(o[n][1], a, bv + 2);
        }
      }
    }
    __syncthreads();  // as in phase 1
  }

  // ---- Epilogue: O = (P V) / sum, rounded once.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rt * 16 + (lane >> 2) + r * 8;
    const int64_t i = m0 + row;
    if (i >= p.sq) continue;
    const float inv = inv_sum[row];
    const int64_t o_row = b * p.o_str.batch + h * p.o_str.head + i * p.o_str.row;
#pragma unroll
    for (int n = 0; n < kOB; ++n) {
      if (n < n_blocks) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int64_t col = col0 + n * 16 + half * 8 + (lane & 3) * 2;
          if (col < p.dv) StoreElem<T>(p.o, o_row + col, o[n][half][2 * r] * inv, p.out_f32);
          if (col + 1 < p.dv) StoreElem<T>(p.o, o_row + col + 1, o[n][half][2 * r + 1] * inv, p.out_f32);
        }
      }
    }
  }
}

}  // namespace attention_tc
}  // namespace kaio
