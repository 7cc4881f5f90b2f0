// Launcher of the mma.sync matmul (matmul_tc_kernel.cuh), compiled for every CUDA target.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/smem_opt_in.h"
#include "matmul_tc/matmul_tc_kernel.cuh"

namespace kaio {

// matmul_tc_sm90.cu: the Async ops' Hopper kernel, K slices summed in it or by its own combine pass;
// cudaErrorNotSupported (nothing launched) where it does not apply.
cudaError_t RunMatmulTcWgmma(const MatmulTcParams& p, cudaStream_t stream);

namespace {

// The register-prefetch kernel with the narrow or the wide tile (the latter's two stages in dynamic
// shared memory: cudaErrorNotSupported, nothing launched, where the device cannot give it).
template <typename T, bool kTransB, bool kVec, bool kTransA = false, class Tile = matmul_tc::NarrowTile>
cudaError_t Launch(const MatmulTcParams& p, cudaStream_t stream) {
  using namespace matmul_tc;
  constexpr auto kernel = MatmulTcSyncKernel<T, kTransB, kVec, DenseB, kTransA, 0, Tile>;
  constexpr int bytes = kDynamicStages<T, kTransB, kTransA, Tile> ? kStageSmemBytes<T, kTransB, kTransA, 2, Tile> : 0;
  if (bytes > 0 && AllowSharedMemory<kernel>(bytes) != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it for the fallback's launch check
    return cudaErrorNotSupported;
  }
  const int64_t z = p.partial ? p.k_split : (p.batch_count < 65535 ? p.batch_count : 65535);
  dim3 grid(static_cast<unsigned>((p.n + Tile::kBlockN - 1) / Tile::kBlockN),
            static_cast<unsigned>((p.m + kBlockM - 1) / kBlockM), static_cast<unsigned>(z));
  kernel<<<grid, kThreads, bytes, stream>>>(p, DenseB{});
  return cudaGetLastError();
}

// The wide tile (128 x 256 at one block per SM: half the shared-memory reads per mma of the narrow
// tile's 128 x 128 at two) where its blocks give every SM one; smaller grids, K slices and element
// loads keep the narrow tile. KAIO_MATMUL_WIDE=0 keeps the narrow tile everywhere, for A/B runs.
bool WideTileFor(const MatmulTcParams& p, bool vec) {
  using namespace matmul_tc;
  if (!vec || p.partial || !EnvSwitch("KAIO_MATMUL_WIDE", true)) return false;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t tiles = ((p.m + kBlockM - 1) / kBlockM) * ((p.n + WideTile::kBlockN - 1) / WideTile::kBlockN);
  return tiles * p.batch_count >= sms;
}

// The Async ops' cp.async ring off Hopper (and where the wgmma kernel declines): 4 stages of
// 128 x 32 A and 32 x 128 B tiles, 69.6 KB (trans_a) to 81.9 KB (trans_b) of shared memory: two
// blocks per SM on sm_80 / sm_90 (164 / 228 KB), one on sm_86 / sm_89 (100 KB).
constexpr int kCpStages = 4;

// The cp.async pipeline for the Async ops, on by default since its GPU tests passed and it measured
// faster than the register-prefetch kernel on the H200 through KAIO_WGMMA=0 (wgmma_probe, exact,
// 4096^3: 0.468 vs 0.572 ms; trans_b 0.482; bench/results/2026-11-27_matmul_cp_async_vs_mma_sync_cfa30176.md).
// Not measured on sm_80-89 (no such GPU here). KAIO_MATMUL_CP_ASYNC=0
// keeps the register-prefetch kernel, for A/B runs.
bool CpAsyncEnabled() { return EnvSwitch("KAIO_MATMUL_CP_ASYNC", true); }

// cudaErrorNotSupported where the shared memory cannot be had (the caller takes the sync kernel).
template <typename T, bool kTransB, bool kTransA = false>
cudaError_t LaunchCp(const MatmulTcParams& p, cudaStream_t stream) {
  using namespace matmul_tc;
  constexpr auto kernel = MatmulTcSyncKernel<T, kTransB, true, DenseB, kTransA, kCpStages>;
  constexpr int bytes = kStageSmemBytes<T, kTransB, kTransA, kCpStages>;
  if (AllowSharedMemory<kernel>(bytes) != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it for the fallback's launch check
    return cudaErrorNotSupported;
  }
  const int64_t z = p.partial ? p.k_split : (p.batch_count < 65535 ? p.batch_count : 65535);
  dim3 grid(static_cast<unsigned>((p.n + kBlockN - 1) / kBlockN), static_cast<unsigned>((p.m + kBlockM - 1) / kBlockM),
            static_cast<unsigned>(z));
  kernel<<<grid, kThreads, bytes, stream>>>(p, DenseB{});
  return cudaGetLastError();
}

template <typename T>
cudaError_t Combine(const MatmulTcParams& p, cudaStream_t stream) {
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const bool vec4 = p.m * p.n % 4 == 0 && Aligned16(p.partial);
  const int64_t threads = vec4 ? p.m * p.n / 4 : p.m * p.n;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((threads + 255) / 256, 8 * sms));
  if (vec4) matmul_tc::MatmulTcCombineKernel<T, 4><<<blocks, 256, 0, stream>>>(p);
  else matmul_tc::MatmulTcCombineKernel<T, 1><<<blocks, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t Dispatch(const MatmulTcParams& p, cudaStream_t stream) {
  // 16-byte loads along each operand's contiguous dim: A's K (trans_a: M), B's N (trans_b: K).
  const bool vec = (p.trans_a ? p.m : p.k) % 8 == 0 && (p.trans_b ? p.k : p.n) % 8 == 0 && Aligned16(p.a) &&
                   Aligned16(p.b);
  if (p.trans_a && p.trans_b) return cudaErrorInvalidValue;  // MatmulTcGrad's dB: only with B as [K, N]
  if (vec && p.use_async && CpAsyncEnabled()) {
    const cudaError_t e = p.trans_a   ? LaunchCp<T, false, true>(p, stream)
                          : p.trans_b ? LaunchCp<T, true>(p, stream)
                                      : LaunchCp<T, false>(p, stream);
    if (e != cudaErrorNotSupported) return e;
  }
  if (WideTileFor(p, vec)) {
    using matmul_tc::WideTile;
    const cudaError_t e = p.trans_a   ? Launch<T, false, true, true, WideTile>(p, stream)
                          : p.trans_b ? Launch<T, true, true, false, WideTile>(p, stream)
                                      : Launch<T, false, true, false, WideTile>(p, stream);
    if (e != cudaErrorNotSupported) return e;
  }
  if (p.trans_a) {
    return vec ? Launch<T, false, true, true>(p, stream) : Launch<T, false, false, true>(p, stream);
  }
  if (p.trans_b) return vec ? Launch<T, true, true>(p, stream) : Launch<T, true, false>(p, stream);
  return vec ? Launch<T, false, true>(p, stream) : Launch<T, false, false>(p, stream);
}

}  // namespace

int64_t MatmulTcKSplit(const MatmulTcParams& p) {
  using matmul_tc::kBlockM, matmul_tc::kBlockN;
  if (p.batch_count != 1 || p.m <= 0 || p.n <= 0 || p.sm_count <= 0) return 1;
  const int64_t tiles = ((p.m + kBlockM - 1) / kBlockM) * ((p.n + kBlockN - 1) / kBlockN);
  if (2 * tiles > p.sm_count) return 1;  // at least half the SMs busy already
  int64_t splits = std::min<int64_t>({p.sm_count / tiles, p.k / 512, 16});
  // KAIO_MATMUL_SPLITS=n (probes): n slices instead, within 1..16 and K / 256 (the op's scratch
  // follows, this function sizing it).
  if (const int want = EnvInt("KAIO_MATMUL_SPLITS", 0); want > 0) splits = std::min<int64_t>({want, 16, p.k / 256});
  return splits > 1 ? splits : 1;
}

int RunMatmulTc(const MatmulTcParams& p, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.m == 0 || p.n == 0 || p.batch_count == 0) return cudaSuccess;
  static_assert(kMatmulTcMaxRows == int64_t(65535) * matmul_tc::kBlockM, "the glue's row limit is the grid's");
  if (p.m > kMatmulTcMaxRows) return cudaErrorInvalidConfiguration;  // the glue refuses it first, by name
  if (p.k == 0) {  // empty sum: Y = 0
    size_t elem = p.out_type == MatmulElem::kF32 ? 4 : 2;
    return cudaMemsetAsync(p.y, 0, static_cast<size_t>(p.batch_count * p.m * p.n) * elem, stream);
  }
  if (p.partial && (p.k_split < 1 || p.batch_count != 1)) return cudaErrorInvalidValue;
  const bool f16 = p.in_type == MatmulElem::kF16;
  if (p.use_async && WgmmaEnabled()) {  // sm_90: TMA + wgmma (its slices' combine included)
    if (const cudaError_t e = RunMatmulTcWgmma(p, stream); e != cudaErrorNotSupported) return e;
  }
  const cudaError_t e = f16 ? Dispatch<__half>(p, stream) : Dispatch<__nv_bfloat16>(p, stream);
  if (e != cudaSuccess || !p.partial) return e;
  return RunMatmulTcCombine(p, stream);
}

namespace {
unsigned GridFor(int64_t count, int sm_count) {
  const int64_t sms = sm_count > 0 ? sm_count : 132;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((count + 255) / 256, 8 * sms)));
}
}  // namespace

int RunMatmulTcCombine(const MatmulTcParams& p, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (!p.partial || p.k_split < 1 || p.batch_count != 1) return cudaErrorInvalidValue;
  return p.in_type == MatmulElem::kF16 ? Combine<__half>(p, stream) : Combine<__nv_bfloat16>(p, stream);
}

int RunMatmulTcRound(const float* x, void* y, MatmulElem type, int64_t count, int sm_count, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (count == 0) return cudaSuccess;
  if (type == MatmulElem::kF16)
    matmul_tc::MatmulTcRoundKernel<__half><<<GridFor(count, sm_count), 256, 0, stream>>>(x, static_cast<__half*>(y), count);
  else
    matmul_tc::MatmulTcRoundKernel<__nv_bfloat16>
        <<<GridFor(count, sm_count), 256, 0, stream>>>(x, static_cast<__nv_bfloat16*>(y), count);
  return cudaGetLastError();
}

int RunMatmulTcBatchSum(const MatmulTcBatchSum& s, int sm_count, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t total = s.x_count * s.matrix;
  if (total == 0) return cudaSuccess;
  if (s.x_type == MatmulElem::kF16)
    matmul_tc::MatmulTcBatchSumKernel<__half><<<GridFor(total, sm_count), 256, 0, stream>>>(s);
  else
    matmul_tc::MatmulTcBatchSumKernel<__nv_bfloat16><<<GridFor(total, sm_count), 256, 0, stream>>>(s);
  return cudaGetLastError();
}

}  // namespace kaio
