// Launcher of MatmulInt4's Hopper GEMM (matmul_int4_wgmma.cuh): tensor maps of A, the packed codes,
// the scales and zero points, built on the host for each run, and a persistent grid of one CTA per
// SM. One projection without bias (MatmulInt4); QkvProjectInt4 keeps the mma.sync GEMM.
#include <cuda_runtime.h>

#include "common/smem_opt_in.h"
#include "common/tensor_map.h"
#include "quant_matmul/matmul_int4_wgmma.cuh"

namespace kaio {
namespace {

template <typename T, bool kZp, int kConsumers>
cudaError_t Launch(const MatmulTcParams& tp, const CUtensorMap& map_a, const matmul_wgmma::Int4B<T, kZp>& b_op,
                   cudaStream_t stream) {
  using namespace matmul_wgmma;
  using BOp = Int4B<T, kZp>;
  using B = Block<BOp, kConsumers>;
  constexpr auto kernel = MatmulWgmmaKernel<T, BOp, kConsumers>;
  if (cudaError_t e = AllowSharedMemory<kernel>(B::kSmemBytes)) return e;
  const int64_t tiles = ((tp.m + B::kRows - 1) / B::kRows) * ((tp.n + kBlockN - 1) / kBlockN);
  const int64_t ctas = tiles < tp.sm_count ? tiles : tp.sm_count;
  kernel<<<static_cast<unsigned>(ctas), B::kThreads, B::kSmemBytes, stream>>>(map_a, b_op, tp);
  return cudaGetLastError();
}

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
  MatmulTcParams tp;
  tp.a = p.a;
  tp.y = p.y;
  tp.in_type = p.bf16 ? MatmulElem::kBF16 : MatmulElem::kF16;
  tp.out_type = p.out_f32 ? MatmulElem::kF32 : tp.in_type;
  tp.m = p.m;
  tp.n = p.n;
  tp.k = p.k;
  tp.sm = p.sm;
  tp.sm_count = p.sm_count;
  return Launch<T, kZp, kConsumers>(tp, map_a, b_op, stream);
}

}  // namespace

cudaError_t RunMatmulInt4Wgmma(const MatmulInt4Params& p, cudaStream_t stream) {
  auto aligned16 = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; };
  constexpr int64_t kIndexMax = int64_t(1) << 31;  // TMA coordinates are 32-bit
  // TMA strides are multiples of 16 bytes: N % 8 (scales' rows), K % 32 (codes' rows; K % group does it).
  if (!sm90::kBuiltForSm90a || p.sm != 90 || p.sm_count <= 0 || p.bias || p.k <= 0 || p.n % 8 != 0 ||
      p.k % 32 != 0 || p.m >= kIndexMax || p.n >= kIndexMax || p.k >= kIndexMax || !aligned16(p.a) ||
      !aligned16(p.b) || !aligned16(p.scales) || (p.zero_points && !aligned16(p.zero_points)))
    return cudaErrorNotSupported;  // the caller takes the mma.sync GEMM
  // Too few 128 x 128 tiles to keep half the SMs busy (M ~ 100 with N ~ 4096): the mma.sync GEMM's
  // smaller tiles fill the GPU better (no split K here yet).
  const int64_t tiles = (p.m + 127) / 128 * ((p.n + 127) / 128);
  if (2 * tiles < p.sm_count) return cudaErrorNotSupported;
  if (p.bf16)
    return p.zero_points ? Dispatch<__nv_bfloat16, true>(p, stream) : Dispatch<__nv_bfloat16, false>(p, stream);
  return p.zero_points ? Dispatch<__half, true>(p, stream) : Dispatch<__half, false>(p, stream);
}

}  // namespace kaio
