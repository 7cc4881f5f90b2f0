// Launcher of the Hopper matmul (matmul_tc_wgmma_kernel.cuh): the tensor maps of A and B, built on
// the host for each run (they hold the operands' addresses; a few microseconds, and a CUDA graph
// captures them by value with the launch), and a persistent grid of one CTA per SM.
#include <cuda_runtime.h>

#include <cstdlib>

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

template <typename T, bool kTransB, int kConsumers, bool kTransA, int kCluster = 1>
cudaError_t Launch(const MatmulTcParams& p, const CUtensorMap& map_a, const CUtensorMap& map_b, cudaStream_t stream) {
  matmul_wgmma::DenseB<kTransB> b_op;
  b_op.map = map_b;
  b_op.n = p.n;
  return matmul_wgmma::LaunchWgmma<T, matmul_wgmma::DenseB<kTransB>, kConsumers, kTransA, kCluster>(p, map_a, b_op,
                                                                                                   stream);
}

// Pairs of CTAs sharing A tiles (the kernel's kCluster = 2); KAIO_WGMMA_CLUSTER=0 turns them off
// (read once), for side-by-side runs of both.
bool PairsEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("KAIO_WGMMA_CLUSTER");
    return !(v && v[0] == '0' && v[1] == '\0');
  }();
  return enabled;
}

// 256-row tiles in pairs side by side, each CTA loading half of the shared A tile (box of 128 rows).
template <typename T>
cudaError_t LaunchPairs(const MatmulTcParams& p, int64_t a_count, const CUtensorMap& map_b, cudaStream_t stream) {
  CUtensorMap map_half_a;
  if (!MakeMap(&map_half_a, p.in_type, p.a, p.m, p.k, a_count, 128)) return cudaErrorNotSupported;
  return p.trans_b ? Launch<T, true, 4, false, 2>(p, map_half_a, map_b, stream)
                   : Launch<T, false, 4, false, 2>(p, map_half_a, map_b, stream);
}

// 256-row tiles where they still give every SM a tile; else 128-row tiles (more, smaller tiles).
template <typename T, bool kTransB, bool kTransA = false>
cudaError_t LaunchTiles(const MatmulTcParams& p, const CUtensorMap& map_a, const CUtensorMap& map_b,
                        cudaStream_t stream, bool tall) {
  return tall ? Launch<T, kTransB, 4, kTransA>(p, map_a, map_b, stream)
              : Launch<T, kTransB, 2, kTransA>(p, map_a, map_b, stream);
}

}  // namespace

cudaError_t RunMatmulTcWgmma(const MatmulTcParams& p, cudaStream_t stream) {
  using matmul_wgmma::kTmaCoordMax;
  const int64_t a_count = OperandCount(p, p.a_batch_stride, p.m * p.k);
  const int64_t b_count = OperandCount(p, p.b_batch_stride, p.k * p.n);
  // TMA's 16-byte strides and bases: A's rows (K, or M with trans_a) and B's rows hold multiples of
  // 8 elements; N % 8 == 0 also lets the epilogue store column pairs.
  if (!matmul_wgmma::WgmmaRuns(p.sm, p.sm_count, p.m, p.n, p.k) || (p.trans_a ? p.m : p.k) % 8 != 0 ||
      (p.trans_b && p.k % 8 != 0) || p.n % 8 != 0 || (p.trans_a && p.trans_b) || !Aligned16(p.a) ||
      !Aligned16(p.b) || a_count >= kTmaCoordMax || b_count >= kTmaCoordMax)
    return cudaErrorNotSupported;  // the caller takes the mma.sync kernel
  const int64_t n_tiles = (p.n + matmul_wgmma::kBlockN - 1) / matmul_wgmma::kBlockN;
  const bool tall = p.batch_count * ((p.m + 255) / 256) * n_tiles >= p.sm_count;
  CUtensorMap map_a, map_b;
  // A: boxes of the tile's rows x 64 k, or (trans_a, A is K x M) 64 k rows x 64 m per consumer.
  bool ok = p.trans_a ? MakeMap(&map_a, p.in_type, p.a, p.k, p.m, a_count, kBlockK)
                      : MakeMap(&map_a, p.in_type, p.a, p.m, p.k, a_count, tall ? 256 : 128);
  ok = ok && (p.trans_b ? MakeMap(&map_b, p.in_type, p.b, p.n, p.k, b_count, matmul_wgmma::kBlockN)
                        : MakeMap(&map_b, p.in_type, p.b, p.k, p.n, b_count, kBlockK));
  if (!ok) return cudaErrorNotSupported;
  // Tall tiles, at least two tile columns, no K slices: pairs of CTAs read each A tile from L2 once.
  if (tall && !p.trans_a && !p.partial && n_tiles >= 2 && PairsEnabled()) {
    const cudaError_t e = p.in_type == MatmulElem::kF16 ? LaunchPairs<__half>(p, a_count, map_b, stream)
                                                        : LaunchPairs<__nv_bfloat16>(p, a_count, map_b, stream);
    if (e != cudaErrorNotSupported) return e;  // else: no cluster fits; the single-CTA kernel below
  }
  if (p.trans_a)
    return p.in_type == MatmulElem::kF16 ? LaunchTiles<__half, false, true>(p, map_a, map_b, stream, tall)
                                         : LaunchTiles<__nv_bfloat16, false, true>(p, map_a, map_b, stream, tall);
  if (p.in_type == MatmulElem::kF16)
    return p.trans_b ? LaunchTiles<__half, true>(p, map_a, map_b, stream, tall)
                     : LaunchTiles<__half, false>(p, map_a, map_b, stream, tall);
  return p.trans_b ? LaunchTiles<__nv_bfloat16, true>(p, map_a, map_b, stream, tall)
                   : LaunchTiles<__nv_bfloat16, false>(p, map_a, map_b, stream, tall);
}

}  // namespace kaio
