// FlashAttention backward's K/V kernel for Hopper (sm_90a): the products of
// AttentionGradKvKernel (attention_flash_grad_kernel.cuh) on wgmma, operands brought by TMA.
// Launcher: attention_flash_grad_sm90.cu; the prep pass, the dQ store pass and the deterministic dQ
// kernel stay those of attention_flash_grad_sm80.cu.
//
// One block per (tile of kBlockN = 128 keys, kv head, batch): K and V stay in shared memory; the
// block walks every (query head of the kv head's group, tile of kBlockM query rows) that sees a key
// of the tile, its Q and dO tiles arriving by TMA in a two-stage ring. Two warpgroups, each owning
// 64 of the keys, per step:
//   S^T = K_w Q^T, dP^T = V_w dO^T            (SS wgmma, m64 x kBlockM, issued together)
//   P^T = exp2(S^T scale log2e - LSE log2e)   (masked: keys past Sk, causal keys past the diagonal)
//   dS^T = P^T (dP^T - Dvec)
//   dV += P^T dO, dK += dS^T Q                (RS wgmma: P^T and dS^T straight from the accumulators,
//                                              whose m64nN layout is the register A-fragment layout)
//   dS (as [query][key], 128-byte swizzled) -> shared memory; both warpgroups meet
//   dQ_tile = dS K (SS wgmma, K read MN-major), added to the f32 accumulator with vector atomics
//   (red.global.add.v4.f32); the launcher's store pass scales and rounds it.
// dK and dV of a kv head are summed over its query heads by the loop (no atomics: dK, dV are
// bitwise reproducible), then written once in K's and V's type and layout.
//
// kBlockM: 64 at D = 128, 128 at D = 64 (the products' register cost per thread is the same). The
// dQ product: at D = 128 warpgroup w takes the 64 columns of box w, at D = 64 the 64 query rows 64 w.
// One thread (thread 0) issues the TMA loads: step s + 2's Q and dO go into step s's stage right
// after step s's meeting point, which each warpgroup reaches only after waiting for its dV / dK
// products (the stage's last readers), so no empty barriers are needed.
// Rows past Sq read as zeros (TMA) and get LSE = +inf (P = 0); rows that see no key too.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "attention/attention_flash_grad_kernel.cuh"
#include "attention/attention_flash_wgmma_kernel.cuh"
#include "attention/attention_params.h"
#include "common/ptx.cuh"
#include "common/sm90.cuh"

namespace kaio {
namespace attention_grad_wgmma {

using attention_grad::GradWork;
using attention_wgmma::Exp2;
using attention_wgmma::PackA;
using attention_wgmma::kBlockN;   // keys per block (the forward's K/V tile)
using attention_wgmma::kBoxCols;  // 16-bit elements in a 128-byte swizzled row
constexpr int kThreads = 256;

template <int kD>
struct Layout {
  static_assert(kD == 64 || kD == 128, "head dims 64 and 128");
  static constexpr int kBlockM = kD == 64 ? 128 : 64;
  static constexpr int kBoxes = kD / kBoxCols;
  static constexpr int kKVBoxBytes = kBlockN * 128;   // one 64-column box of the K or V tile
  static constexpr int kKVBytes = kBoxes * kKVBoxBytes;
  static constexpr int kQBoxBytes = kBlockM * 128;    // one 64-column box of a Q or dO tile
  static constexpr int kQBytes = kBoxes * kQBoxBytes;
  static constexpr int kDsBoxBytes = kBlockM * 128;   // 64 keys of dS [query][key]
  static constexpr int kDsBytes = 2 * kDsBoxBytes;
  static constexpr int kStages = 2;
  // K, V, then per stage Q and dO, then two dS buffers (+ slack to align to 1024).
  static constexpr int kSmemBytes = 2 * kKVBytes + kStages * 2 * kQBytes + 2 * kDsBytes + 1024;
};

struct Maps {
  CUtensorMap q, k, v, d_o;
};

// Adds four consecutive floats (16-byte aligned) in one atomic operation (sm_90).
__device__ __forceinline__ void RedAddV4(float* addr, float a, float b, float c, float d) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(addr), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
}

#if KAIO_SM90A_DEVICE
// acc (64 x kN f32, the m64nkN fragment) = A (64 rows of a K-major swizzled tile at `a`, box stride
// a_box) B^T (kN rows of another at `b`, box stride b_box) over kK columns; issued and committed.
template <typename T, int kN, int kK>
__device__ __forceinline__ void IssueABt(float (&acc)[kN / 2], const uint8_t* a, int a_box, const uint8_t* b,
                                         int b_box) {
#pragma unroll
  for (int i = 0; i < kN / 2; ++i) acc[i] = 0.f;
  const uint64_t da0 = sm90::DescSw128(a, 16, 1024), db0 = sm90::DescSw128(b, 16, 1024);
  sm90::WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    sm90::WgmmaM64K16<T, kN, 0>(acc, sm90::DescAt(da0, (kk / 4) * a_box + (kk % 4) * 32),
                                sm90::DescAt(db0, (kk / 4) * b_box + (kk % 4) * 32));
  }
  sm90::WgmmaCommit();
}

// acc (64 x kD) += A (64 x kM, register fragments) B (kM rows x kD of an MN-major tile at b, box
// stride b_box); issued and committed.
template <typename T, int kD, int kM>
__device__ __forceinline__ void IssueRs(float (&acc)[kD / 2], const uint32_t (&a)[kM / 16][4], const uint8_t* b,
                                        int b_box) {
  const uint64_t desc0 = sm90::DescSw128(b, b_box, 1024);
  sm90::WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < kM / 16; ++kk) {
    sm90::WgmmaRsM64K16<T, kD, 1>(acc, a[kk], sm90::DescAt(desc0, kk * 16 * 128));
  }
  sm90::WgmmaCommit();
}

#endif

template <typename T, int kD, bool kCausal>
__global__ void __launch_bounds__(kThreads, 1)
    AttentionGradKvWgmmaKernel(const __grid_constant__ Maps maps, const AttentionFlashGradParams p, const GradWork w,
                               int order_heads) {
#if KAIO_SM90A_DEVICE
  using namespace sm90;
  using L = Layout<kD>;
  constexpr int kBlockM = L::kBlockM;
  extern __shared__ uint8_t smem_raw[];
  __shared__ uint64_t kv_full, full[L::kStages];
  __shared__ __align__(16) float s_lse[2][kBlockM], s_dvec[2][kBlockM];
  uint8_t* sk = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  uint8_t* sv = sk + L::kKVBytes;
  uint8_t* sq = sv + L::kKVBytes;               // stage s: sq + s * 2 * kQBytes; its dO follows its Q
  uint8_t* sds = sq + L::kStages * 2 * L::kQBytes;  // buffer i: sds + i * kDsBytes

  const int tid = threadIdx.x, wg = tid / 128, t = tid % 128, lane = t % 32;
  // Block order (blocks start in index order): groups of order_heads (kv head, batch) pairs, the
  // group of heads_total % order_heads first; inside a group the key tiles in order, each for the
  // group's heads. order_heads = 1 is key tile, then kv head, then batch.
  int64_t kvh, b, n0;
  {
    const int64_t heads_total = p.hkv * p.batch, key_tiles = (p.sk + kBlockN - 1) / kBlockN;
    const int64_t rem = heads_total % order_heads, first = rem * key_tiles, index = blockIdx.x;
    int64_t base = 0, size = rem, r = index;
    if (index >= first) {
      const int64_t g = (index - first) / (order_heads * key_tiles);
      base = rem + g * order_heads, size = order_heads, r = index - first - g * order_heads * key_tiles;
    }
    const int64_t hb = base + r % size;
    n0 = (r / size) * kBlockN, kvh = hb % p.hkv, b = hb / p.hkv;
  }
  const int64_t group = p.hq / p.hkv, diag = p.sk - p.sq;
  const int64_t q_tiles = (p.sq + kBlockM - 1) / kBlockM;
  const int64_t first_tile = kCausal ? min(q_tiles, max(int64_t(0), n0 - diag) / kBlockM) : 0;
  const int64_t tiles = q_tiles - first_tile, steps = tiles * group;
  // Step order: the group's query heads one after another, each over its query tiles. Steps are
  // walked with counters (a step's position), not divided out of the step index in the loop.
  struct Pos {
    int h;         // query head
    int64_t tile;  // query tile, counted from first_tile
  };
  auto advance = [&](Pos x) {
    if (++x.tile == tiles) x.tile = 0, ++x.h;
    return x;
  };
  auto row0_of = [&](Pos x) { return (first_tile + x.tile) * kBlockM; };

  if (tid == 0) {
    MbarInit(&kv_full, 1);
    for (int s = 0; s < L::kStages; ++s) MbarInit(&full[s], 1);
    FenceBarrierInit();
  }
  // Thread tid (< 2 kBlockM) loads one row's LSE (tid < kBlockM) or Dvec entry of a step as stored
  // (natural-log LSE, -inf for a row past Sq) and converts it only when storing it to shared memory
  // (LSE in base 2, +inf where P must be 0): the load's latency hides behind the step's products.
  const int64_t head0 = kvh * group;
  auto load_row_value = [&](Pos x) {
    const int64_t i = row0_of(x) + tid % kBlockM, index = (b * p.hq + x.h) * p.sq + i;
    if (tid < kBlockM) return i < p.sq ? p.lse[index] : -INFINITY;
    return i < p.sq ? w.dvec[index] : 0.f;
  };
  auto store_row_value = [&](int buf, float v) {
    if (tid < kBlockM) s_lse[buf][tid] = attention_grad::Lse2Of(v);
    else if (tid < 2 * kBlockM) s_dvec[buf][tid - kBlockM] = v;
  };
  const Pos pos0{static_cast<int>(head0), 0};
  if (steps > 0 && tid < 2 * kBlockM) store_row_value(0, load_row_value(pos0));
  __syncthreads();

  auto load_step = [&](int64_t s, Pos x) {  // thread 0: step s's Q and dO into stage s % kStages
    const int st = static_cast<int>(s % L::kStages);
    const int h = x.h, m0 = static_cast<int>(row0_of(x));
    uint8_t* q_dst = sq + st * 2 * L::kQBytes;
    MbarArriveExpectTx(&full[st], 2 * L::kQBytes);
#pragma unroll
    for (int box = 0; box < L::kBoxes; ++box) {
      TmaLoad4d(q_dst + box * L::kQBoxBytes, &maps.q, &full[st], box * kBoxCols, m0, h, static_cast<int>(b));
      TmaLoad4d(q_dst + L::kQBytes + box * L::kQBoxBytes, &maps.d_o, &full[st], box * kBoxCols, m0, h,
                static_cast<int>(b));
    }
  };
  if (tid == 0 && steps > 0) {
    MbarArriveExpectTx(&kv_full, 2 * L::kKVBytes);
#pragma unroll
    for (int box = 0; box < L::kBoxes; ++box) {
      TmaLoad4d(sk + box * L::kKVBoxBytes, &maps.k, &kv_full, box * kBoxCols, static_cast<int>(n0),
                static_cast<int>(kvh), static_cast<int>(b));
      TmaLoad4d(sv + box * L::kKVBoxBytes, &maps.v, &kv_full, box * kBoxCols, static_cast<int>(n0),
                static_cast<int>(kvh), static_cast<int>(b));
    }
    load_step(0, pos0);
    if (steps > 1) load_step(1, advance(pos0));
  }

  // Warpgroup wg: keys [64 wg, 64 wg + 64) of the tile. Thread t of an m64nN accumulator holds rows
  // 16 (t / 32) + lane / 4 (+ 8) and, per 8-column block j, columns 8 j + 2 (lane % 4) (+ 1).
  const int row_a = 16 * (t / 32) + lane / 4, col_a = 2 * (lane % 4);
  const uint8_t* k_w = sk + wg * 64 * 128;  // this warpgroup's 64 key rows inside each box
  const uint8_t* v_w = sv + wg * 64 * 128;
  const float sl = p.scale * attention_grad::kLog2e;
  const bool want_dq = w.dq_accum != nullptr;

  float dk[kD / 2], dv[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) dk[i] = dv[i] = 0.f;

  if (steps > 0) MbarWait(&kv_full, 0);
  Pos pos = pos0, pos1 = advance(pos0), pos2 = advance(pos1);  // steps s, s + 1, s + 2
  for (int64_t s = 0; s < steps; ++s, pos = pos1, pos1 = pos2, pos2 = advance(pos2)) {
    const int st = static_cast<int>(s % L::kStages), buf = static_cast<int>(s & 1);
    const int64_t h = pos.h, m0 = row0_of(pos);
    const float next_row_value = (s + 1 < steps && tid < 2 * kBlockM) ? load_row_value(pos1) : 0.f;
    const uint8_t* q_tile = sq + st * 2 * L::kQBytes;
    const uint8_t* do_tile = q_tile + L::kQBytes;
    MbarWait(&full[st], static_cast<uint32_t>((s / L::kStages) & 1));

    float sc[kBlockM / 2], dp[kBlockM / 2];
    IssueABt<T, kBlockM, kD>(sc, k_w, L::kKVBoxBytes, q_tile, L::kQBoxBytes);
    IssueABt<T, kBlockM, kD>(dp, v_w, L::kKVBoxBytes, do_tile, L::kQBoxBytes);

    // Masks in tile-local ints: key kl (of the block's 128) exists iff kl < key_lim; causal query
    // column qc sees it iff kl - qc <= diag_off.
    const int key_lim = static_cast<int>(min(p.sk - n0, int64_t(kBlockN)));
    const int diag_off = static_cast<int>(max(int64_t(-kBlockM - kBlockN), min(int64_t(kBlockM + kBlockN), m0 + diag - n0)));
    const bool masked = key_lim < kBlockN || (kCausal && kBlockN - 1 > diag_off);
    const float* lse = s_lse[buf];
    const float* dvec = s_dvec[buf];

    WgmmaWait<1>();
    FenceOperands(sc);
#pragma unroll
    for (int j = 0; j < kBlockM / 8; ++j) {
      const float2 lse2 = *reinterpret_cast<const float2*>(lse + 8 * j + col_a);  // columns qc, qc + 1
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qc = 8 * j + col_a + (e & 1), kl = 64 * wg + row_a + 8 * (e >> 1);
        float pr = Exp2(fmaf(sc[4 * j + e], sl, -((e & 1) ? lse2.y : lse2.x)));
        if (masked && (kl >= key_lim || (kCausal && kl - qc > diag_off))) pr = 0.f;
        sc[4 * j + e] = pr;
      }
    }
    uint32_t pa[kBlockM / 16][4];
    PackA<T, kBlockM>(sc, pa);
    WgmmaWait<0>();
    FenceOperands(dp);
    // dS^T = P^T (dP^T - Dvec), with P as rounded for dV.
#pragma unroll
    for (int kk = 0; kk < kBlockM / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float2 pr = ToFloat2<T>(pa[kk][r]);
        const int i = 8 * kk + 2 * r, qc = 8 * (i / 4) + col_a;
        const float2 dv2 = *reinterpret_cast<const float2*>(dvec + qc);
        dp[i] = pr.x * (dp[i] - dv2.x);
        dp[i + 1] = pr.y * (dp[i + 1] - dv2.y);
      }
    uint32_t da[kBlockM / 16][4];
    PackA<T, kBlockM>(dp, da);
    IssueRs<T, kD, kBlockM>(dv, pa, do_tile, L::kQBoxBytes);
    IssueRs<T, kD, kBlockM>(dk, da, q_tile, L::kQBoxBytes);

    uint8_t* ds = sds + buf * L::kDsBytes;
    if (want_dq) {
      // dS [query][key] into box wg (this warpgroup's 64 keys), 128-byte swizzled as TMA would.
      // da[kk][r] is the 8 x 8 block (keys 16 (t / 32) + 8 (r & 1) + 0..7, queries 16 kk + 8 (r / 2)
      // + 0..7) in accumulator layout: one transposing stmatrix a kk, lane 8 r + c giving query c's
      // 16-byte row of 8 keys (one swizzle chunk). (It replaced two 16-bit stores a pair: D = 64
      // 5 % faster, D = 128 the same, on the H200.)
      const int r = lane / 8, c = lane % 8, key_chunk = 2 * (t / 32) + (r & 1);
      const uint32_t box_addr = SmemAddr(ds + wg * L::kDsBoxBytes);
#pragma unroll
      for (int kk = 0; kk < kBlockM / 16; ++kk) {
        const int q = 16 * kk + 8 * (r >> 1) + c;
        StMatrixX4Trans(box_addr + q * 128 + ((key_chunk ^ (q & 7)) << 4), da[kk]);
      }
    }
    if (tid < 2 * kBlockM && s + 1 < steps) store_row_value(buf ^ 1, next_row_value);
    WgmmaWait<0>();  // dV, dK done: this warpgroup is through with the stage's Q and dO
    FenceOperands(dv);
    FenceOperands(dk);
    FenceOperands(pa);
    FenceOperands(da);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();  // both warpgroups: dS complete, the stage free, the next row values stored
    if (tid == 0 && s + 2 < steps) load_step(s + 2, pos2);

    if (want_dq) {
      // dQ tile (64 rows x 64 columns of this warpgroup) = dS K over the block's 128 keys.
      constexpr int kRowOff = kD == 64 ? 64 : 0, kColOff = kD == 128 ? 64 : 0;
      float dq[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) dq[i] = 0.f;
      WgmmaFence();
      const uint64_t da0 = DescSw128(ds + wg * kRowOff * 128, 16, 1024);
      const uint64_t db0 = DescSw128(sk + (kD == 128 ? wg * L::kKVBoxBytes : 0), L::kKVBoxBytes, 1024);
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        const uint64_t da_desc = DescAt(da0, (kk / 4) * L::kDsBoxBytes + (kk % 4) * 32);
        const uint64_t db_desc = DescAt(db0, kk * 16 * 128);
        WgmmaM64K16<T, 64, 1>(dq, da_desc, db_desc);
      }
      WgmmaCommit();
      WgmmaWait<0>();
      FenceOperands(dq);
      // Lanes 2c and 2c + 1 hold neighbouring column pairs of rows row_a and row_a + 8: one exchange
      // gives the even lane four consecutive columns of row_a and the odd lane those of row_a + 8,
      // added with one red.global.add.v4.f32 each (half the atomic operations of the pairs). All
      // exchanges first, then the atomics: 7 % faster at D = 64 on the H200 than each atomic right
      // behind its exchange, the same at D = 128 within the runs' spread.
      const int odd = lane & 1;
      const int64_t q = m0 + wg * kRowOff + row_a + 8 * odd;
      float* row = w.dq_accum + ((b * p.hq + h) * p.sq + q) * p.d + wg * kColOff + (col_a & ~3);
      float sums[8][4];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float* own = dq + 4 * j;
        const float g0 = __shfl_xor_sync(0xffffffffu, odd ? own[0] : own[2], 1);
        const float g1 = __shfl_xor_sync(0xffffffffu, odd ? own[1] : own[3], 1);
        sums[j][0] = odd ? g0 : own[0];
        sums[j][1] = odd ? g1 : own[1];
        sums[j][2] = odd ? own[2] : g0;
        sums[j][3] = odd ? own[3] : g1;
      }
      if (q < p.sq) {
#pragma unroll
        for (int j = 0; j < 8; ++j) RedAddV4(row + 8 * j, sums[j][0], sums[j][1], sums[j][2], sums[j][3]);
      }
    }
  }

  // dK = scale * sum dS^T Q and dV = sum P^T dO of this warpgroup's keys.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = n0 + 64 * wg + row_a + 8 * r;
    if (key >= p.sk) continue;
    const int64_t k_off = b * p.k_str.batch + kvh * p.k_str.head + key * p.k_str.row + col_a;
    const int64_t v_off = b * p.v_str.batch + kvh * p.v_str.head + key * p.v_str.row + col_a;
#pragma unroll
    for (int j = 0; j < kD / 8; ++j) {
      if (p.dk_out)
        *reinterpret_cast<uint32_t*>(static_cast<T*>(p.dk_out) + k_off + 8 * j) =
            ptx::Pack2<T>(dk[4 * j + 2 * r] * p.scale, dk[4 * j + 2 * r + 1] * p.scale);
      if (p.dv_out)
        *reinterpret_cast<uint32_t*>(static_cast<T*>(p.dv_out) + v_off + 8 * j) =
            ptx::Pack2<T>(dv[4 * j + 2 * r], dv[4 * j + 2 * r + 1]);
    }
  }
#else
  __trap();  // never launched without sm_90a code (kBuiltForSm90a)
#endif
}

}  // namespace attention_grad_wgmma
}  // namespace kaio
