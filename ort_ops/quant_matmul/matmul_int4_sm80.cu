// Launcher of the MatmulInt4 kernels (matmul_int4_kernel.cuh): picks the regime from M.
#include <cuda_runtime.h>

#include "quant_matmul/matmul_int4_kernel.cuh"

namespace kaio {
namespace {

template <typename T, bool kZp>
cudaError_t Launch(const MatmulInt4Params& p, cudaStream_t stream) {
  using namespace int4mm;
  if (p.m <= 16) {
    const dim3 grid(static_cast<unsigned>((p.n + kGemvCols - 1) / kGemvCols));
    if (p.m <= 8)
      MatmulInt4GemvKernel<T, false, kZp><<<grid, kGemvThreads, 0, stream>>>(p);
    else
      MatmulInt4GemvKernel<T, true, kZp><<<grid, kGemvThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
  const int64_t mblocks = (p.m + kGemmM - 1) / kGemmM;
  // Wide tiles (4 x 32 columns) when they still give two blocks per SM, else 4 x 16 columns.
  const int64_t wide = (p.n + 127) / 128;
  if (mblocks > 65535) return cudaErrorInvalidConfiguration;
  if (wide * mblocks >= 2 * int64_t(p.sm_count > 0 ? p.sm_count : 132)) {
    MatmulInt4GemmKernel<T, 4, kZp><<<dim3(unsigned(wide), unsigned(mblocks)), kGemmThreads, 0, stream>>>(p);
  } else {
    const int64_t narrow = (p.n + 63) / 64;
    MatmulInt4GemmKernel<T, 2, kZp><<<dim3(unsigned(narrow), unsigned(mblocks)), kGemmThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

int RunMatmulInt4(const MatmulInt4Params& p, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.k == 0) {  // empty sum: Y = 0
    const size_t elem = p.out_f32 ? 4 : 2;
    return cudaMemsetAsync(p.y, 0, static_cast<size_t>(p.m * p.n) * elem, stream);
  }
  if (!Aligned16(p.a) || !Aligned16(p.b)) return cudaErrorMisalignedAddress;
  const bool zp = p.zero_points != nullptr;
  if (p.bf16) return zp ? Launch<__nv_bfloat16, true>(p, stream) : Launch<__nv_bfloat16, false>(p, stream);
  return zp ? Launch<__half, true>(p, stream) : Launch<__half, false>(p, stream);
}

}  // namespace kaio
