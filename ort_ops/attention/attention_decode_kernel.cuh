// Flash-decoding for short queries (Sq * Hq / Hkv <= 16 rows per kv head): the query rows of all
// heads that share one kv head (GQA) are packed into one 16-row mma tile, so each K/V element is
// read once per kv head, not once per query head. The 4 warps of a block stream disjoint 16-key
// chunks of the block's K/V slice, each through its own cp.async ring (no block-wide barrier in
// the loop), with their own online softmax; the warps' partial results are merged in shared
// memory at the end, and split-KV slices (grid x) by AttentionCombineKernel.
// Needs 16-byte loads (D % 8 == 0, Dv % 8 == 0, aligned rows); the general kernel takes the rest.
#pragma once

#include "attention/attention_flash_kernel.cuh"

namespace kaio {
namespace attention_flash {

constexpr int kDecodeRows = 16, kDecodeChunk = 16;

template <int kD>
struct DecodeTiles {
  static constexpr int kStages = 3;
  static constexpr int kLd = kD + kPad;
  static constexpr int kChunkElems = kDecodeChunk * kLd;
  static constexpr int kWarpElems = 2 * kStages * kChunkElems;  // K and V rings of one warp
  static constexpr int kQElems = kDecodeRows * kLd;
  static constexpr int kRingBytes = kWarps * kWarpElems * 2;
  static constexpr int kMergeBytes = kWarps * kDecodeRows * (kD + 2) * 4;  // o, max, sum per warp
  static constexpr int kSmemBytes = kQElems * 2 + (kRingBytes > kMergeBytes ? kRingBytes : kMergeBytes);
};

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads) AttentionDecodeKernel(AttentionFlashParams p, SplitKv split) {
  using Tl = DecodeTiles<kD>;
  constexpr int kLd = Tl::kLd, kON = kD / 8, kStages = Tl::kStages;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem);
  unsigned char* ring_base = smem + Tl::kQElems * 2;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t kvh = blockIdx.y, b = blockIdx.z, split_index = blockIdx.x;
  const int64_t group = p.hq / p.hkv, rows = group * p.sq;  // packed row r: head kvh * group + r / Sq, query r % Sq
  const int64_t diag = p.sk - p.sq;
  const T* K = static_cast<const T*>(p.k) + b * p.k_str.batch + kvh * p.k_str.head;
  const T* V = static_cast<const T*>(p.v) + b * p.v_str.batch + kvh * p.v_str.head;

  // Q rows (zero past `rows` and past D) into shared memory, then into registers as A fragments.
  for (int c = threadIdx.x; c < kDecodeRows * (kD / 8); c += kThreads) {
    const int r = c / (kD / 8), col = (c % (kD / 8)) * 8;
    const bool in = r < rows && col < p.d;
    const int64_t h = kvh * group + (in ? r / p.sq : 0), i = in ? r % p.sq : 0;
    const T* src = static_cast<const T*>(p.q) + b * p.q_str.batch + h * p.q_str.head + i * p.q_str.row + (in ? col : 0);
    ptx::CpAsync16(sq + r * kLd + col, src, in);
  }
  ptx::CpAsyncCommit();

  // This block's keys: one slice of whole chunks; warp w takes chunks w, w + 4, ...
  const int64_t chunks = (p.sk + kDecodeChunk - 1) / kDecodeChunk;
  const int64_t per_split = (chunks + split.splits - 1) / split.splits;
  const int64_t c_begin = min(chunks, split_index * per_split), c_end = min(chunks, c_begin + per_split);
  const int64_t my_chunks = c_end - c_begin > warp ? (c_end - c_begin - warp + kWarps - 1) / kWarps : 0;
  T* k_ring = reinterpret_cast<T*>(ring_base) + warp * Tl::kWarpElems;
  T* v_ring = k_ring + kStages * Tl::kChunkElems;
  auto load_chunk = [&](int64_t j) {  // the warp's j-th chunk into ring slot j % kStages
    if (j < my_chunks) {
      const int64_t key0 = (c_begin + warp + j * kWarps) * kDecodeChunk;
      T* kd = k_ring + (j % kStages) * Tl::kChunkElems;
      T* vd = v_ring + (j % kStages) * Tl::kChunkElems;
#pragma unroll
      for (int it = 0; it < kDecodeChunk * (kD / 8) / 32; ++it) {
        const int u = lane + it * 32, r = u / (kD / 8), col = (u % (kD / 8)) * 8;
        const int64_t key = key0 + r;
        const bool kin = key < p.sk && col < p.d, vin = key < p.sk && col < p.dv;
        ptx::CpAsync16(kd + r * kLd + col, kin ? K + key * p.k_str.row + col : K, kin);
        ptx::CpAsync16(vd + r * kLd + col, vin ? V + key * p.v_str.row + col : V, vin);
      }
    }
    ptx::CpAsyncCommit();  // empty groups keep the wait counts uniform
  };
  for (int j = 0; j < kStages - 1; ++j) load_chunk(j);

  ptx::CpAsyncWait<kStages - 1>();  // Q (the oldest group) has landed
  __syncthreads();
  uint32_t qf[kD / 16][4];
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) ptx::LdMatrixX4(qf[kk], sq + (lane & 15) * kLd + kk * 16 + (lane >> 4) * 8);

  const float scale_log2 = p.scale * kLog2e;
  float o_acc[kON][4];
#pragma unroll
  for (int n = 0; n < kON; ++n) o_acc[n][0] = o_acc[n][1] = o_acc[n][2] = o_acc[n][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const int64_t query[2] = {(lane >> 2) % p.sq, ((lane >> 2) + 8) % p.sq};  // the rows' query index

  for (int64_t j = 0; j < my_chunks; ++j) {
    load_chunk(j + kStages - 1);
    ptx::CpAsyncWait<kStages - 1>();
    __syncwarp();
    const T* kc = k_ring + (j % kStages) * Tl::kChunkElems;
    const T* vc = v_ring + (j % kStages) * Tl::kChunkElems;
    const int64_t key0 = (c_begin + warp + j * kWarps) * kDecodeChunk;
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      uint32_t bk[4];
      ptx::LdMatrixX4(bk, kc + ((lane & 7) + ((lane >> 4) << 3)) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
      ptx::Mma16816<T>(s[0], qf[kk], bk);
      ptx::Mma16816<T>(s[1], qf[kk], bk + 2);
    }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = key0 + n * 8 + (lane & 3) * 2 + (e & 1);
        const bool hidden = key >= p.sk || (p.causal && key > query[e >> 1] + diag);
        s[n][e] = hidden ? -INFINITY : s[n][e] * scale_log2;
      }
    SoftmaxStep(s, row_max, row_sum, o_acc);
    uint32_t a[4];
    PFragment<T>(s, 0, a);
#pragma unroll
    for (int n = 0; n < kD / 16; ++n) {
      uint32_t bv[4];
      ptx::LdMatrixX4Trans(bv, vc + ((lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + n * 16 + (lane >> 4) * 8);
      ptx::Mma16816<T>(o_acc[2 * n], a, bv);
      ptx::Mma16816<T>(o_acc[2 * n + 1], a, bv + 2);
    }
    __syncwarp();  // the slot just read is refilled kStages - 1 chunks later
  }
  ptx::CpAsyncWait<0>();

  // Merge the 4 warps' partial rows in shared memory (the rings are free now).
  QuadSum(row_sum);
  __syncthreads();
  float* m_o = reinterpret_cast<float*>(ring_base);               // [warp][row][kD]
  float* m_max = m_o + kWarps * kDecodeRows * kD;                  // [warp][row]
  float* m_sum = m_max + kWarps * kDecodeRows;                     // [warp][row]
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = (lane >> 2) + 8 * r;
#pragma unroll
    for (int n = 0; n < kON; ++n) {
      const int col = n * 8 + (lane & 3) * 2;
      m_o[(warp * kDecodeRows + row) * kD + col] = o_acc[n][2 * r];
      m_o[(warp * kDecodeRows + row) * kD + col + 1] = o_acc[n][2 * r + 1];
    }
    if ((lane & 3) == 0) {
      m_max[warp * kDecodeRows + row] = row_max[r];
      m_sum[warp * kDecodeRows + row] = row_sum[r];
    }
  }
  __syncthreads();
  for (int64_t u = threadIdx.x; u < rows * p.dv; u += kThreads) {
    const int r = static_cast<int>(u / p.dv), col = static_cast<int>(u % p.dv);
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, m_max[w * kDecodeRows + r]);
    float sum = 0.f, acc = 0.f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float wm = m_max[w * kDecodeRows + r];
        if (wm == -INFINITY) continue;
        const float f = exp2f(wm - mx);
        sum += f * m_sum[w * kDecodeRows + r];
        acc += f * m_o[(w * kDecodeRows + r) * kD + col];
      }
    }
    const RowTarget target = TargetOf(p, split, split_index, b, kvh * group + r / p.sq, r % p.sq);
    Store<T>(p, target, col, sum > 0.f ? acc / sum : 0.f);
    if (target.lse && col == 0) *target.lse = sum > 0.f ? (mx + log2f(sum)) * kLn2 : -INFINITY;
  }
}

}  // namespace attention_flash
}  // namespace kaio
