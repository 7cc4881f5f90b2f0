// FlashAttention-2 backward with mma.sync m16n8k16 (sm_80+); launcher attention_flash_grad_sm80.cu.
//
// Four kernels:
// - AttentionGradPrepKernel: Dvec_i = rowsum(dO_i * O_i) in f32 (one warp per row), and dO rounded
//   to the input type into scratch where dO is float32 (the tensor cores take 16-bit operands).
// - AttentionGradKvKernel: one block per (K/V tile of kN keys, kv head, batch). K_j and V_j stay in
//   shared memory; the block walks every (query head of the kv head's group, 64-row query tile) that
//   sees any key of the tile (causal: tiles wholly above the diagonal are skipped). Each warp owns 16
//   keys (and, for the 256-wide tile, half of the dK/dV columns), so it computes the transposed
//   products: S^T = K Q^T, P^T = exp2(S^T scale log2e - LSE log2e), dP^T = V dO^T,
//   dS^T = P^T (dP^T - Dvec), and accumulates dV += P^T dO and dK += dS^T Q in registers (the
//   accumulator layout is mma's A fragment: no shared-memory round trip). dK and dV of a kv head are
//   summed over its query heads by the loop, so they need no atomics and are written once, directly
//   in K's and V's type and layout. dS^T goes to shared memory; then each warp takes 16 query rows
//   and adds dS K into dQ: f32 atomics into a dense [B, Hq, Sq, D] scratch (AttentionGradDqStore
//   rounds it to dQ afterwards), or nothing in deterministic mode.
// - AttentionGradQKernel (deterministic mode): one block per (64-row query tile, query head, batch)
//   walks the K/V tiles (two-stage cp.async ring, like the forward) and recomputes S, P, dP and dS
//   row-wise to accumulate dQ = scale dS K in registers: no atomics, a fixed summation order.
// - AttentionGradDqStore: dQ = scale * the f32 accumulator, in Q's type and layout.
//
// kD is the head-dim tile (64, 128 or 256) holding max(D, Dv); columns past D / Dv and rows past
// Sq / Sk are zero-filled on load, masked in P and never stored. Rows that see no key (LSE = -inf)
// and rows past Sq get LSE = +inf in shared memory, so P = exp2(s - inf) = 0 without a branch.
// Nothing of size Sq x Sk is ever stored.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "attention/attention_flash_kernel.cuh"
#include "attention/attention_params.h"
#include "common/elem.cuh"
#include "common/ptx.cuh"

namespace kaio {
namespace attention_grad {

using attention_flash::kLog2e;
using attention_flash::kPad;
using attention_flash::kThreads;
using attention_flash::kWarps;
using attention_flash::LoadTile;
using attention_flash::PFragment;

// What the launcher prepares for the kernels besides the op's params.
struct GradWork {
  float* dvec = nullptr;         // [B, Hq, Sq]: rowsum(dO * O)
  const void* d_o = nullptr;     // dO in the input type: the input itself, or its rounded copy
  AttentionStrides do_str;       // of d_o
  void* do_rounded = nullptr;    // where the prep kernel writes the copy (dense [B, Hq, Sq, Dv]), or nullptr
  float* dq_accum = nullptr;     // dense [B, Hq, Sq, D] f32, zeroed; nullptr: the K/V kernel adds no dQ
  bool vec = false;              // 16-byte cp.async loads of Q, K, V and d_o
};

template <int kD>
struct GradTiles {
  // The K/V kernel: warps split the 256-wide tile's dK/dV columns in two (its accumulators would
  // not fit the registers), each half recomputing S^T and dP^T for its 16 keys.
  static constexpr int kColSplit = kD > 128 ? 2 : 1;
  static constexpr int kKeyWarps = kWarps / kColSplit;
  static constexpr int kN = 16 * kKeyWarps;  // keys per block
  static constexpr int kM = 64;              // query rows per step (16 per warp in the dQ phase)
  static constexpr int kCols = kD / kColSplit;
  static constexpr int kLd = kD + kPad, kLdS = kM + kPad;
  static constexpr int kKVElems = kN * kLd, kQElems = kM * kLd, kSElems = kN * kLdS;
  static constexpr int kSmemBytes = (2 * kKVElems + 2 * kQElems + kSElems) * 2 + 2 * kM * 4;
  static constexpr int kDqChunk = 32;        // dQ columns per pass of the dQ phase
  // The dQ kernel (deterministic mode): 64 query rows, kQN keys per K/V tile, two stages.
  static constexpr int kQN = kD > 128 ? 32 : 64;
  static constexpr int kQKVElems = kQN * kLd;
  static constexpr int kQSmemBytes = (2 * kQElems + 4 * kQKVElems) * 2;
};

// acc += A B^T for one warp: A = 16 rows x kK of a row-major shared tile (a: its first row), B =
// kN rows x kK of another (b: its first row), both with row stride kLd; acc in mma's accumulator
// layout, 8 columns (rows of B) per block.
template <typename T, int kK, int kN, int kLd>
__device__ __forceinline__ void MmaABt(float (&acc)[kN / 8][4], const T* a, const T* b, int lane) {
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    uint32_t af[4];
    ptx::LdMatrixX4(af, a + (lane & 15) * kLd + kk * 16 + (lane >> 4) * 8);
#pragma unroll
    for (int j = 0; j < kN / 16; ++j) {
      uint32_t bf[4];
      ptx::LdMatrixX4(bf, b + (j * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
      ptx::Mma16816<T>(acc[2 * j], af, bf);
      ptx::Mma16816<T>(acc[2 * j + 1], af, bf + 2);
    }
  }
}

// acc += A B for one warp: A = 16 rows x 16 kSteps in registers (a[j]: mma A fragment of
// reduction indices 16 j .. 16 j + 15), B = the rows 0 .. 16 kSteps - 1 of a row-major shared tile
// (row stride kLd), kCols columns from b (read transposed by ldmatrix).
template <typename T, int kSteps, int kCols, int kLd>
__device__ __forceinline__ void MmaAB(float (&acc)[kCols / 8][4], const uint32_t (&a)[kSteps][4], const T* b,
                                      int lane) {
#pragma unroll
  for (int j = 0; j < kSteps; ++j)
#pragma unroll
    for (int n = 0; n < kCols / 16; ++n) {
      uint32_t bf[4];
      ptx::LdMatrixX4Trans(bf, b + (j * 16 + (lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + n * 16 + (lane >> 4) * 8);
      ptx::Mma16816<T>(acc[2 * n], a[j], bf);
      ptx::Mma16816<T>(acc[2 * n + 1], a[j], bf + 2);
    }
}

// An accumulator tile [kSN][4] (16 rows x 8 kSN columns) as mma A fragments over its columns.
template <typename T, int kSN>
__device__ __forceinline__ void AFragments(const float (&s)[kSN][4], uint32_t (&a)[kSN / 2][4]) {
#pragma unroll
  for (int j = 0; j < kSN / 2; ++j) PFragment<T>(s, j, a[j]);
}

template <typename T>
__device__ __forceinline__ float LoadAsFloat(const void* base, int64_t idx, bool f32) {
  return f32 ? static_cast<const float*>(base)[idx] : ToFloat<T>(static_cast<const uint16_t*>(base)[idx]);
}

// LSE in base 2 as the kernels subtract it, from the natural-log LSE (-inf: the row sees no key,
// or is past Sq): +inf there, so that P = 0.
__device__ __forceinline__ float Lse2Of(float lse) { return lse == -INFINITY ? INFINITY : lse * kLog2e; }
__device__ __forceinline__ float Lse2(const AttentionFlashGradParams& p, int64_t row_index, bool valid) {
  return Lse2Of(valid ? p.lse[row_index] : -INFINITY);
}

// The element offset of query row `row` (dense: (b Hq + h) Sq + i, as Dvec, the dQ accumulator and
// the prep and store passes count them) in a tensor of strides `str` (Q's, or O's and dO's).
__device__ __forceinline__ int64_t QueryRowOffset(const AttentionFlashGradParams& p, const AttentionStrides& str,
                                                  int64_t row) {
  const int64_t i = row % p.sq, bh = row / p.sq, h = bh % p.hq, b = bh / p.hq;
  return b * str.batch + h * str.head + i * str.row;
}

// One warp per row (b, h, i): Dvec = sum_c dO * O (f32), and dO's rounded copy.
template <typename T>
__global__ void __launch_bounds__(256) AttentionGradPrepKernel(AttentionFlashGradParams p, GradWork w) {
  const int64_t rows = p.batch * p.hq * p.sq;
  const int64_t row = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int64_t off = QueryRowOffset(p, p.o_str, row);
  float sum = 0.f;
  for (int64_t col = lane; col < p.dv; col += 32) {
    const float g = LoadAsFloat<T>(p.d_o, off + col, p.do_f32);
    sum += g * LoadAsFloat<T>(p.o, off + col, p.o_f32);
    if (w.do_rounded) StoreElem<T>(w.do_rounded, row * p.dv + col, g, false);
  }
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, s);
  if (lane == 0) w.dvec[row] = sum;
}

// The prep and store passes' vector form: 16 threads per row, each moving 8 columns (16 bytes of dO
// and O, 32 of the f32 accumulator) at a time; a block of 256 threads takes 16 rows. The scalar forms
// (a warp per row, or an element per thread, each with 64-bit index divisions) ran at a fraction of
// the memory bandwidth.
constexpr int kRowThreads = 16, kRowsPerBlock = 256 / kRowThreads;
inline unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

// Where the vector prep applies: dO and O in the input type, Dv and O's strides multiples of 8
// elements from 16-byte aligned bases (dO has O's strides).
inline bool PrepVectorizes(const AttentionFlashGradParams& p) {
  return !p.do_f32 && !p.o_f32 && p.dv % 8 == 0 && RowsAligned16(p.d_o, p.o_str) && RowsAligned16(p.o, p.o_str);
}

// Dvec_i = rowsum(dO_i * O_i), and where dq_zero the row's f32 dQ accumulator zeroed (D % 4 == 0),
// which spares a memset pass over it.
template <typename T>
__global__ void __launch_bounds__(256) AttentionGradPrepVecKernel(AttentionFlashGradParams p, GradWork w,
                                                                  bool dq_zero) {
  const int64_t rows = p.batch * p.hq * p.sq;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kRowThreads;
  const int lane = threadIdx.x % kRowThreads;
  if (row >= rows) return;  // whole 16-lane rows leave together
  const int64_t off = QueryRowOffset(p, p.o_str, row);
  float sum = 0.f;
  for (int64_t c = 8 * lane; c < p.dv; c += 8 * kRowThreads) {
    const uint4 g = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.d_o) + off + c);
    const uint4 o = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.o) + off + c);
    const uint32_t gs[4] = {g.x, g.y, g.z, g.w}, os[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 gf = ToFloat2<T>(gs[e]), of = ToFloat2<T>(os[e]);
      sum = fmaf(gf.x, of.x, fmaf(gf.y, of.y, sum));
    }
  }
  if (dq_zero)
    for (int64_t c = 4 * lane; c < p.d; c += 4 * kRowThreads)
      *reinterpret_cast<float4*>(w.dq_accum + row * p.d + c) = make_float4(0.f, 0.f, 0.f, 0.f);
  const unsigned row_lanes = 0xffffu << (threadIdx.x & 16);
#pragma unroll
  for (int s = kRowThreads / 2; s > 0; s >>= 1) sum += __shfl_xor_sync(row_lanes, sum, s);
  if (lane == 0) w.dvec[row] = sum;
}

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads) AttentionGradKvKernel(AttentionFlashGradParams p, GradWork w) {
  using Tl = GradTiles<kD>;
  constexpr int kM = Tl::kM, kN = Tl::kN, kLd = Tl::kLd, kLdS = Tl::kLdS;
  constexpr int kSN = kM / 8;          // 8-column accumulator blocks of S^T (query columns)
  constexpr int kCN = Tl::kCols / 8;   // 8-column accumulator blocks of dK / dV
  extern __shared__ __align__(16) unsigned char smem[];
  T* sk = reinterpret_cast<T*>(smem);
  T* sv = sk + Tl::kKVElems;
  T* sq = sv + Tl::kKVElems;
  T* sdo = sq + Tl::kQElems;
  T* sds = sdo + Tl::kQElems;  // dS^T [key][query]
  float* slse = reinterpret_cast<float*>(sds + Tl::kSElems);
  float* sdvec = slse + kM;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int key_row = (warp % Tl::kKeyWarps) * 16;  // the warp's first key in the tile
  const int col0 = (warp / Tl::kKeyWarps) * Tl::kCols;
  const bool writes_ds = warp < Tl::kKeyWarps;
  const int64_t n0 = int64_t(blockIdx.x) * kN, kvh = blockIdx.y, b = blockIdx.z;
  const int64_t group = p.hq / p.hkv, diag = p.sk - p.sq;
  const T* K = static_cast<const T*>(p.k) + b * p.k_str.batch + kvh * p.k_str.head;
  const T* V = static_cast<const T*>(p.v) + b * p.v_str.batch + kvh * p.v_str.head;
  const float scale_log2 = p.scale * kLog2e;

  // Query tiles that see a key of this tile: causal query i sees key n0 iff i >= n0 - diag.
  const int64_t q_tiles = (p.sq + kM - 1) / kM;
  const int64_t first_tile = p.causal ? min(q_tiles, max(int64_t(0), n0 - diag) / kM) : 0;
  const int64_t tiles = q_tiles - first_tile, steps = tiles * group;

  LoadTile<T, kD, kN>(sk, K, p.k_str.row, n0, p.sk, p.d, w.vec);
  LoadTile<T, kD, kN>(sv, V, p.v_str.row, n0, p.sk, p.dv, w.vec);
  ptx::CpAsyncCommit();

  // Step s: query head kvh * group + s / tiles, query tile first_tile + s % tiles.
  auto load_step = [&](int64_t s) {
    const int64_t h = kvh * group + s / tiles, m0 = (first_tile + s % tiles) * kM;
    const T* Q = static_cast<const T*>(p.q) + b * p.q_str.batch + h * p.q_str.head;
    const T* dO = static_cast<const T*>(w.d_o) + b * w.do_str.batch + h * w.do_str.head;
    LoadTile<T, kD, kM>(sq, Q, p.q_str.row, m0, p.sq, p.d, w.vec);
    LoadTile<T, kD, kM>(sdo, dO, w.do_str.row, m0, p.sq, p.dv, w.vec);
    ptx::CpAsyncCommit();
    for (int r = threadIdx.x; r < kM; r += kThreads) {
      const int64_t i = m0 + r, index = (b * p.hq + h) * p.sq + i;
      slse[r] = Lse2(p, index, i < p.sq);
      sdvec[r] = i < p.sq ? w.dvec[index] : 0.f;
    }
  };

  float dk[kCN][4], dv[kCN][4];
#pragma unroll
  for (int n = 0; n < kCN; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  if (steps > 0) load_step(0);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t h = kvh * group + s / tiles, m0 = (first_tile + s % tiles) * kM;
    ptx::CpAsyncWait<0>();
    __syncthreads();  // (A) Q, dO, LSE, Dvec of this step visible; every warp done with the last dS

    // Masks, in tile-local ints: key kl (of the block's tile) exists iff kl < key_lim; causal
    // query column qc sees it iff kl - qc <= diag_off. Rows past Sq: LSE = +inf gives P = 0.
    const int key_lim = static_cast<int>(min(p.sk - n0, int64_t(kN)));
    const int diag_off = static_cast<int>(max(int64_t(-kM - kN), min(int64_t(kM + kN), m0 + diag - n0)));
    const bool masked = key_lim < kN || (p.causal && kN - 1 > diag_off);

    // S^T = K Q^T for the warp's 16 keys x kM queries, then P^T in place (a thread holds keys
    // key_row + g (+ 8), query columns 8 n + 2 t4 (+ 1)).
    float st[kSN][4];
#pragma unroll
    for (int n = 0; n < kSN; ++n) st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0.f;
    MmaABt<T, kD, kM, kLd>(st, sk + key_row * kLd, sq, lane);
#pragma unroll
    for (int n = 0; n < kSN; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qc = n * 8 + t4 * 2 + (e & 1), kl = key_row + g + (e >> 1) * 8;
        float pr = exp2f(st[n][e] * scale_log2 - slse[qc]);
        if (masked && (kl >= key_lim || (p.causal && kl - qc > diag_off))) pr = 0.f;
        st[n][e] = pr;
      }
    // dV += P^T dO over the kM queries (A: P^T from registers, kept packed for dS; B: dO read
    // transposed).
    uint32_t ap[kM / 16][4];
    AFragments<T>(st, ap);
    MmaAB<T, kM / 16, Tl::kCols, kLd>(dv, ap, sdo + col0, lane);
    // dP^T = V dO^T, then dS^T = P^T (dP^T - Dvec) in place (P as rounded for dV).
    float dpt[kSN][4];
#pragma unroll
    for (int n = 0; n < kSN; ++n) dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
    MmaABt<T, kD, kM, kLd>(dpt, sv + key_row * kLd, sdo, lane);
#pragma unroll
    for (int j = 0; j < kM / 16; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {  // ap[j][r]: block 2 j + (r >> 1), elements 2 (r & 1), + 1
        const float2 pr = ToFloat2<T>(ap[j][r]);
        float* x = dpt[2 * j + (r >> 1)] + 2 * (r & 1);
        const int qc = (2 * j + (r >> 1)) * 8 + t4 * 2;
        x[0] = pr.x * (x[0] - sdvec[qc]);
        x[1] = pr.y * (x[1] - sdvec[qc + 1]);
      }
    // dK += dS^T Q (B: Q read transposed).
    {
      uint32_t as[kM / 16][4];
      AFragments<T>(dpt, as);
      MmaAB<T, kM / 16, Tl::kCols, kLd>(dk, as, sq + col0, lane);
    }
    if (w.dq_accum && writes_ds) {
#pragma unroll
      for (int n = 0; n < kSN; ++n)
#pragma unroll
        for (int r = 0; r < 2; ++r)
          *reinterpret_cast<uint32_t*>(sds + (key_row + g + r * 8) * kLdS + n * 8 + t4 * 2) =
              ptx::Pack2<T>(dpt[n][2 * r], dpt[n][2 * r + 1]);
    }
    __syncthreads();  // (B) every warp done with Q and dO; dS^T complete
    if (s + 1 < steps) load_step(s + 1);  // overlaps the dQ phase, which reads only dS^T and K

    // dQ rows m0 + 16 warp .. + 16 += dS K over the tile's keys; f32 atomics (scale applied later).
    const int64_t qrow = m0 + warp * 16;
    if (w.dq_accum && qrow < p.sq && !(p.causal && qrow + 15 + diag < n0)) {
      float* dq_rows = w.dq_accum + ((b * p.hq + h) * p.sq) * p.d;
#pragma unroll
      for (int c0 = 0; c0 < kD; c0 += Tl::kDqChunk) {
        if (c0 >= p.d) break;
        float acc[Tl::kDqChunk / 8][4];
#pragma unroll
        for (int n = 0; n < Tl::kDqChunk / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
          uint32_t a[4];  // dS [query][key] read from dS^T
          ptx::LdMatrixX4Trans(a, sds + (kk * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLdS + warp * 16 +
                                      ((lane >> 3) & 1) * 8);
#pragma unroll
          for (int n = 0; n < Tl::kDqChunk / 16; ++n) {
            uint32_t bk[4];
            ptx::LdMatrixX4Trans(bk, sk + (kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + c0 + n * 16 +
                                         (lane >> 4) * 8);
            ptx::Mma16816<T>(acc[2 * n], a, bk);
            ptx::Mma16816<T>(acc[2 * n + 1], a, bk + 2);
          }
        }
#pragma unroll
        for (int n = 0; n < Tl::kDqChunk / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t row = qrow + g + (e >> 1) * 8, col = c0 + n * 8 + t4 * 2 + (e & 1);
            if (row < p.sq && col < p.d) atomicAdd(dq_rows + row * p.d + col, acc[n][e]);
          }
      }
    }
  }
  ptx::CpAsyncWait<0>();  // (no step: K and V were loaded and never read)

  // dK = scale * sum dS^T Q and dV = sum P^T dO of the warp's keys and columns.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = n0 + key_row + g + r * 8;
    if (key >= p.sk) continue;
    const int64_t k_off = b * p.k_str.batch + kvh * p.k_str.head + key * p.k_str.row;
    const int64_t v_off = b * p.v_str.batch + kvh * p.v_str.head + key * p.v_str.row;
#pragma unroll
    for (int n = 0; n < kCN; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t col = col0 + n * 8 + t4 * 2 + e;
        if (p.dk_out && col < p.d) StoreElem<T>(p.dk_out, k_off + col, dk[n][2 * r + e] * p.scale, false);
        if (p.dv_out && col < p.dv) StoreElem<T>(p.dv_out, v_off + col, dv[n][2 * r + e], false);
      }
  }
}

// Deterministic dQ: one block per (64-row query tile, query head, batch); warp = 16 rows.
template <typename T, int kD>
__global__ void __launch_bounds__(kThreads) AttentionGradQKernel(AttentionFlashGradParams p, GradWork w) {
  using Tl = GradTiles<kD>;
  constexpr int kM = Tl::kM, kN = Tl::kQN, kLd = Tl::kLd, kSN = kN / 8, kON = kD / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem);
  T* sdo = sq + Tl::kQElems;
  T* sk = sdo + Tl::kQElems;     // stages 0, 1
  T* sv = sk + 2 * Tl::kQKVElems;  // stages 0, 1

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int64_t q_tiles = (p.sq + kM - 1) / kM;
  // Causal: the longest rows (the last tiles) first.
  const int64_t q_tile = p.causal ? q_tiles - 1 - blockIdx.x : blockIdx.x;
  const int64_t h = blockIdx.y, b = blockIdx.z, kvh = h / (p.hq / p.hkv);
  const int64_t m0 = q_tile * kM, diag = p.sk - p.sq;
  const T* Q = static_cast<const T*>(p.q) + b * p.q_str.batch + h * p.q_str.head;
  const T* dO = static_cast<const T*>(w.d_o) + b * w.do_str.batch + h * w.do_str.head;
  const T* K = static_cast<const T*>(p.k) + b * p.k_str.batch + kvh * p.k_str.head;
  const T* V = static_cast<const T*>(p.v) + b * p.v_str.batch + kvh * p.v_str.head;
  const int64_t kv_end = p.causal ? max(int64_t(0), min(p.sk, m0 + kM + diag)) : p.sk;
  const int64_t n_tiles = (kv_end + kN - 1) / kN;

  const int64_t warp_row0 = m0 + warp * 16;
  const bool warp_active = warp_row0 < p.sq;
  const int64_t warp_key_end = p.causal ? warp_row0 + 16 + diag : p.sk;
  const float scale_log2 = p.scale * kLog2e;
  float lse2[2], dvec[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t i = warp_row0 + g + r * 8, index = (b * p.hq + h) * p.sq + i;
    lse2[r] = Lse2(p, index, i < p.sq);
    dvec[r] = i < p.sq ? w.dvec[index] : 0.f;
  }
  float acc[kON][4];
#pragma unroll
  for (int n = 0; n < kON; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

  if (n_tiles > 0) {
    LoadTile<T, kD, kM>(sq, Q, p.q_str.row, m0, p.sq, p.d, w.vec);
    LoadTile<T, kD, kM>(sdo, dO, w.do_str.row, m0, p.sq, p.dv, w.vec);
    LoadTile<T, kD, kN>(sk, K, p.k_str.row, 0, p.sk, p.d, w.vec);
    LoadTile<T, kD, kN>(sv, V, p.v_str.row, 0, p.sk, p.dv, w.vec);
    ptx::CpAsyncCommit();
  }
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int stage = static_cast<int>(t & 1);
    attention_flash::KvRingStep<T, kD, kN>(sk, sv, Tl::kQKVElems, stage, t + 1 < n_tiles, (t + 1) * kN, K, V,
                                           p.k_str.row, p.v_str.row, p.sk, p.d, p.dv, w.vec);
    __syncthreads();
    const int64_t n0 = t * kN;
    if (warp_active && n0 < warp_key_end) {
      const T* k_tile = sk + stage * Tl::kQKVElems;
      const T* v_tile = sv + stage * Tl::kQKVElems;
      // S = Q K^T, dP = dO V^T for the warp's 16 rows x kN keys.
      float s[kSN][4], dp[kSN][4];
#pragma unroll
      for (int n = 0; n < kSN; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
      MmaABt<T, kD, kN, kLd>(s, sq + warp * 16 * kLd, k_tile, lane);
      MmaABt<T, kD, kN, kLd>(dp, sdo + warp * 16 * kLd, v_tile, lane);
      // dS = P (dP - Dvec) in dp; thread rows warp_row0 + g (+ 8), keys n0 + 8 n + 2 t4 (+ 1).
      const bool masked = n0 + kN > p.sk || (p.causal && n0 + kN - 1 > warp_row0 + diag);
#pragma unroll
      for (int n = 0; n < kSN; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float pr = exp2f(s[n][e] * scale_log2 - lse2[e >> 1]);
          if (masked) {
            const int64_t key = n0 + n * 8 + t4 * 2 + (e & 1);
            if (key >= p.sk || (p.causal && key > warp_row0 + g + (e >> 1) * 8 + diag)) pr = 0.f;
          }
          dp[n][e] = pr * (dp[n][e] - dvec[e >> 1]);
        }
      // dQ += dS K (K read transposed: keys are the reduction).
      uint32_t a[kN / 16][4];
      AFragments<T>(dp, a);
      MmaAB<T, kN / 16, kD, kLd>(acc, a, k_tile, lane);
    }
    __syncthreads();  // the stage just read is the one the next iteration's loads overwrite
  }

  if (!warp_active) return;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = warp_row0 + g + r * 8;
    if (row >= p.sq) continue;
    const int64_t off = b * p.q_str.batch + h * p.q_str.head + row * p.q_str.row;
#pragma unroll
    for (int n = 0; n < kON; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t col = n * 8 + t4 * 2 + e;
        if (col < p.d) StoreElem<T>(p.dq_out, off + col, acc[n][2 * r + e] * p.scale, false);
      }
  }
}

// dQ = scale * accumulator ([B, Hq, Sq, D] dense f32) in Q's type and layout.
template <typename T>
__global__ void __launch_bounds__(256) AttentionGradDqStore(AttentionFlashGradParams p, const float* acc,
                                                            int64_t count) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = e % p.d, row = e / p.d;
    StoreElem<T>(p.dq_out, QueryRowOffset(p, p.q_str, row) + col, acc[e] * p.scale, false);
  }
}

// The same with 16-byte stores: D % 8 == 0, dQ's strides multiples of 8 elements from a 16-byte
// aligned base.
template <typename T>
__global__ void __launch_bounds__(256) AttentionGradDqStoreVec(AttentionFlashGradParams p, const float* acc) {
  const int64_t rows = p.batch * p.hq * p.sq;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kRowThreads;
  if (row >= rows) return;
  T* out = static_cast<T*>(p.dq_out) + QueryRowOffset(p, p.q_str, row);
  const float* in = acc + row * p.d;
  for (int64_t c = 8 * (threadIdx.x % kRowThreads); c < p.d; c += 8 * kRowThreads) {
    const float4 x = *reinterpret_cast<const float4*>(in + c), y = *reinterpret_cast<const float4*>(in + c + 4);
    const float sc = p.scale;
    *reinterpret_cast<uint4*>(out + c) =
        make_uint4(ptx::Pack2<T>(x.x * sc, x.y * sc), ptx::Pack2<T>(x.z * sc, x.w * sc),
                   ptx::Pack2<T>(y.x * sc, y.y * sc), ptx::Pack2<T>(y.z * sc, y.w * sc));
  }
}

}  // namespace attention_grad
}  // namespace kaio
