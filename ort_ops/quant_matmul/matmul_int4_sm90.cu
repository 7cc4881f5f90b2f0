// Launcher of MatmulInt4's Hopper GEMM (matmul_int4_wgmma.cuh): tensor maps of A, the packed codes,
// the scales and zero points, built on the host for each run (they hold the operands' addresses),
// and a persistent grid of one CTA per SM (quant_wgmma.cuh). One projection without bias
// (MatmulInt4); QkvProjectInt4 keeps the mma.sync GEMM.
#include <cuda_runtime.h>

#include "quant_matmul/matmul_int4_wgmma.cuh"

namespace kaio {

// K slices on the kernel (QuantGemmSplits); 0: the mma.sync GEMM instead. TMA strides are
// multiples of 16 bytes: N % 8 (scales' rows), K % 32 (codes' rows; K % group does it).
int64_t MatmulInt4WgmmaSplits(const MatmulInt4Params& p) {
  if (p.bias || p.n % 8 != 0 || p.k % 32 != 0) return 0;
  return matmul_wgmma::QuantGemmSplits(p);
}

int64_t MatmulInt4WgmmaScratchBytes(const MatmulInt4Params& p) {
  return matmul_wgmma::QuantGemmScratchBytes(p, MatmulInt4WgmmaSplits(p));
}

cudaError_t RunMatmulInt4Wgmma(const MatmulInt4Params& p, void* scratch, cudaStream_t stream) {
  using namespace matmul_wgmma;
  const int64_t splits = MatmulInt4WgmmaSplits(p);
  if (splits == 0) return cudaErrorNotSupported;  // the caller takes the mma.sync GEMM
  auto codes_map = [&](auto* b_op) {  // B_packed [N, K/8] uint32, boxes of 128 rows x 8 words
    return MakeTensorMap(&b_op->codes, CU_TENSOR_MAP_DATA_TYPE_UINT32, 4, p.b, p.n, p.k / 8, 1, kBlockN, kBlockK / 8,
                         CU_TENSOR_MAP_SWIZZLE_NONE);
  };
  return LaunchQuantGemm<Int4B>(p, splits, scratch, p.k / p.group_size, codes_map, stream);
}

}  // namespace kaio
