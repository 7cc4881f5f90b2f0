// The host side MatmulInt4's and MatmulInt8's Hopper GEMMs share (matmul_int4_sm90.cu,
// matmul_int8_sm90.cu): when a quantized product takes the wgmma kernel of
// matmul_tc/matmul_tc_wgmma_kernel.cuh, and its launch with B from a quantized policy (Int4B, Int8B).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/aligned.h"
#include "common/tensor_map.h"
#include "matmul_tc/matmul_tc_wgmma_kernel.cuh"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
namespace matmul_wgmma {

// Host: whether a quantized product (MatmulInt4Params, MatmulInt8Params) may take the kernel: it
// runs (WgmmaRuns), 16-byte aligned operands, and enough 128 x 128 tiles to keep half the SMs busy
// (else the mma.sync GEMM's smaller tiles, or its split K, fill the GPU better). Each launcher adds
// its own layout rules.
template <class Quant>
bool QuantGemmFits(const Quant& q) {
  if (!WgmmaRuns(q.sm, q.sm_count, q.m, q.n, q.k) || !Aligned16(q.a) || !Aligned16(q.b) || !Aligned16(q.scales) ||
      (q.zero_points && !Aligned16(q.zero_points)))
    return false;
  const int64_t tiles = (q.m + 127) / 128 * ((q.n + kBlockN - 1) / kBlockN);
  return 2 * tiles >= q.sm_count;
}

// Host: a quantized product (MatmulInt4Params, MatmulInt8Params) on the kernel with B from the policy
// BOp<T, kZp> (Int4B, Int8B), T and kZp from the product: 128-row tiles (with four consumers the
// dequantisation's registers spill), the maps of A and of the scale and zero-point rows ([scale_rows,
// N] in A's type, boxes of the policy's ScaleRows() rows x 128 columns), and the policy's weight map
// from `weight_map(BOp*)`. cudaErrorNotSupported where the driver refuses a map.
template <template <typename, bool> class BOp, typename T, bool kZp, class Quant, class WeightMap>
cudaError_t LaunchQuantGemmAs(const Quant& q, int64_t scale_rows, const WeightMap& weight_map, cudaStream_t stream) {
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
  return LaunchWgmma<T, BOp<T, kZp>, kConsumers>(DenseGemmOf(q), map_a, b_op, stream);
}

template <template <typename, bool> class BOp, class Quant, class WeightMap>
cudaError_t LaunchQuantGemm(const Quant& q, int64_t scale_rows, const WeightMap& weight_map, cudaStream_t stream) {
  if (q.bf16)
    return q.zero_points ? LaunchQuantGemmAs<BOp, __nv_bfloat16, true>(q, scale_rows, weight_map, stream)
                         : LaunchQuantGemmAs<BOp, __nv_bfloat16, false>(q, scale_rows, weight_map, stream);
  return q.zero_points ? LaunchQuantGemmAs<BOp, __half, true>(q, scale_rows, weight_map, stream)
                       : LaunchQuantGemmAs<BOp, __half, false>(q, scale_rows, weight_map, stream);
}

}  // namespace matmul_wgmma
}  // namespace kaio
