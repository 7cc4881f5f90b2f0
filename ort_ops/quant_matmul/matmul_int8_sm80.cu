// Launcher of the MatmulInt8 W8A16 kernels (matmul_int8_kernel.cuh): picks the regime from M.
#include <cuda_runtime.h>

#include <algorithm>

#include "matmul_tc/matmul_tc_kernel.cuh"
#include "quant_matmul/matmul_int8_kernel.cuh"

namespace kaio {
namespace {

constexpr int64_t kGemvMaxM = 4;  // FFMA work grows with M; past 4 rows the tensor-core kernel wins

struct GemvPlan {
  int64_t col_blocks = 0, splits = 1, slice = 0;
};

// Column blocks x K slices: about four blocks per SM; a slice is a whole number of the block's
// 64-row rounds (8 warps x 8 rows).
GemvPlan PlanGemv(const MatmulInt8Params& p) {
  GemvPlan g;
  g.col_blocks = (p.n + int8mm::kGemvCols - 1) / int8mm::kGemvCols;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t rounds = (p.k + 63) / 64;
  const int64_t want = std::max<int64_t>(1, std::min<int64_t>((4 * sms + g.col_blocks - 1) / g.col_blocks, rounds));
  g.slice = (rounds + want - 1) / want * 64;
  g.splits = (p.k + g.slice - 1) / g.slice;
  return g;
}

bool AlignedTo(const void* ptr, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(ptr) & (bytes - 1)) == 0; }

// 16-byte loads of A, scales and zero points and 8-byte loads of B (else element loads).
bool Vectorized(const MatmulInt8Params& p) {
  return p.k % 8 == 0 && p.n % 8 == 0 && AlignedTo(p.a, 16) && AlignedTo(p.b, 8) && AlignedTo(p.scales, 16) &&
         (!p.zero_points || AlignedTo(p.zero_points, 16));
}

template <typename T, int MR, bool kVec>
cudaError_t LaunchGemv(const MatmulInt8Params& p, const GemvPlan& g, float* partial, cudaStream_t stream) {
  using namespace int8mm;
  MatmulInt8GemvKernel<T, MR, kVec>
      <<<dim3(unsigned(g.col_blocks), unsigned(g.splits)), kGemvThreads, 0, stream>>>(p, partial, g.slice);
  return cudaGetLastError();
}

template <typename T>
cudaError_t Launch(const MatmulInt8Params& p, void* scratch, cudaStream_t stream) {
  using namespace int8mm;
  const bool vec = Vectorized(p);
  if (p.m <= kGemvMaxM) {
    const GemvPlan g = PlanGemv(p);
    float* partial = g.splits > 1 ? static_cast<float*>(scratch) : nullptr;
    if (g.splits > 1 && !partial) return cudaErrorInvalidValue;
    cudaError_t err;
    if (p.m == 1)
      err = vec ? LaunchGemv<T, 1, true>(p, g, partial, stream) : LaunchGemv<T, 1, false>(p, g, partial, stream);
    else
      err = vec ? LaunchGemv<T, 4, true>(p, g, partial, stream) : LaunchGemv<T, 4, false>(p, g, partial, stream);
    if (err != cudaSuccess || !partial) return err;
    const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
    const int64_t blocks = std::min<int64_t>((p.m * p.n + 255) / 256, 8 * sms);
    MatmulInt8CombineKernel<T><<<unsigned(blocks), 256, 0, stream>>>(p, partial, int(g.splits));
    return cudaGetLastError();
  }
  using namespace matmul_tc;
  if (p.m > int64_t(65535) * kBlockM) return cudaErrorInvalidConfiguration;
  MatmulTcParams tp;
  tp.a = p.a;
  tp.y = p.y;
  tp.in_type = p.bf16 ? MatmulElem::kBF16 : MatmulElem::kF16;
  tp.out_type = p.out_f32 ? MatmulElem::kF32 : tp.in_type;
  tp.m = p.m;
  tp.n = p.n;
  tp.k = p.k;
  const dim3 grid(unsigned((p.n + kBlockN - 1) / kBlockN), unsigned((p.m + kBlockM - 1) / kBlockM), 1);
  if (vec)
    MatmulTcSyncKernel<T, false, true, Int8Source><<<grid, kThreads, 0, stream>>>(tp, Int8Source{p});
  else
    MatmulTcSyncKernel<T, false, false, Int8Source><<<grid, kThreads, 0, stream>>>(tp, Int8Source{p});
  return cudaGetLastError();
}

}  // namespace

int64_t MatmulInt8ScratchBytes(const MatmulInt8Params& p) {
  if (p.m == 0 || p.n == 0 || p.k == 0 || p.m > kGemvMaxM) return 0;
  const GemvPlan g = PlanGemv(p);
  return g.splits > 1 ? g.splits * p.m * p.n * int64_t(sizeof(float)) : 0;
}

int RunMatmulInt8(const MatmulInt8Params& p, void* scratch, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.k == 0) {  // empty sum: Y = 0
    const size_t elem = p.out_f32 ? 4 : 2;
    return cudaMemsetAsync(p.y, 0, static_cast<size_t>(p.m * p.n) * elem, stream);
  }
  return p.bf16 ? Launch<__nv_bfloat16>(p, scratch, stream) : Launch<__half>(p, scratch, stream);
}

}  // namespace kaio
