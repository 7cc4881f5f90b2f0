// Launcher of the Hopper matmul (matmul_tc_wgmma_kernel.cuh): the tensor maps of A and B, built on
// the host for each run (they hold the operands' addresses; a few microseconds, and a CUDA graph
// captures them by value with the launch), and a persistent grid of one CTA per SM.
#include <cuda_runtime.h>

#include "common/aligned.h"
#include "common/sm90.cuh"
#include "common/tensor_map.h"
#include "matmul_tc/matmul_tc_wgmma_kernel.cuh"

namespace kaio {
namespace {

using matmul_wgmma::kBlockK;
using matmul_wgmma::kRowElems;

// A map over 16-bit matrices in boxes of box_rows x one 128-byte swizzled row.
bool MakeMap(CUtensorMap* map, MatmulElem type, const void* base, int64_t rows, int64_t cols, int64_t count,
             int box_rows) {
  return MakeTensorMap(map, type == MatmulElem::kF16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                       2, base, rows, cols, count, box_rows, kRowElems, CU_TENSOR_MAP_SWIZZLE_128B);
}

// How many matrices an operand holds: 1 + the largest batch offset over one matrix's elements.
int64_t OperandCount(const MatmulTcParams& p, const int64_t* stride, int64_t matrix_elems) {
  int64_t last = 0;
  for (int i = 0; i < p.batch_rank; ++i) last += (p.batch_dims[i] - 1) * stride[i];
  return last / matrix_elems + 1;
}

template <typename T, bool kTransB, int kConsumers>
cudaError_t Launch(const MatmulTcParams& p, const CUtensorMap& map_a, const CUtensorMap& map_b, cudaStream_t stream) {
  matmul_wgmma::DenseB<kTransB> b_op;
  b_op.map = map_b;
  b_op.n = p.n;
  return matmul_wgmma::LaunchWgmma<T, matmul_wgmma::DenseB<kTransB>, kConsumers>(p, map_a, b_op, stream);
}

// 256-row tiles where they still give every SM a tile; else 128-row tiles (more, smaller tiles).
template <typename T, bool kTransB>
cudaError_t LaunchTiles(const MatmulTcParams& p, const CUtensorMap& map_a, const CUtensorMap& map_b,
                        cudaStream_t stream, bool tall) {
  return tall ? Launch<T, kTransB, 4>(p, map_a, map_b, stream) : Launch<T, kTransB, 2>(p, map_a, map_b, stream);
}

}  // namespace

cudaError_t RunMatmulTcWgmma(const MatmulTcParams& p, cudaStream_t stream) {
  using matmul_wgmma::kTmaCoordMax;
  const int64_t a_count = OperandCount(p, p.a_batch_stride, p.m * p.k);
  const int64_t b_count = OperandCount(p, p.b_batch_stride, p.k * p.n);
  // TMA's 16-byte strides and bases: K % 8 (A's rows, [N, K] B's), N % 8 ([K, N] B's rows; the
  // epilogue's column pairs too).
  if (!matmul_wgmma::WgmmaRuns(p.sm, p.sm_count, p.m, p.n, p.k) || p.k % 8 != 0 || p.n % 8 != 0 || !Aligned16(p.a) ||
      !Aligned16(p.b) || a_count >= kTmaCoordMax || b_count >= kTmaCoordMax)
    return cudaErrorNotSupported;  // the caller takes the mma.sync kernel
  const int64_t n_tiles = (p.n + matmul_wgmma::kBlockN - 1) / matmul_wgmma::kBlockN;
  const bool tall = p.batch_count * ((p.m + 255) / 256) * n_tiles >= p.sm_count;
  CUtensorMap map_a, map_b;
  bool ok = MakeMap(&map_a, p.in_type, p.a, p.m, p.k, a_count, tall ? 256 : 128);
  ok = ok && (p.trans_b ? MakeMap(&map_b, p.in_type, p.b, p.n, p.k, b_count, matmul_wgmma::kBlockN)
                        : MakeMap(&map_b, p.in_type, p.b, p.k, p.n, b_count, kBlockK));
  if (!ok) return cudaErrorNotSupported;
  if (p.in_type == MatmulElem::kF16)
    return p.trans_b ? LaunchTiles<__half, true>(p, map_a, map_b, stream, tall)
                     : LaunchTiles<__half, false>(p, map_a, map_b, stream, tall);
  return p.trans_b ? LaunchTiles<__nv_bfloat16, true>(p, map_a, map_b, stream, tall)
                   : LaunchTiles<__nv_bfloat16, false>(p, map_a, map_b, stream, tall);
}

}  // namespace kaio
