// Device pieces the INT4 and INT8 kernels share: streaming weight loads, the f16 / bf16
// mma.sync, packed-register helpers, and the segment batch of QkvProject's one-launch
// projections (the kernels' column blocks run over up to three weights of the same A in turn).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

#include "quant_matmul/quant_matmul_params.h"  // kMaxQuantSegments

namespace kaio {

// The projections of one launch and the first column block of each: block x of the grid belongs
// to the last segment whose first block is <= x. P: MatmulInt4Params or MatmulInt8Params.
template <class P>
struct SegmentBatch {
  P seg[kMaxQuantSegments];
  int64_t first_block[kMaxQuantSegments];
  int count;
};

// The batch of `count` segments in blocks of `cols` columns; *blocks: the grid's column blocks.
template <class P>
inline SegmentBatch<P> MakeBatch(const P* segs, int count, int64_t cols, int64_t* blocks) {
  SegmentBatch<P> bt{};
  bt.count = count;
  int64_t first = 0;
  for (int i = 0; i < count; ++i) {
    bt.seg[i] = segs[i];
    bt.first_block[i] = first;
    first += (segs[i].n + cols - 1) / cols;
  }
  *blocks = first;
  return bt;
}

template <typename F>
__device__ __forceinline__ F Pick(int s, F f0, F f1, F f2) { return s == 0 ? f0 : s == 1 ? f1 : f2; }

// This block's segment, and (*block) its column block inside it.
template <class P>
__device__ __forceinline__ int SegmentIndex(const SegmentBatch<P>& bt, int64_t* block) {
  const int64_t bx = blockIdx.x;
  const int s = (bt.count > 1 && bx >= bt.first_block[1]) + (bt.count > 2 && bx >= bt.first_block[2]);
  *block = bx - Pick(s, int64_t(0), bt.first_block[1], bt.first_block[2]);
  return s;
}

// This block's projection (*block: its column block inside it). Only the per-segment fields are
// selected (constant indices: no local-memory copy of the parameters), so the shared ones stay
// kernel-parameter reads: b, scales, zero_points, bias, y, n, and MatmulInt8Params' output scale.
// (The order of the selections is each kernel's as tested and measured, so the generated code
// stayed the same when the INT4 and INT8 copies became this one.)
template <class P>
__device__ __forceinline__ P SegmentOf(const SegmentBatch<P>& bt, int64_t* block) {
  constexpr bool kInt8 = std::is_same<P, MatmulInt8Params>::value;
  const int s = SegmentIndex(bt, block);
  auto pick = [&](auto P::*field) { return Pick(s, bt.seg[0].*field, bt.seg[1].*field, bt.seg[2].*field); };
  P p = bt.seg[0];
  p.b = pick(&P::b);
  p.scales = pick(&P::scales);
  p.zero_points = pick(&P::zero_points);
  if constexpr (!kInt8) p.bias = pick(&P::bias);
  p.y = pick(&P::y);
  p.n = pick(&P::n);
  if constexpr (kInt8) {
    p.out_scale = pick(&P::out_scale);
    p.out_scale_per_channel = pick(&P::out_scale_per_channel);
    p.bias = pick(&P::bias);
  }
  return p;
}

// (a & b) ^ c in one LOP3 (the compiler emits two).
__device__ __forceinline__ uint32_t AndXor(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0x6a;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// C += A B: mma.sync m16n8k16, A and B in T (f16 / bf16), f32 accumulators.
template <typename T>
__device__ __forceinline__ void Mma(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1) {
  if constexpr (std::is_same<T, __half>::value) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// 16 bytes of weights read once: not kept in L1, L2 fetches 256-byte lines.
__device__ __forceinline__ uint4 LoadStream(const uint32_t* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// 16 weight bytes as LoadStream reads them where ok, else zeros: one predicated load (a select around
// LoadStream compiled to a branch around it, which ran slower); LoadHalfIf: the same for a 16-bit scale.
__device__ __forceinline__ uint4 LoadStreamIf(const uint32_t* p, bool ok) {
  uint4 v;
  asm volatile(
      "{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n mov.b32 %0, 0;\n mov.b32 %1, 0;\n mov.b32 %2, 0;\n mov.b32 %3, 0;\n"
      " @q ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "r"(int(ok)));
  return v;
}
__device__ __forceinline__ uint32_t LoadHalfIf(const unsigned short* p, bool ok) {
  unsigned short v;
  asm volatile("{\n .reg .pred q;\n setp.ne.b32 q, %2, 0;\n mov.b16 %0, 0;\n @q ld.global.nc.u16 %0, [%1];\n}\n"
               : "=h"(v)
               : "l"(p), "r"(int(ok)));
  return v;
}

// A 16-bit value in both halves of a register.
__device__ __forceinline__ uint32_t Bcast(uint16_t h) { return uint32_t(h) | (uint32_t(h) << 16); }

// K slices as the CTAs of one thread-block cluster (sm_90): slice 0's CTA adds the other slices'
// `count` floats (count % 4 == 0, buf 16-byte aligned) into its own buf through distributed shared
// memory, in rank order (deterministic). Each thread issues all of its remote loads before it adds
// (one DSMEM round trip, not one per slice and element). Every thread of every CTA calls it; after
// it slice 0's buf holds the sums (its threads must __syncthreads before reading others' elements).
constexpr int kMaxClusterSlices = 8;

__device__ __forceinline__ void ClusterSliceSum(float* buf, int count, int splits, int slice) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  if (slice == 0) {
    const uint32_t local = static_cast<uint32_t>(__cvta_generic_to_shared(buf));
    for (int e = 4 * int(threadIdx.x); e < count; e += 4 * int(blockDim.x)) {
      float4 sum = *reinterpret_cast<const float4*>(buf + e);
      // Ranks 1-3, then 4-7: four loads in flight at a time (16 registers: the kernels' main loops
      // spilled with eight).
#pragma unroll
      for (int r0 = 1; r0 < kMaxClusterSlices; r0 += 4) {
        if (r0 >= splits) break;
        float4 v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = r0 + i;
          if (r >= splits || r >= kMaxClusterSlices) break;
          uint32_t remote;
          asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local + 4u * e), "r"(r));
          asm volatile("ld.shared::cluster.v4.f32 {%0,%1,%2,%3}, [%4];\n"
                       : "=f"(v[i].x), "=f"(v[i].y), "=f"(v[i].z), "=f"(v[i].w)
                       : "r"(remote)
                       : "memory");
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (r0 + i >= splits || r0 + i >= kMaxClusterSlices) break;
          sum.x += v[i].x, sum.y += v[i].y, sum.z += v[i].z, sum.w += v[i].w;
        }
      }
      *reinterpret_cast<float4*>(buf + e) = sum;
    }
  }
  // The other CTAs' shared memory must outlive slice 0's reads.
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}

// Component i of a uint4.
__device__ __forceinline__ uint32_t Comp(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

}  // namespace kaio
