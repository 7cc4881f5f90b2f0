// Launcher of MatmulInt8's (W8A16) Hopper GEMM (matmul_int8_wgmma.cuh): tensor maps of A, the int8
// weights, the scales and zero points, built on the host for each run, and a persistent grid of one
// CTA per SM. MatmulInt8 only (QkvProjectInt8's output scale and bias stay on the mma.sync GEMM).
#include <cuda_runtime.h>

#include "common/tensor_map.h"
#include "quant_matmul/matmul_int8_wgmma.cuh"

namespace kaio {
namespace {

template <typename T, bool kZp>
cudaError_t Dispatch(const MatmulInt8Params& p, cudaStream_t stream) {
  using namespace matmul_wgmma;
  using BOp = Int8B<T, kZp>;
  constexpr int kConsumers = 2;  // 128-row tiles, as MatmulInt4's (the dequantisation's registers)
  using B = Block<BOp, kConsumers>;
  const CUtensorMapDataType elem = p.bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  BOp b_op;
  b_op.group_size = p.group_size;
  const int64_t scale_rows = p.group_size > 0 ? p.k / p.group_size : 1;
  CUtensorMap map_a;
  bool ok = MakeTensorMap(&map_a, elem, 2, p.a, p.m, p.k, 1, B::kRows, kRowElems, CU_TENSOR_MAP_SWIZZLE_128B);
  ok = ok && MakeTensorMap(&b_op.weights, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.b, p.k, p.n, 1, kBlockK, kBlockN,
                           CU_TENSOR_MAP_SWIZZLE_NONE);
  ok = ok && MakeTensorMap(&b_op.scales, elem, 2, p.scales, scale_rows, p.n, 1, b_op.ScaleRows(), kBlockN,
                           CU_TENSOR_MAP_SWIZZLE_NONE);
  if constexpr (kZp)
    ok = ok && MakeTensorMap(&b_op.zero_points, elem, 2, p.zero_points, scale_rows, p.n, 1, b_op.ScaleRows(),
                             kBlockN, CU_TENSOR_MAP_SWIZZLE_NONE);
  if (!ok) return cudaErrorNotSupported;
  return LaunchWgmma<T, BOp, kConsumers>(DenseGemmOf(p), map_a, b_op, stream);
}

}  // namespace

bool MatmulInt8WgmmaApplies(const MatmulInt8Params& p) {
  // TMA strides are multiples of 16 bytes: N % 16 (int8 rows), K % 8 (A's rows). A stage reads one
  // scale row (two at group 32): group sizes 0, 32 and multiples of 64 only. Per channel with zero
  // points, rows past K would dequantise to -zp * s (A's zeros there make the products 0 unless that
  // overflows): K % 64 == 0 keeps every stage inside K.
  const bool groups_fit = p.group_size == 0 || p.group_size == 32 || p.group_size % 64 == 0;
  const bool edge_ok = !(p.group_size == 0 && p.zero_points && p.k % 64 != 0);
  return matmul_wgmma::QuantGemmFits(p) && !p.out_scale && !p.bias && p.scales && groups_fit && edge_ok &&
         p.n % 16 == 0 && p.k % 8 == 0;
}

cudaError_t RunMatmulInt8Wgmma(const MatmulInt8Params& p, cudaStream_t stream) {
  if (!MatmulInt8WgmmaApplies(p)) return cudaErrorNotSupported;  // the caller takes the mma.sync GEMM
  if (p.bf16)
    return p.zero_points ? Dispatch<__nv_bfloat16, true>(p, stream) : Dispatch<__nv_bfloat16, false>(p, stream);
  return p.zero_points ? Dispatch<__half, true>(p, stream) : Dispatch<__half, false>(p, stream);
}

}  // namespace kaio
