// Launcher of the FlashAttention-2 forward (attention_flash_kernel.cuh), compiled for every CUDA
// target: tile configuration, split-KV decision and the combine pass.
#include <cuda_runtime.h>

#include <algorithm>

#include "attention/attention_decode_kernel.cuh"
#include "common/aligned.h"
#include "common/smem_opt_in.h"

namespace kaio {

// attention_flash_sm90.cu: the Hopper kernel (TMA + wgmma); cudaErrorNotSupported where it does not apply.
cudaError_t RunAttentionFlashWgmma(const AttentionFlashParams& p, void* workspace, cudaStream_t stream);
size_t AttentionFlashWgmmaWorkspaceBytes(const AttentionFlashParams& p);

namespace {

using attention_flash::DecodeTiles;
using attention_flash::SplitKv;
using attention_flash::Tiles;

// One kernel configuration: head-dim tile, row tiles per warp and what follows from them.
struct Config {
  int d_tile = 0, mt = 0, block_m = 0, block_n = 0, smem = 0;
  bool decode = false;  // AttentionDecodeKernel: block = one kv head, keys in 16-key chunks per warp
};

template <int kD, int kMT>
Config ConfigOf() {
  using Tl = Tiles<kD, kMT>;
  return {kD, kMT, Tl::kBlockM, Tl::kBlockN, Tl::kSmemBytes};
}

template <int kD>
Config DecodeConfigOf() {
  using Tl = DecodeTiles<kD>;
  return {kD, 1, attention_flash::kDecodeRows, attention_flash::kDecodeChunk, Tl::kSmemBytes, true};
}

// The narrowest head-dim tile that holds D and Dv. Short queries (all query rows of a kv head fit
// one 16-row tile) take the decode kernel; otherwise two row tiles per warp for prefill (halves the
// shared-memory reads per product), one for short queries and the 256-wide tile.
Config ChooseConfig(const AttentionFlashParams& p) {
  const int64_t d = std::max(p.d, p.dv);
  if (p.sq * (p.hq / p.hkv) <= attention_flash::kDecodeRows && AttentionVectorLoads(p)) {
    if (d <= 32) return DecodeConfigOf<32>();
    if (d <= 64) return DecodeConfigOf<64>();
    if (d <= 96) return DecodeConfigOf<96>();
    if (d <= 128) return DecodeConfigOf<128>();
    return DecodeConfigOf<256>();
  }
  const bool wide_rows = p.sq > 64;
  if (d <= 32) return wide_rows ? ConfigOf<32, 2>() : ConfigOf<32, 1>();
  if (d <= 64) return wide_rows ? ConfigOf<64, 2>() : ConfigOf<64, 1>();
  if (d <= 96) return wide_rows ? ConfigOf<96, 2>() : ConfigOf<96, 1>();
  if (d <= 128) return wide_rows ? ConfigOf<128, 2>() : ConfigOf<128, 1>();
  return ConfigOf<256, 1>();
}

int64_t RowCount(const AttentionFlashParams& p) { return p.batch * p.hq * p.sq; }

// Split the K/V sequence when the (batch, head, query tile) blocks fill less than half of the
// GPU's block slots: as many slices as keep every block in one wave, each at least two K/V tiles.
// The decode kernel: as many slices as fill the block slots, each giving every warp >= 4 chunks.
int SplitCount(const AttentionFlashParams& p, const Config& c) {
  const int64_t blocks = c.decode ? p.hkv * p.batch : (p.sq + c.block_m - 1) / c.block_m * p.hq * p.batch;
  const int64_t kv_tiles = (p.sk + c.block_n - 1) / c.block_n;
  // Resident blocks per SM: shared memory (227 KiB usable) and registers (wide tiles: ~2).
  const int64_t per_sm = std::max(1, std::min(227 * 1024 / c.smem, c.d_tile <= 64 ? 4 : 2));
  const int64_t slots = std::max(1, p.sm_count) * per_sm;
  const int64_t min_tiles = c.decode ? 4 * attention_flash::kWarps : 2;  // per slice
  if (blocks == 0 || 2 * blocks > slots || kv_tiles < 2 * min_tiles) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({slots / blocks, kv_tiles / min_tiles, 64})));
}

template <typename T, int kD, int kMT>
cudaError_t Launch(const AttentionFlashParams& p, const SplitKv& split, cudaStream_t stream) {
  using Tl = Tiles<kD, kMT>;
  constexpr auto kernel = attention_flash::AttentionFlashKernel<T, kD, kMT>;
  if (cudaError_t e = AllowSharedMemory<kernel>(Tl::kSmemBytes)) return e;
  const bool vec = AttentionVectorLoads(p);
  const int64_t q_tiles = (p.sq + Tl::kBlockM - 1) / Tl::kBlockM;
  dim3 grid(static_cast<unsigned>(q_tiles * split.splits), static_cast<unsigned>(p.hq),
            static_cast<unsigned>(p.batch));
  kernel<<<grid, attention_flash::kThreads, Tl::kSmemBytes, stream>>>(p, split, vec);
  return cudaGetLastError();
}

template <typename T, int kD>
cudaError_t LaunchDecode(const AttentionFlashParams& p, const SplitKv& split, cudaStream_t stream) {
  using Tl = DecodeTiles<kD>;
  constexpr auto kernel = attention_flash::AttentionDecodeKernel<T, kD>;
  if (cudaError_t e = AllowSharedMemory<kernel>(Tl::kSmemBytes)) return e;
  dim3 grid(static_cast<unsigned>(split.splits), static_cast<unsigned>(p.hkv), static_cast<unsigned>(p.batch));
  kernel<<<grid, attention_flash::kThreads, Tl::kSmemBytes, stream>>>(p, split);
  return cudaGetLastError();
}

// The combine pass's blocks: a warp per (row, 32 of Dv's columns).
int64_t CombineBlocks(const AttentionFlashParams& p) {
  constexpr int kWarpsPerBlock = attention_flash::kCombineThreads / 32;
  return (RowCount(p) * ((p.dv + 31) / 32) + kWarpsPerBlock - 1) / kWarpsPerBlock;
}

template <typename T>
cudaError_t Combine(const AttentionFlashParams& p, const SplitKv& split, cudaStream_t stream) {
  attention_flash::AttentionCombineKernel<T>
      <<<static_cast<unsigned>(CombineBlocks(p)), attention_flash::kCombineThreads, 0, stream>>>(p, split);
  return cudaGetLastError();
}

template <typename T>
cudaError_t DispatchKernel(const AttentionFlashParams& p, const Config& c, const SplitKv& split, cudaStream_t stream) {
  if (c.decode) {
    switch (c.d_tile) {
      case 32: return LaunchDecode<T, 32>(p, split, stream);
      case 64: return LaunchDecode<T, 64>(p, split, stream);
      case 96: return LaunchDecode<T, 96>(p, split, stream);
      case 128: return LaunchDecode<T, 128>(p, split, stream);
      default: return LaunchDecode<T, 256>(p, split, stream);
    }
  }
  switch (c.d_tile * 10 + c.mt) {
    case 321: return Launch<T, 32, 1>(p, split, stream);
    case 322: return Launch<T, 32, 2>(p, split, stream);
    case 641: return Launch<T, 64, 1>(p, split, stream);
    case 642: return Launch<T, 64, 2>(p, split, stream);
    case 961: return Launch<T, 96, 1>(p, split, stream);
    case 962: return Launch<T, 96, 2>(p, split, stream);
    case 1281: return Launch<T, 128, 1>(p, split, stream);
    case 1282: return Launch<T, 128, 2>(p, split, stream);
    default: return Launch<T, 256, 1>(p, split, stream);
  }
}

template <typename T>
cudaError_t DispatchConfig(const AttentionFlashParams& p, const Config& c, const SplitKv& split, cudaStream_t stream) {
  const cudaError_t e = DispatchKernel<T>(p, c, split, stream);
  return e != cudaSuccess || split.splits == 1 ? e : Combine<T>(p, split, stream);
}

}  // namespace

size_t AttentionFlashWorkspaceBytes(const AttentionFlashParams& p) {
  const Config c = ChooseConfig(p);
  const int splits = SplitCount(p, c);
  if (splits == 1) return c.decode ? 0 : AttentionFlashWgmmaWorkspaceBytes(p);  // the Hopper kernel's tile counter
  return static_cast<size_t>(splits) * static_cast<size_t>(RowCount(p)) * static_cast<size_t>(p.dv + 1) * sizeof(float);
}

int RunAttentionFlash(const AttentionFlashParams& p, void* workspace, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (RowCount(p) == 0) return cudaSuccess;
  const Config c = ChooseConfig(p);
  const int64_t q_tiles = c.decode ? 1 : (p.sq + c.block_m - 1) / c.block_m;
  SplitKv split;
  split.splits = SplitCount(p, c);
  if (q_tiles * split.splits > 0x7fffffff || p.hq > 65535 || p.batch > 65535 || CombineBlocks(p) > 0x7fffffff)
    return -1;
  // sm_90: the TMA + wgmma kernel for prefill-sized queries where this kernel would not split the
  // keys (a split keeps more SMs busy than one block per 128-row query tile can).
  if (!c.decode && split.splits == 1) {
    const cudaError_t e = RunAttentionFlashWgmma(p, workspace, stream);
    if (e != cudaErrorNotSupported) return e;
  }
  if (split.splits > 1) {
    if (!workspace) return cudaErrorInvalidValue;
    split.o = static_cast<float*>(workspace);
    split.lse = split.o + static_cast<size_t>(split.splits) * RowCount(p) * p.dv;
  }
  if (p.in_type == AttentionElem::kF16) return DispatchConfig<__half>(p, c, split, stream);
  return DispatchConfig<__nv_bfloat16>(p, c, split, stream);
}

}  // namespace kaio
