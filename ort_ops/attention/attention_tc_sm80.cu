// Launcher of AttentionTc / AttentionTcCausal (attention_tc_kernel.cuh), compiled for every CUDA
// target: head-dim tile, query-tile height from the device's shared memory, and the Sk cap.
#include <cuda_runtime.h>

#include <algorithm>

#include "attention/attention_tc_kernel.cuh"
#include "common/smem_opt_in.h"

namespace kaio {
namespace {

using attention_tc::SmemBytes;

constexpr int kMinBlockM = 16;
constexpr int kReservedSmemPerBlock = 1024;  // the driver's share of each block (sm_80, sm_90)

// The head-dim tile holding D and Dv: a quarter of it is whole 16-column blocks (phase 3 splits the
// columns over up to 4 warps).
int HeadDimTile(int64_t d, int64_t dv) {
  const int64_t m = std::max(d, dv);
  return m <= 64 ? 64 : m <= 128 ? 128 : 256;
}

// The query-tile height: among 16, 32, 64 rows that fit the block's shared memory, the tallest that
// is not taller than Sq needs and still leaves two blocks per SM (taller tiles read K and V fewer
// times; two blocks hide each other's barriers and loads), else the shortest that fits. 0: none fits.
int ChooseBlockM(const AttentionFlashParams& p, int d_tile, int smem_optin, int smem_per_sm) {
  const int64_t rows = (p.sq + 15) / 16 * 16;
  int chosen = 0;
  for (int bm : {16, 32, 64}) {
    const int64_t bytes = SmemBytes(bm, p.sk, d_tile);
    if (bytes > smem_optin) break;
    if (chosen == 0) chosen = bm;
    if (bm <= rows && 2 * (bytes + kReservedSmemPerBlock) <= smem_per_sm) chosen = bm;
  }
  return chosen;
}

template <typename T, int kD>
cudaError_t Launch(const AttentionFlashParams& p, int block_m, int smem_optin, cudaStream_t stream) {
  constexpr auto kernel = attention_tc::AttentionTcKernel<T, kD>;
  // The opt-in maximum once per kernel and device: every launch's size (which varies with Sk) fits it.
  if (cudaError_t e = AllowSharedMemory<kernel>(smem_optin)) return e;
  const int64_t q_tiles = (p.sq + block_m - 1) / block_m;
  const dim3 grid(static_cast<unsigned>(q_tiles), static_cast<unsigned>(p.hq), static_cast<unsigned>(p.batch));
  kernel<<<grid, attention_tc::kThreads, static_cast<size_t>(SmemBytes(block_m, p.sk, kD)), stream>>>(
      p, block_m, AttentionVectorLoads(p));
  return cudaGetLastError();
}

template <typename T>
cudaError_t Dispatch(const AttentionFlashParams& p, int d_tile, int block_m, int smem_optin, cudaStream_t stream) {
  switch (d_tile) {
    case 64: return Launch<T, 64>(p, block_m, smem_optin, stream);
    case 128: return Launch<T, 128>(p, block_m, smem_optin, stream);
    default: return Launch<T, 256>(p, block_m, smem_optin, stream);
  }
}

}  // namespace

int64_t AttentionTcMaxSk(int64_t d, int64_t dv, int smem_optin) {
  // SmemBytes(16, Sk, tile) <= smem_optin, solved for Sk rounded up to whole 64-key chunks.
  const int kd = HeadDimTile(d, dv);
  const int64_t fixed = SmemBytes(kMinBlockM, 0, kd) - int64_t(kMinBlockM) * attention_tc::kScorePad * 4;
  const int64_t floats_per_row = (int64_t(smem_optin) - fixed) / (int64_t(kMinBlockM) * 4);
  const int64_t keys = (floats_per_row - attention_tc::kScorePad) / attention_tc::kChunk * attention_tc::kChunk;
  return std::max<int64_t>(0, keys);
}

int RunAttentionTc(const AttentionFlashParams& p, int smem_optin, int smem_per_sm, int block_m, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.batch * p.hq * p.sq == 0 || p.dv == 0) return cudaSuccess;
  const int d_tile = HeadDimTile(p.d, p.dv);
  if (block_m == 0) block_m = ChooseBlockM(p, d_tile, smem_optin, smem_per_sm);
  else if (SmemBytes(block_m, p.sk, d_tile) > smem_optin) block_m = 0;
  if (block_m != 16 && block_m != 32 && block_m != 64) return -2;
  if ((p.sq + block_m - 1) / block_m > 0x7fffffff || p.hq > 65535 || p.batch > 65535) return -1;
  if (p.in_type == AttentionElem::kF16) return Dispatch<__half>(p, d_tile, block_m, smem_optin, stream);
  return Dispatch<__nv_bfloat16>(p, d_tile, block_m, smem_optin, stream);
}

}  // namespace kaio
