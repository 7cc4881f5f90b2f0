// The host side MatmulInt4's and MatmulInt8's Hopper GEMMs share (matmul_int4_sm90.cu,
// matmul_int8_sm90.cu): when a quantized product takes the wgmma kernel of
// matmul_tc/matmul_tc_wgmma_kernel.cuh, and its launch with B from a quantized policy (Int4B, Int8B).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/tensor_map.h"
#include "matmul_tc/matmul_tc_wgmma_kernel.cuh"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
namespace matmul_wgmma {

// Host: in how many K slices a quantized product (MatmulInt4Params, MatmulInt8Params) takes the
// kernel; 0: not at all. It must run (WgmmaRuns) on 16-byte aligned operands. 1: its 128 x 128 tiles
// keep half the SMs busy. Else slices of at least 512 k (up to 16) fill the GPU, their f32 sums
// added by a second kernel: 128x4096x4096 has 32 tiles for 132 SMs, and each tile's dequantisation
// (~1250 cycles a 64-k step, 128x14336x4096) is the kernel's cost, so the slices split it. 0 where
// even the slices leave half the SMs idle (the mma.sync GEMM's smaller tiles fill the GPU better).
// KAIO_QUANT_WGMMA_SPLIT=0: no slices (the mma.sync GEMM there instead; side-by-side runs). Each
// launcher adds its own layout rules.
template <class Quant>
int64_t QuantGemmSplits(const Quant& q) {
  if (!WgmmaRuns(q.sm, q.sm_count, q.m, q.n, q.k) || !Aligned16(q.a) || !Aligned16(q.b) || !Aligned16(q.scales) ||
      (q.zero_points && !Aligned16(q.zero_points)))
    return 0;
  const int64_t tiles = (q.m + 127) / 128 * ((q.n + kBlockN - 1) / kBlockN);
  if (2 * tiles >= q.sm_count) return 1;
  const int64_t splits = std::min<int64_t>({q.sm_count / tiles, q.k / 512, 16});
  if (splits < 2 || 2 * tiles * splits < q.sm_count || !EnvSwitch("KAIO_QUANT_WGMMA_SPLIT", true)) return 0;
  return splits;
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Host: f(TypeTag<T>{}, std::integral_constant<bool, kZp>{}) for the product's A type T (f16 / bf16)
// and whether it has zero points: the one place the quantized launchers turn those into template
// arguments.
template <class Quant, class F>
cudaError_t WithTypes(const Quant& q, const F& f) {
  if (q.bf16)
    return q.zero_points ? f(TypeTag<__nv_bfloat16>{}, std::true_type{}) : f(TypeTag<__nv_bfloat16>{}, std::false_type{});
  return q.zero_points ? f(TypeTag<__half>{}, std::true_type{}) : f(TypeTag<__half>{}, std::false_type{});
}

// Host: a quantized product (MatmulInt4Params, MatmulInt8Params) on the kernel with B from the policy
// BOp<T, kZp> (Int4B, Int8B), T and kZp from the product: 128-row tiles (with four consumers the
// dequantisation's registers spill), the maps of A and of the scale and zero-point rows ([scale_rows,
// N] in A's type, boxes of the policy's ScaleRows() rows x 128 columns), and the policy's weight map
// from `weight_map(BOp*)`. cudaErrorNotSupported where the driver refuses a map.
template <template <typename, bool> class BOp, typename T, bool kZp, class Quant, class WeightMap>
cudaError_t LaunchQuantGemmAs(const Quant& q, const MatmulTcParams& tp, int64_t scale_rows, const WeightMap& weight_map,
                              cudaStream_t stream) {
  constexpr int kConsumers = 2;
  const CUtensorMapDataType elem = q.bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  BOp<T, kZp> b_op;
  b_op.group_size = q.group_size;
  CUtensorMap map_a;
  bool ok = MakeTensorMap(&map_a, elem, 2, q.a, q.m, q.k, 1, 64 * kConsumers, kRowElems, CU_TENSOR_MAP_SWIZZLE_128B);
  ok = ok && MakeTensorMap(&b_op.scales, elem, 2, q.scales, scale_rows, q.n, 1, b_op.ScaleRows(), kBlockN,
                           CU_TENSOR_MAP_SWIZZLE_NONE);
  if constexpr (kZp)
    ok = ok && MakeTensorMap(&b_op.zero_points, elem, 2, q.zero_points, scale_rows, q.n, 1, b_op.ScaleRows(),
                             kBlockN, CU_TENSOR_MAP_SWIZZLE_NONE);
  if (!ok || !weight_map(&b_op)) return cudaErrorNotSupported;
  return LaunchWgmma<T, BOp<T, kZp>, kConsumers>(tp, map_a, b_op, stream);
}

// Host: the product in `splits` K slices (QuantGemmSplits, >= 1); with more than one, the slices'
// sums go to `scratch` (QuantWgmmaScratchBytes) and RunMatmulTcCombine adds them into Y.
// cudaErrorNotSupported (nothing launched): a map refused, or slices without scratch.
template <template <typename, bool> class BOp, class Quant, class WeightMap>
cudaError_t LaunchQuantGemm(const Quant& q, int64_t splits, void* scratch, int64_t scale_rows,
                            const WeightMap& weight_map, cudaStream_t stream) {
  if (splits < 1 || (splits > 1 && !scratch)) return cudaErrorNotSupported;
  MatmulTcParams tp = DenseGemmOf(q);
  if (splits > 1) tp.k_split = splits, tp.partial = static_cast<float*>(scratch);
  const cudaError_t e = WithTypes(q, [&](auto t, auto zp) {
    return LaunchQuantGemmAs<BOp, typename decltype(t)::type, decltype(zp)::value>(q, tp, scale_rows, weight_map,
                                                                                   stream);
  });
  if (e != cudaSuccess || splits == 1) return e;
  return static_cast<cudaError_t>(RunMatmulTcCombine(tp, stream));
}

// Host: large M dequantises the weights once, into scratch in A's type, and runs the dense Hopper GEMM
// (RunMatmulTc) on them: the quantized kernel dequantises each 128 x 64 weight tile again for every
// 128-row tile of A, ~1250 cycles a step that the dense kernel spends on its wgmma instead
// (2048x4096x4096: 386 TFLOP/s quantized, ~735 dense at 4096^3, wgmma_probe, H200), and one pass
// over the weights costs ~12 us at 4096 x 4096 (DequantItems, cold caches). From kDequantFirstRows
// rows, where that pass is a small part; not where the dense GEMM would split K (scratch for its
// slices too).
// KAIO_QUANT_DEQUANT_FIRST=0: the quantized kernel at every M (side-by-side runs).
constexpr int64_t kDequantFirstRows = 1024;

// Host: the dense product on the dequantised weights `w` ([N, K] with trans_b, else [K, N]).
template <class Quant>
MatmulTcParams DequantFirstGemm(const Quant& q, const void* w, bool trans_b) {
  MatmulTcParams tp = DenseGemmOf(q);
  tp.b = w;
  tp.trans_b = trans_b;
  tp.use_async = true;
  return tp;
}

// Host: the items of the weights' dequantisation kernels (DequantInt4Kernel, DequantInt8Kernel): 8
// weights each (one INT4 word, or 8 int8 of a row; 16 bytes out). Their indices are 32-bit: fewer
// than kDequantMaxItems.
constexpr int64_t kDequantMaxItems = int64_t(1) << 31;
template <class Quant>
int64_t DequantItemCount(const Quant& q) {
  return q.n * q.k / 8;
}

// Host: whether a product the kernel takes (QuantGemmSplits > 0, so it runs there) is dequantised first.
template <class Quant>
bool DequantFirst(const Quant& q, bool trans_b) {
  return q.m >= kDequantFirstRows && DequantItemCount(q) < kDequantMaxItems &&
         MatmulTcKSplit(DequantFirstGemm(q, nullptr, trans_b)) == 1 && EnvSwitch("KAIO_QUANT_DEQUANT_FIRST", true);
}

// Host: the scratch of a product's Hopper regime, `splits` from QuantGemmSplits (0: the kernel does
// not take it): the dequantised weights (N x K in A's type) where DequantFirst, else the slices'
// f32 sums (splits x M x N; none unsplit).
template <class Quant>
int64_t QuantWgmmaScratchBytes(const Quant& q, int64_t splits, bool trans_b) {
  if (splits == 0) return 0;
  if (DequantFirst(q, trans_b)) return q.n * q.k * 2;
  return splits > 1 ? splits * q.m * q.n * int64_t(sizeof(float)) : 0;
}

// Threads a block of the weights' dequantisation kernels, and items a thread takes in one step.
constexpr int kDequantThreads = 256;
constexpr int kDequantItemsPerThread = 4;

// Device: store(i, load(i)) for the items i in [0, total) (< kDequantMaxItems), a grid-stride loop
// over warps: a warp takes kDequantItemsPerThread x 32 consecutive items a step, lane l items l,
// l + 32, ..., so each load and store instruction of the warp covers consecutive items (coalesced),
// and a thread's loads are issued before its stores. H200 under ncu (cold caches), 4096 x 4096 INT4
// weights: 11.8 us, against 12.8 for one item a thread with 64-bit index divisions and ~27 for four
// consecutive items a thread (64-byte stores 64 bytes apart);
// bench/results/2026-11-30_quant_gemm_probes_h200.md.
template <class Load, class Store>
__device__ __forceinline__ void DequantItems(uint32_t total, const Load& load, const Store& store) {
  constexpr uint32_t kWarpItems = 32 * kDequantItemsPerThread;
  const uint32_t lane = threadIdx.x % 32, warps = gridDim.x * blockDim.x / 32;
  for (uint32_t base = (blockIdx.x * blockDim.x + threadIdx.x) / 32 * kWarpItems; base < total;
       base += warps * kWarpItems) {
    decltype(load(0u)) v[kDequantItemsPerThread];
#pragma unroll
    for (int j = 0; j < kDequantItemsPerThread; ++j)
      if (base + j * 32 + lane < total) v[j] = load(base + j * 32 + lane);
#pragma unroll
    for (int j = 0; j < kDequantItemsPerThread; ++j)
      if (base + j * 32 + lane < total) store(base + j * 32 + lane, v[j]);
  }
}

// Host: the DequantFirst regime. dequant(TypeTag<T>, kZp constant, blocks) launches the
// dequantisation of the weights into `scratch` (QuantWgmmaScratchBytes) on `blocks` blocks; then the
// dense GEMM on them. cudaErrorNotSupported (nothing launched) without scratch.
template <class Quant, class Dequant>
cudaError_t RunDequantFirst(const Quant& q, void* scratch, bool trans_b, const Dequant& dequant, cudaStream_t stream) {
  if (!scratch) return cudaErrorNotSupported;
  const int64_t items = DequantItemCount(q), per_block = kDequantThreads * kDequantItemsPerThread;
  const int64_t blocks = std::min<int64_t>((items + per_block - 1) / per_block, 8 * int64_t(q.sm_count));
  const cudaError_t e = WithTypes(q, [&](auto t, auto zp) { return dequant(t, zp, static_cast<unsigned>(blocks)); });
  if (e != cudaSuccess) return e;
  return static_cast<cudaError_t>(RunMatmulTc(DequantFirstGemm(q, scratch, trans_b), stream));
}

}  // namespace matmul_wgmma
}  // namespace kaio
