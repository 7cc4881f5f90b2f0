// Launcher of the mma.sync matmul (matmul_tc_kernel.cuh), compiled for every CUDA target.
#include <cuda_runtime.h>

#include "matmul_tc/matmul_tc_kernel.cuh"

namespace kaio {

// matmul_tc_sm90.cu: the Async ops' Hopper kernel; cudaErrorNotSupported where it does not apply.
cudaError_t RunMatmulTcWgmma(const MatmulTcParams& p, cudaStream_t stream);

namespace {

template <typename T, bool kTransB, bool kVec>
cudaError_t Launch(const MatmulTcParams& p, cudaStream_t stream) {
  using namespace matmul_tc;
  dim3 grid(static_cast<unsigned>((p.n + kBlockN - 1) / kBlockN), static_cast<unsigned>((p.m + kBlockM - 1) / kBlockM),
            static_cast<unsigned>(p.batch_count < 65535 ? p.batch_count : 65535));
  MatmulTcSyncKernel<T, kTransB, kVec, DenseB><<<grid, kThreads, 0, stream>>>(p, DenseB{});
  return cudaGetLastError();
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

template <typename T>
cudaError_t Dispatch(const MatmulTcParams& p, cudaStream_t stream) {
  const bool vec = p.k % 8 == 0 && (p.trans_b || p.n % 8 == 0) && Aligned16(p.a) && Aligned16(p.b);
  if (p.trans_b) return vec ? Launch<T, true, true>(p, stream) : Launch<T, true, false>(p, stream);
  return vec ? Launch<T, false, true>(p, stream) : Launch<T, false, false>(p, stream);
}

}  // namespace

int RunMatmulTc(const MatmulTcParams& p, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.m == 0 || p.n == 0 || p.batch_count == 0) return cudaSuccess;
  static_assert(kMatmulTcMaxRows == int64_t(65535) * matmul_tc::kBlockM, "the glue's row limit is the grid's");
  if (p.m > kMatmulTcMaxRows) return cudaErrorInvalidConfiguration;  // the glue refuses it first, by name
  if (p.k == 0) {  // empty sum: Y = 0
    size_t elem = p.out_type == MatmulElem::kF32 ? 4 : 2;
    return cudaMemsetAsync(p.y, 0, static_cast<size_t>(p.batch_count * p.m * p.n) * elem, stream);
  }
  if (p.use_async) {  // sm_90: TMA + wgmma; elsewhere (and for shapes it does not take) the mma.sync kernel
    cudaError_t e = RunMatmulTcWgmma(p, stream);
    if (e != cudaErrorNotSupported) return e;
  }
  if (p.in_type == MatmulElem::kF16) return Dispatch<__half>(p, stream);
  return Dispatch<__nv_bfloat16>(p, stream);
}

}  // namespace kaio
