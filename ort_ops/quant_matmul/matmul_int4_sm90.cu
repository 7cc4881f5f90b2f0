// Launcher of MatmulInt4's Hopper GEMM (matmul_int4_wgmma.cuh): tensor maps of A, the packed codes,
// the scales and zero points, built on the host for each run, and a persistent grid of one CTA per
// SM. One projection without bias (MatmulInt4); QkvProjectInt4 keeps the mma.sync GEMM.
#include <cuda_runtime.h>

#include "common/tensor_map.h"
#include "quant_matmul/matmul_int4_wgmma.cuh"

namespace kaio {
namespace {

template <typename T, bool kZp>
cudaError_t Dispatch(const MatmulInt4Params& p, cudaStream_t stream) {
  using namespace matmul_wgmma;
  using BOp = Int4B<T, kZp>;
  const CUtensorMapDataType elem = p.bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  // 128-row tiles (two consumer warpgroups) only: with four, the dequantisation's registers spill.
  constexpr int kConsumers = 2;
  BOp b_op;
  b_op.group_size = p.group_size;
  CUtensorMap map_a;
  bool ok = MakeTensorMap(&map_a, elem, 2, p.a, p.m, p.k, 1, 64 * kConsumers, kRowElems, CU_TENSOR_MAP_SWIZZLE_128B);
  ok = ok && MakeTensorMap(&b_op.codes, CU_TENSOR_MAP_DATA_TYPE_UINT32, 4, p.b, p.n, p.k / 8, 1, kBlockN, kBlockK / 8,
                           CU_TENSOR_MAP_SWIZZLE_NONE);
  const int64_t groups = p.k / p.group_size;
  ok = ok && MakeTensorMap(&b_op.scales, elem, 2, p.scales, groups, p.n, 1, b_op.ScaleRows(), kBlockN,
                           CU_TENSOR_MAP_SWIZZLE_NONE);
  if constexpr (kZp)
    ok = ok && MakeTensorMap(&b_op.zero_points, elem, 2, p.zero_points, groups, p.n, 1, b_op.ScaleRows(), kBlockN,
                             CU_TENSOR_MAP_SWIZZLE_NONE);
  if (!ok) return cudaErrorNotSupported;
  return LaunchWgmma<T, BOp, kConsumers>(DenseGemmOf(p), map_a, b_op, stream);
}

}  // namespace

cudaError_t RunMatmulInt4Wgmma(const MatmulInt4Params& p, cudaStream_t stream) {
  // TMA strides are multiples of 16 bytes: N % 8 (scales' rows), K % 32 (codes' rows; K % group does it).
  if (!matmul_wgmma::QuantGemmFits(p) || p.bias || p.n % 8 != 0 || p.k % 32 != 0)
    return cudaErrorNotSupported;  // the caller takes the mma.sync GEMM
  if (p.bf16)
    return p.zero_points ? Dispatch<__nv_bfloat16, true>(p, stream) : Dispatch<__nv_bfloat16, false>(p, stream);
  return p.zero_points ? Dispatch<__half, true>(p, stream) : Dispatch<__half, false>(p, stream);
}

}  // namespace kaio
