// Launcher of the MatmulInt8 W8A16 kernels (matmul_int8_kernel.cuh): picks the regime from M.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/aligned.h"
#include "matmul_tc/matmul_tc_kernel.cuh"
#include "quant_matmul/matmul_int8_kernel.cuh"

namespace kaio {

// matmul_int8_sm90.cu: the GEMM regime's Hopper kernel (no scratch); cudaErrorNotSupported where it
// does not apply.
bool MatmulInt8WgmmaApplies(const MatmulInt8Params& p);
cudaError_t RunMatmulInt8Wgmma(const MatmulInt8Params& p, cudaStream_t stream);

namespace {

// The GEMV dequantises each weight once per 8 rows of A and does one FFMA per weight and row: up
// to 16 rows (two row blocks) it beats the tensor-core kernel's 128-row tiles.
constexpr int64_t kGemvMaxM = 16;

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

// K slices of the tensor-core kernel: enough 128 x 128 tiles for one per SM, each slice >= 8 K tiles.
int64_t TcSplits(const MatmulInt8Params& p) {
  using namespace matmul_tc;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t tiles = ((p.n + kBlockN - 1) / kBlockN) * ((p.m + kBlockM - 1) / kBlockM);
  const int64_t k_tiles = (p.k + kBlockK - 1) / kBlockK;
  return std::max<int64_t>(1, std::min<int64_t>((sms + tiles - 1) / tiles, k_tiles / 8));
}

// How one launch runs: the GEMV (with its grid) or the tensor-core kernel, its K slices, and whether
// its sums go through the partial buffer and the combine pass (K split, or for the tensor-core
// kernel an output scale or bias, which its epilogue does not apply). One place for the launcher and
// for the scratch size the glue allocates.
struct Int8Plan {
  bool gemv = true;
  GemvPlan g;
  int64_t splits = 1;
  bool partial = false;
};

Int8Plan PlanInt8(const MatmulInt8Params& p) {
  Int8Plan pl;
  pl.gemv = p.m <= kGemvMaxM;
  if (pl.gemv) {
    pl.g = PlanGemv(p);
    pl.splits = pl.g.splits;
    pl.partial = pl.splits > 1;
  } else if (!MatmulInt8WgmmaApplies(p)) {  // (the wgmma kernel needs no slices and no scratch)
    pl.splits = TcSplits(p);
    pl.partial = pl.splits > 1 || p.out_scale || p.bias;
  }
  return pl;
}

// 16-byte loads of A, scales and zero points and 8-byte loads of B (else element loads).
bool Vectorized(const MatmulInt8Params& p) {
  return p.k % 8 == 0 && p.n % 8 == 0 && AlignedTo(p.a, 16) && AlignedTo(p.b, 8) && AlignedTo(p.scales, 16) &&
         (!p.zero_points || AlignedTo(p.zero_points, 16));
}

template <typename T, int MR, bool kVec>
cudaError_t LaunchGemv(const MatmulInt8Params& p, const GemvPlan& g, float* partial, cudaStream_t stream) {
  using namespace int8mm;
  const dim3 grid(unsigned(g.col_blocks), unsigned(g.splits), unsigned((p.m + MR - 1) / MR));
  MatmulInt8GemvKernel<T, MR, kVec><<<grid, kGemvThreads, 0, stream>>>(p, partial, g.slice);
  return cudaGetLastError();
}

template <typename T, bool kVec>
cudaError_t LaunchGemvRows(const MatmulInt8Params& p, const GemvPlan& g, float* partial, cudaStream_t stream) {
  if (p.m == 1) return LaunchGemv<T, 1, kVec>(p, g, partial, stream);
  if (p.m <= 4) return LaunchGemv<T, 4, kVec>(p, g, partial, stream);
  return LaunchGemv<T, 8, kVec>(p, g, partial, stream);
}

// Y = the fixed-order sum of `splits` partial results, rounded once.
template <typename T>
cudaError_t Combine(const MatmulInt8Params& p, const float* partial, int64_t splits, cudaStream_t stream) {
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t blocks = std::min<int64_t>((p.m * p.n + 255) / 256, 8 * sms);
  int8mm::MatmulInt8CombineKernel<T><<<unsigned(blocks), 256, 0, stream>>>(p, partial, int(splits));
  return cudaGetLastError();
}

template <typename T>
cudaError_t Launch(const MatmulInt8Params& p, void* scratch, cudaStream_t stream) {
  using namespace int8mm;
  const bool vec = Vectorized(p);
  const Int8Plan pl = PlanInt8(p);
  float* partial = pl.partial ? static_cast<float*>(scratch) : nullptr;
  if (pl.partial && !partial) return cudaErrorInvalidValue;
  cudaError_t err;
  if (pl.gemv) {
    err = vec ? LaunchGemvRows<T, true>(p, pl.g, partial, stream) : LaunchGemvRows<T, false>(p, pl.g, partial, stream);
  } else {
    using namespace matmul_tc;
    static_assert(kMatmulInt8MaxRows == int64_t(65535) * kBlockM, "the glue's row limit is the grid's");
    if (p.m > kMatmulInt8MaxRows) return cudaErrorInvalidConfiguration;  // the glue refuses it first, by name
    // sm_90: TMA + wgmma with the weights dequantised in shared memory (matmul_int8_sm90.cu).
    err = RunMatmulInt8Wgmma(p, stream);
    if (err != cudaErrorNotSupported) return err;
    MatmulTcParams tp = DenseGemmOf(p);
    tp.k_split = pl.splits;
    tp.partial = partial;
    const dim3 grid(unsigned((p.n + kBlockN - 1) / kBlockN), unsigned((p.m + kBlockM - 1) / kBlockM),
                    unsigned(pl.splits));
    if (vec)
      MatmulTcSyncKernel<T, false, true, Int8Source><<<grid, kThreads, 0, stream>>>(tp, Int8Source{p});
    else
      MatmulTcSyncKernel<T, false, false, Int8Source><<<grid, kThreads, 0, stream>>>(tp, Int8Source{p});
    err = cudaGetLastError();
  }
  if (err != cudaSuccess || !partial) return err;
  return Combine<T>(p, partial, pl.splits, stream);
}

}  // namespace

int64_t MatmulInt8ScratchBytes(const MatmulInt8Params& p) {
  if (p.m == 0 || p.n == 0 || p.k == 0) return 0;
  const Int8Plan pl = PlanInt8(p);
  return pl.partial ? pl.splits * p.m * p.n * int64_t(sizeof(float)) : 0;
}

int RunMatmulInt8(const MatmulInt8Params& p, void* scratch, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.k == 0 && !p.bias) {  // empty sum: Y = 0
    const size_t elem = p.out_f32 ? 4 : 2;
    return cudaMemsetAsync(p.y, 0, static_cast<size_t>(p.m * p.n) * elem, stream);
  }
  if (p.k == 0)  // Y = bias: the GEMV's store with no K rows (one slice, no partial sums)
    return p.bf16 ? LaunchGemvRows<__nv_bfloat16, false>(p, GemvPlan{(p.n + 255) / 256, 1, 0}, nullptr, stream)
                  : LaunchGemvRows<__half, false>(p, GemvPlan{(p.n + 255) / 256, 1, 0}, nullptr, stream);
  return p.bf16 ? Launch<__nv_bfloat16>(p, scratch, stream) : Launch<__half>(p, scratch, stream);
}

}  // namespace kaio
