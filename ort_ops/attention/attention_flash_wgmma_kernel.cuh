// FlashAttention forward for Hopper (sm_90a), FlashAttention-3 style: TMA tile loads into
// shared-memory rings completing on mbarriers, wgmma for S = Q K^T and O += P V, a producer
// warpgroup and two or three consumer warpgroups, online softmax in registers.
//
// Persistent blocks (one per SM) work through tiles of (batch, query head, kBlockM query rows)
// (Layout: 128 rows at D = 128, 192 at D = 64) in the order of Schedule, taking each next one from
// a counter; the producer hands it to the consumers through a mailbox word.
// Warpgroup 0 produces (one thread issues the TMA loads: a tile's Q once the consumers are done with
// the last one, then K and V tiles of kBlockN = 128 keys into kStages-deep rings that run on across
// tiles, separate full / empty barriers, so S can start before V lands), the other kBlockM / 64
// warpgroups consume, each owning 64 query rows. setmaxnreg moves registers from the producer to
// the consumers (232 each for two, 160 each for three).
//
// A consumer, per K/V tile j (FA3's intra-warpgroup overlap; the consumers take turns issuing):
//   issue S_j = Q K_j^T (SS wgmma m64n128k16, D / 16 steps)      -- async
//   issue O += P_{j-1} V_{j-1} (RS wgmma, P from registers)      -- async
//   wait for S_j; release K_j; mask; online softmax of S_j (max, exp2, sums): overlaps the P V wgmma
//   wait for P V; release V_{j-1}; rescale O by the new max; P_j = S_j packed to f16 / bf16
// then the last P V, normalisation, and direct stores of O (f32 or the input type) and LSE.
// P never leaves the registers: the m64nN accumulator layout of S, packed in pairs, is exactly the
// register A-fragment layout of wgmma (mma.sync's m16n8k16 A fragment per warp).
//
// Shared memory (all 1024-byte aligned, 128-byte swizzled as TMA writes it with
// CU_TENSOR_MAP_SWIZZLE_128B): Q [kD / 64 boxes of kBlockM rows x 64 columns], then kStages K tiles
// and kStages V tiles of kD / 64 boxes of 128 keys x 64 columns. S's B operand (K) is K-major; P V's B operand (V, keys x D
// with D contiguous) is MN-major (tnspB = 1, leading byte offset = one 64-column box).
//
// Tensor maps are 4-D (D, S, heads, batch) with the layout's strides, so "bhsd" and "bshd" are read
// in place, GQA/MQA picks the kv head by coordinate, and rows past Sq / Sk read as zeros (never the
// next head's rows). Keys past Sk and, causal, past each row's bottom-right diagonal (key <= row +
// Sk - Sq) are masked to -inf; rows that see no key get O = 0 and LSE = -inf (as the mma.sync kernel).
// The launcher (attention_flash_sm90.cu) takes D == Dv in {64, 128}, f16 / bf16, 16-byte aligned
// bases and strides; everything else stays on the mma.sync kernel.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "attention/attention_params.h"
#include "common/ptx.cuh"
#include "common/sm90.cuh"

namespace kaio {
namespace attention_wgmma {

constexpr int kBlockN = 128;                        // keys per K/V tile
constexpr int kBoxCols = 64;                        // 16-bit elements in a 128-byte swizzled row
constexpr int kKVBoxBytes = kBlockN * 128;          // one 64-column box of a K or V tile
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

__device__ __forceinline__ void NamedBarSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void NamedBarArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// The block of head dim kD: kBlockM query rows, one consumer warpgroup per 64 of them. D = 64 takes
// 192 rows (FA3's choice): its products are half as long as D = 128's while the softmax per key is
// the same, so a third consumer is what keeps the tensor cores fed while two run their softmax.
// Turns (FA3's warp scheduler barriers): consumer w issues its tile's two products only after
// consumer w - 1 (cyclically) has issued its own, on named barrier 1 + w (0 is __syncthreads).
template <int kD>
struct Layout {
  static_assert(kD == 64 || kD == 128, "head dims 64 and 128");
  static constexpr int kBlockM = kD == 64 ? 192 : 128;
  static constexpr int kConsumers = kBlockM / 64;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  // setmaxnreg: the producer gives registers back (its schedule's 64-bit tile arithmetic spills at
  // 24), the consumers take them; .inc waits until the pool covers it, so the totals must equal what
  // the launch allocated (65536 / kThreads per thread, rounded down to 8).
  static constexpr int kLaunchRegs = (65536 / kThreads) / 8 * 8;
  static constexpr int kProducerRegs = kConsumers == 3 ? 32 : 40;
  static constexpr int kConsumerRegs = kConsumers == 3 ? 160 : 232;
  static_assert(128 * kProducerRegs + 128 * kConsumers * kConsumerRegs == kThreads * kLaunchRegs, "register pool");
  static constexpr int kBoxes = kD / kBoxCols;
  static constexpr int kStages = kD == 64 ? 3 : 2;
  static constexpr int kQBoxBytes = kBlockM * 128;  // one 64-column box of the Q tile
  static constexpr int kQBytes = kBoxes * kQBoxBytes;
  static constexpr int kKVBytes = kBoxes * kKVBoxBytes;  // one K or one V tile
  static constexpr int kSmemBytes = kQBytes + 2 * kStages * kKVBytes + 1024;  // + slack to align to 1024
};

struct Maps {
  CUtensorMap q, k, v;
};

__device__ __forceinline__ float Exp2(float x) {  // ex2.approx: exp2(-inf) = 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

#if KAIO_SM90A_DEVICE
// S (64 x 128 f32, this warpgroup's rows) = Q_w K^T over the head dim, issued and committed.
template <typename T, int kD>
__device__ __forceinline__ void IssueS(float (&s)[64], const uint8_t* q_w, const uint8_t* k_tile) {
  constexpr int kQBoxBytes = Layout<kD>::kQBoxBytes;
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = 0.f;
  sm90::WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk)
    sm90::WgmmaM64N128K16<T, 0>(s, sm90::DescSw128(q_w + (kk / 4) * kQBoxBytes + (kk % 4) * 32, 16, 1024),
                                sm90::DescSw128(k_tile + (kk / 4) * kKVBoxBytes + (kk % 4) * 32, 16, 1024));
  sm90::WgmmaCommit();
}

// O (64 x kD f32) += P (64 x 128, register fragments, 16 keys each) V (128 x kD, MN-major), issued
// and committed.
template <typename T, int kD>
__device__ __forceinline__ void IssuePV(float (&o)[kD / 2], uint32_t (&pa)[kBlockN / 16][4], const uint8_t* v_tile) {
  sm90::WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint64_t desc = sm90::DescSw128(v_tile + kk * 16 * 128, kKVBoxBytes, 1024);
    sm90::WgmmaRsM64K16<T, kD, 1>(o, pa[kk], desc);
  }
  sm90::WgmmaCommit();
}
#endif

// Online softmax of one tile of raw scores s in the m64n128 accumulator layout: element 4 j + e is
// row row_a + 8 (e >> 1), key key0 + 8 j + (e & 1) (key0 = the tile's first key + 2 (lane % 4)).
// Masks (when `mask`) keys >= sk and, causal, keys > row + diag; updates the rows' running max (raw
// score units) and thread-partial sums; corr = the factor O must be rescaled by; leaves P in s.
// sl = scale * log2(e) > 0.
template <bool kCausal>
__device__ __forceinline__ void SoftmaxTile(float (&s)[64], float (&row_max)[2], float (&row_sum)[2], float (&corr)[2],
                                            float sl, bool mask, int64_t key0, int64_t row_a, int64_t sk,
                                            int64_t diag) {
  if (mask) {
    // Per row, the first masked key counted from key0, clamped to the tile: then each element's
    // test is one 32-bit compare of its constant column (the 64-bit key arithmetic per element was
    // most of a masked tile's instructions).
    int limit[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      int64_t end = sk;
      if (kCausal) end = min(end, row_a + 8 * r + diag + 1);
      limit[r] = static_cast<int>(max(int64_t(0), min(end - key0, int64_t(kBlockN))));
    }
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (8 * j + (e & 1) >= limit[e >> 1]) s[4 * j + e] = -INFINITY;
  }
  float mx[2] = {row_max[0], row_max[1]};
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[4 * j + e]);
  float base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    base[r] = mx[r] == -INFINITY ? 0.f : mx[r] * sl;  // a row that has seen no key yet
    corr[r] = Exp2(row_max[r] * sl - base[r]);        // -inf (no key before): 0, O and the sum are 0
    row_max[r] = mx[r];
  }
  float sum[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = Exp2(fmaf(s[4 * j + e], sl, -base[e >> 1]));
      s[4 * j + e] = x;
      sum[e >> 1] += x;
    }
  row_sum[0] = row_sum[0] * corr[0] + sum[0];
  row_sum[1] = row_sum[1] * corr[1] + sum[1];
}

// An m64nN accumulator (P here: s, the probabilities) as wgmma's register A fragments over its
// columns: columns [16 kk, 16 kk + 16) = accumulator blocks 2 kk and 2 kk + 1.
template <typename T, int kN>
__device__ __forceinline__ void PackA(const float (&s)[kN / 2], uint32_t (&a)[kN / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < kN / 16; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r) a[kk][r] = ptx::Pack2<T>(s[8 * kk + 2 * r], s[8 * kk + 2 * r + 1]);
}

template <int kN>
__device__ __forceinline__ void ScaleRows(float (&o)[kN], const float (&corr)[2]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) o[i] *= corr[(i >> 1) & 1];
}

// The work of one launch: tiles (query tile, head, batch) in a fixed order, handed out by a counter
// in global memory (a persistent block takes its next tile when it starts one, so its Q and first
// K / V loads overlap the previous tile's last products and stores, and tiles of uneven length
// balance as they come); the producer writes it to the block's mailbox before the q_full arrival
// that announces the tile's Q, the consumers read it after their q_full wait (release / acquire).
// Order: sections of `group` consecutive (batch, head) pairs whose K / V fit in L2 together (the
// launcher sizes it), one after another; in a section the query tiles go longest first (causal),
// the heads fastest.
struct Schedule {
  int64_t q_tiles = 0, n_work = 0;  // query tiles per head; tiles in all
  int64_t group = 1;                // (batch, head) pairs per section
  unsigned long long* counter = nullptr;  // zeroed before the launch; tiles taken past the first round
  int64_t* mailboxes = nullptr;           // one per block: the tile its producer hands to its consumers
};

struct WorkTile {
  int64_t m0;    // the tile's first query row
  int h, b;      // query head, batch
  int n_tiles;   // K / V tiles it needs
};

template <int kBlockM, bool kCausal>
__device__ __forceinline__ WorkTile WorkOf(int64_t t, const Schedule& sc, const AttentionFlashParams& p) {
  const int64_t heads = p.hq * p.batch, per_section = sc.group * sc.q_tiles;
  const int64_t section = t / per_section, r = t - section * per_section;
  const int64_t g = min(sc.group, heads - section * sc.group);  // the last section may be short
  const int64_t qi = r / g, hb = section * sc.group + r % g;
  WorkTile w;
  w.m0 = (kCausal ? sc.q_tiles - 1 - qi : qi) * kBlockM;  // causal: most keys first
  w.h = static_cast<int>(hb % p.hq);
  w.b = static_cast<int>(hb / p.hq);
  int64_t kv_end = p.sk;
  if (kCausal) {
    kv_end = w.m0 + kBlockM + (p.sk - p.sq);  // one past the last key the tile's last row sees
    kv_end = kv_end < 0 ? 0 : (kv_end > p.sk ? p.sk : kv_end);
  }
  w.n_tiles = static_cast<int>((kv_end + kBlockN - 1) / kBlockN);
  return w;
}

template <typename T, int kD, bool kCausal>
__global__ void __launch_bounds__(Layout<kD>::kThreads, 1)
    AttentionWgmmaKernel(const __grid_constant__ Maps maps, const AttentionFlashParams p, const Schedule sc) {
#if KAIO_SM90A_DEVICE
  using namespace sm90;
  using L = Layout<kD>;
  constexpr int kStages = L::kStages, kBlockM = L::kBlockM, kConsumers = L::kConsumers;
  extern __shared__ uint8_t smem_raw[];
  __shared__ uint64_t q_full, q_empty, k_full[kStages], k_empty[kStages], v_full[kStages], v_empty[kStages];
  // Swizzle atoms must sit at 1024-byte boundaries (offset from the array itself, so the compiler
  // keeps shared-memory accesses).
  uint8_t* sq = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  uint8_t* sk = sq + L::kQBytes;               // K stage s: sk + s * kKVBytes
  uint8_t* sv = sk + kStages * L::kKVBytes;    // V stage s: sv + s * kKVBytes
  const int64_t diag = p.sk - p.sq;  // causal: query i sees keys j <= i + diag
  const int kv_group = static_cast<int>(p.hq / p.hkv);

  if (threadIdx.x == 0) {
    MbarInit(&q_full, 1);
    MbarInit(&q_empty, 4 * kConsumers);  // one arrival per consumer warp
    for (int s = 0; s < kStages; ++s) {
      MbarInit(&k_full[s], 1);
      MbarInit(&v_full[s], 1);
      MbarInit(&k_empty[s], 4 * kConsumers);
      MbarInit(&v_empty[s], 4 * kConsumers);
    }
    FenceBarrierInit();
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {  // producer
    SetMaxNRegDec<L::kProducerRegs>();
    if (threadIdx.x == 0) {
      int64_t t = blockIdx.x;
      uint32_t kv = 0;  // K / V tiles loaded so far: the ring position
      int64_t* mailbox = sc.mailboxes + blockIdx.x;
      for (uint32_t qr = 0;; ++qr) {
        // The next tile is taken now, so the atomic's latency hides behind this tile's loads.
        const int64_t next = t < sc.n_work ? int64_t(atomicAdd(sc.counter, 1ull)) + gridDim.x : sc.n_work;
        if (qr > 0) MbarWait(&q_empty, (qr - 1) & 1);  // the consumers are done with the last Q (and mailbox)
        // The tile goes to the consumers through the block's mailbox, published by the q_full arrival
        // (a release; their wait acquires). -1: no more tiles. (Global, not shared, memory: racecheck
        // does not take mbarriers as ordering and would flag a shared word.)
        *mailbox = t < sc.n_work ? t : -1;
        if (t >= sc.n_work) {
          MbarArrive(&q_full);
          break;
        }
        const WorkTile wt = WorkOf<kBlockM, kCausal>(t, sc, p);
        const int kvh = wt.h / kv_group;
        MbarArriveExpectTx(&q_full, L::kQBytes);
#pragma unroll
        for (int x = 0; x < L::kBoxes; ++x)
          TmaLoad4d(sq + x * L::kQBoxBytes, &maps.q, &q_full, x * kBoxCols, static_cast<int>(wt.m0), wt.h, wt.b);
        for (int j = 0; j < wt.n_tiles; ++j, ++kv) {
          const int s = kv % kStages;
          const uint32_t round = kv / kStages;
          const int key0 = j * kBlockN;
          if (round > 0) MbarWait(&k_empty[s], (round - 1) & 1);
          MbarArriveExpectTx(&k_full[s], L::kKVBytes);
#pragma unroll
          for (int x = 0; x < L::kBoxes; ++x)
            TmaLoad4d(sk + s * L::kKVBytes + x * kKVBoxBytes, &maps.k, &k_full[s], x * kBoxCols, key0, kvh, wt.b);
          if (round > 0) MbarWait(&v_empty[s], (round - 1) & 1);
          MbarArriveExpectTx(&v_full[s], L::kKVBytes);
#pragma unroll
          for (int x = 0; x < L::kBoxes; ++x)
            TmaLoad4d(sv + s * L::kKVBytes + x * kKVBoxBytes, &maps.v, &v_full[s], x * kBoxCols, key0, kvh, wt.b);
        }
        t = next;
      }
    }
    return;
  }

  SetMaxNRegInc<L::kConsumerRegs>();
  // Consumer warpgroup 1 + w: rows [m0 + 64 w, m0 + 64 w + 64) of each tile; thread t holds rows
  // row_a and row_a + 8, per 8-column block the columns 2 (lane % 4) and + 1 (the m64nN
  // accumulator layout).
  const int w = warpgroup - 1, t = threadIdx.x % 128, lane = t % 32;
  const uint8_t* q_w = sq + w * 64 * 128;  // this warpgroup's 64 rows inside each Q box
  const float sl = p.scale * kLog2e;
  const int64_t key_lane = 2 * (lane % 4);
  // Turns: consumer 0 goes first (the last consumer's arrival stands in for a previous turn); each
  // loop iteration waits for its turn (barrier 1 + w: its own arrival and its predecessor's) and
  // hands the turn to its successor once both products are issued. All consumers run the same
  // iterations on every tile; the last hand-over is left pending at exit.
  if (w == kConsumers - 1) NamedBarArrive(1, 256);
  uint32_t kv = 0;  // K / V tiles consumed so far: the ring position

  for (uint32_t qr = 0;; ++qr) {
    MbarWait(&q_full, qr & 1);
    const int64_t tile = *static_cast<volatile const int64_t*>(sc.mailboxes + blockIdx.x);
    if (tile < 0) break;
    const WorkTile wt = WorkOf<kBlockM, kCausal>(tile, sc, p);
    const int h = wt.h, b = wt.b, n_tiles = wt.n_tiles;
    const int64_t wg_row0 = wt.m0 + w * 64;
    const int64_t row_a = wg_row0 + (t / 32) * 16 + lane / 4;

    float o[kD / 2];
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) o[i] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};

    __syncwarp();  // every lane has read the mailbox before the producer may overwrite it
    if (n_tiles == 0 && lane == 0) MbarArrive(&q_empty);
    if (n_tiles > 0) {
      float s[64];
      uint32_t pa[kBlockN / 16][4];
      float corr[2];
      // Whether tile j needs the mask for some row of this warpgroup (uniform in the warpgroup).
      auto needs_mask = [&](int j) {
        const int64_t n0 = int64_t(j) * kBlockN;
        return n0 + kBlockN > p.sk || (kCausal && n0 + kBlockN - 1 > wg_row0 + diag);
      };
      // Releases tile j's K stage once S_j is read, and Q after the tile's last S.
      auto release_k = [&](int j, int ks) {
        if (lane == 0) {
          MbarArrive(&k_empty[ks]);
          if (j == n_tiles - 1) MbarArrive(&q_empty);
        }
      };

      {
        const int ks = kv % kStages;
        MbarWait(&k_full[ks], (kv / kStages) & 1);
        IssueS<T, kD>(s, q_w, sk + ks * L::kKVBytes);
        WgmmaWait<0>();
        FenceOperands(s);
        release_k(0, ks);
      }
      SoftmaxTile<kCausal>(s, row_max, row_sum, corr, sl, needs_mask(0), key_lane, row_a, p.sk, diag);
      PackA<T, kBlockN>(s, pa);  // O is still 0: no rescale

      for (int j = 1; j < n_tiles; ++j) {
        const uint32_t kj = kv + j, vj = kj - 1;
        const int ks = kj % kStages, vs = vj % kStages;
        MbarWait(&k_full[ks], (kj / kStages) & 1);
        NamedBarSync(1 + w, 256);
        IssueS<T, kD>(s, q_w, sk + ks * L::kKVBytes);
        MbarWait(&v_full[vs], (vj / kStages) & 1);
        IssuePV<T, kD>(o, pa, sv + vs * L::kKVBytes);
        NamedBarArrive(1 + (w + 1) % kConsumers, 256);
        WgmmaWait<1>();  // S_j is done (P V still running)
        FenceOperands(s);
        release_k(j, ks);
        SoftmaxTile<kCausal>(s, row_max, row_sum, corr, sl, needs_mask(j), int64_t(j) * kBlockN + key_lane, row_a,
                             p.sk, diag);
        WgmmaWait<0>();  // P_{j-1} V_{j-1} is done: O and the P registers are free
        FenceOperands(o);
        FenceOperands(pa);
        if (lane == 0) MbarArrive(&v_empty[vs]);
        ScaleRows(o, corr);
        PackA<T, kBlockN>(s, pa);
      }
      const uint32_t vj = kv + n_tiles - 1;
      const int vs = vj % kStages;
      MbarWait(&v_full[vs], (vj / kStages) & 1);
      IssuePV<T, kD>(o, pa, sv + vs * L::kKVBytes);
      WgmmaWait<0>();
      FenceOperands(o);
      FenceOperands(pa);
      if (lane == 0) MbarArrive(&v_empty[vs]);
      kv += n_tiles;
    }

    // Epilogue: finish the row sums across the quad, normalise, store O and LSE.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    }
    const int64_t col0 = 2 * (lane % 4);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = row_a + 8 * r;
      if (row >= p.sq) continue;
      const float sum = row_sum[r];
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const int64_t at = b * p.o_str.batch + h * p.o_str.head + row * p.o_str.row + col0;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j) {
        const float v0 = o[4 * j + 2 * r] * inv, v1 = o[4 * j + 2 * r + 1] * inv;
        if (p.out_f32) *reinterpret_cast<float2*>(static_cast<float*>(p.o) + at + 8 * j) = make_float2(v0, v1);
        else *reinterpret_cast<uint32_t*>(static_cast<T*>(p.o) + at + 8 * j) = ptx::Pack2<T>(v0, v1);
      }
      if (p.lse && lane % 4 == 0)
        p.lse[(int64_t(b) * p.hq + h) * p.sq + row] = sum > 0.f ? (row_max[r] * sl + log2f(sum)) * kLn2 : -INFINITY;
    }
  }  // tiles
#else
  __trap();  // never launched without sm_90a code (kBuiltForSm90a); if it were, fail loudly, not silently
#endif
}

}  // namespace attention_wgmma
}  // namespace kaio
