// Launcher of the FlashAttention-2 forward (attention_flash_kernel.cuh), compiled for every CUDA
// target: head-dim tile choice, split-KV decision and the combine pass.
#include <cuda_runtime.h>

#include <algorithm>

#include "attention/attention_flash_kernel.cuh"

namespace kaio {
namespace {

using attention_flash::SplitKv;
using attention_flash::Tiles;

// The narrowest tile width that holds both head dims.
int HeadTile(const AttentionFlashParams& p) {
  const int64_t d = std::max(p.d, p.dv);
  for (int w : {32, 64, 96, 128}) if (d <= w) return w;
  return 256;
}

int64_t RowCount(const AttentionFlashParams& p) { return p.batch * p.hq * p.sq; }

// Split the K/V sequence when the (batch, head, query tile) blocks alone cannot fill the GPU:
// about two blocks per SM, each slice at least two K/V tiles long.
int SplitCount(const AttentionFlashParams& p) {
  const int64_t blocks = (p.sq + attention_flash::kBlockM - 1) / attention_flash::kBlockM * p.hq * p.batch;
  const int64_t block_n = HeadTile(p) > 128 ? 32 : 64;
  const int64_t kv_tiles = (p.sk + block_n - 1) / block_n;
  const int64_t sms = std::max(1, p.sm_count);
  if (blocks == 0 || blocks >= sms || kv_tiles < 4) return 1;
  const int64_t want = (2 * sms + blocks - 1) / blocks;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, kv_tiles / 2, 64})));
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

template <typename T, int kD>
cudaError_t Launch(const AttentionFlashParams& p, const SplitKv& split, cudaStream_t stream) {
  constexpr int kSmem = Tiles<kD>::kSmemBytes;
  auto kernel = attention_flash::AttentionFlashKernel<T, kD>;
  // Over 48 KiB of dynamic shared memory must be asked for (per device; cheap to repeat).
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  const bool vec = p.d % 8 == 0 && p.dv % 8 == 0 && p.q_str.row % 8 == 0 && p.k_str.row % 8 == 0 &&
                   p.v_str.row % 8 == 0 && p.q_str.head % 8 == 0 && p.k_str.head % 8 == 0 && p.v_str.head % 8 == 0 &&
                   p.q_str.batch % 8 == 0 && p.k_str.batch % 8 == 0 && p.v_str.batch % 8 == 0 && Aligned16(p.q) &&
                   Aligned16(p.k) && Aligned16(p.v);
  const int64_t q_tiles = (p.sq + attention_flash::kBlockM - 1) / attention_flash::kBlockM;
  dim3 grid(static_cast<unsigned>(q_tiles * split.splits), static_cast<unsigned>(p.hq),
            static_cast<unsigned>(p.batch));
  kernel<<<grid, attention_flash::kThreads, kSmem, stream>>>(p, split, vec);
  e = cudaGetLastError();
  if (e != cudaSuccess || split.splits == 1) return e;
  const int64_t rows = RowCount(p);
  attention_flash::AttentionCombineKernel<T><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream>>>(p, split);
  return cudaGetLastError();
}

template <typename T>
cudaError_t DispatchHeadDim(const AttentionFlashParams& p, const SplitKv& split, cudaStream_t stream) {
  switch (HeadTile(p)) {
    case 32: return Launch<T, 32>(p, split, stream);
    case 64: return Launch<T, 64>(p, split, stream);
    case 96: return Launch<T, 96>(p, split, stream);
    case 128: return Launch<T, 128>(p, split, stream);
    default: return Launch<T, 256>(p, split, stream);
  }
}

}  // namespace

size_t AttentionFlashWorkspaceBytes(const AttentionFlashParams& p) {
  const int splits = SplitCount(p);
  if (splits == 1) return 0;
  return static_cast<size_t>(splits) * static_cast<size_t>(RowCount(p)) * static_cast<size_t>(p.dv + 1) * sizeof(float);
}

int RunAttentionFlash(const AttentionFlashParams& p, void* workspace, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (RowCount(p) == 0 || p.dv == 0) return cudaSuccess;
  const int64_t q_tiles = (p.sq + attention_flash::kBlockM - 1) / attention_flash::kBlockM;
  SplitKv split;
  split.splits = SplitCount(p);
  if (q_tiles * split.splits > 0x7fffffff || p.hq > 65535 || p.batch > 65535 || RowCount(p) / 8 > 0x7fffffff)
    return -1;
  if (split.splits > 1) {
    if (!workspace) return cudaErrorInvalidValue;
    split.o = static_cast<float*>(workspace);
    split.lse = split.o + static_cast<size_t>(split.splits) * RowCount(p) * p.dv;
  }
  if (p.in_type == AttentionElem::kF16) return DispatchHeadDim<__half>(p, split, stream);
  return DispatchHeadDim<__nv_bfloat16>(p, split, stream);
}

}  // namespace kaio
