// Launcher of the Hopper FlashAttention forward (attention_flash_wgmma_kernel.cuh): decides on the
// host whether a launch fits the kernel, builds the 4-D tensor maps of Q, K and V for each run (they
// hold the operands' addresses; a CUDA graph captures them by value with the launch) and launches
// one persistent block per SM (at most one per tile), which take the (query tile, head, batch)
// tiles from a counter in the caller's workspace, zeroed here in the stream (a memset node in a
// CUDA graph). cudaErrorNotSupported where it does not apply: the caller (attention_flash_sm80.cu)
// then takes the mma.sync kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "attention/attention_flash_wgmma_kernel.cuh"
#include "attention/attention_params.h"
#include "attention/attention_tma.h"
#include "common/sm90.cuh"
#include "common/smem_opt_in.h"

namespace kaio {
namespace {

using attention_wgmma::kBlockN;
using attention_wgmma::Maps;


bool MakeMap(CUtensorMap* map, const AttentionFlashParams& p, const void* base, const AttentionStrides& str,
             int64_t rows, int64_t heads, int box_rows) {
  return MakeHeadMap(map, p.in_type, base, str, p.d, rows, heads, p.batch, box_rows);
}

// Query rows per block (the Q map's box) at head dim d.
int QTileRows(int64_t d) { return d == 64 ? attention_wgmma::Layout<64>::kBlockM : attention_wgmma::Layout<128>::kBlockM; }

// K and V bytes a section of the schedule may hold (of the 50 MB L2 on H100: the rest holds the
// blocks' Q and O traffic).
constexpr int64_t kSectionBytes = int64_t(16) << 20;

// Persistent blocks: one per SM (fewer where there are fewer tiles).
int64_t Blocks(const AttentionFlashParams& p) { return p.sm_count > 0 ? p.sm_count : 1; }

// The workspace: the schedule's tile counter, then one 8-byte mailbox per block.
constexpr size_t kCounterBytes = 16;
size_t WorkspaceBytesOf(const AttentionFlashParams& p) { return kCounterBytes + 8 * static_cast<size_t>(Blocks(p)); }

template <typename T, int kD, bool kCausal>
cudaError_t Launch(const Maps& maps, const AttentionFlashParams& p, void* workspace, cudaStream_t stream) {
  using L = attention_wgmma::Layout<kD>;
  constexpr int kSmem = L::kSmemBytes;
  constexpr auto kernel = attention_wgmma::AttentionWgmmaKernel<T, kD, kCausal>;
  if (cudaError_t e = AllowSharedMemory<kernel>(kSmem)) return e;
  attention_wgmma::Schedule sc;
  sc.q_tiles = (p.sq + L::kBlockM - 1) / L::kBlockM;
  sc.n_work = sc.q_tiles * p.hq * p.batch;
  // K / V bytes of one query head's pair of tensors (query heads of a GQA group share them).
  const int64_t head_bytes = std::max<int64_t>(1, p.sk * (p.d + p.dv) * 2 / (p.hq / p.hkv));
  sc.group = std::max<int64_t>(1, std::min<int64_t>(p.hq * p.batch, kSectionBytes / head_bytes));
  sc.counter = static_cast<unsigned long long*>(workspace);
  sc.mailboxes = reinterpret_cast<int64_t*>(static_cast<char*>(workspace) + kCounterBytes);
  if (cudaError_t e = cudaMemsetAsync(sc.counter, 0, sizeof(*sc.counter), stream)) return e;
  const int64_t blocks = std::min<int64_t>(sc.n_work, Blocks(p));
  kernel<<<static_cast<unsigned>(blocks), L::kThreads, kSmem, stream>>>(maps, p, sc);
  return cudaGetLastError();
}

template <typename T, int kD>
cudaError_t LaunchCausal(const Maps& maps, const AttentionFlashParams& p, void* workspace,
                         cudaStream_t stream) {
  return p.causal ? Launch<T, kD, true>(maps, p, workspace, stream) : Launch<T, kD, false>(maps, p, workspace, stream);
}

template <typename T>
cudaError_t LaunchD(const Maps& maps, const AttentionFlashParams& p, void* workspace, cudaStream_t stream) {
  return p.d == 64 ? LaunchCausal<T, 64>(maps, p, workspace, stream) : LaunchCausal<T, 128>(maps, p, workspace, stream);
}

}  // namespace

// Whether `p` fits the Hopper kernel: an sm_90a build on a 9.0 device, D == Dv in {64, 128}, a
// positive finite scale (it is folded into exp2 after the row max), TMA's alignment and stride
// rules (16-byte aligned bases, strides of 8 elements: RowsAligned16), 32-bit coordinates and a grid within its limits.
bool AttentionFlashWgmmaFits(const AttentionFlashParams& p) {
  constexpr int64_t kIndexMax = int64_t(1) << 31;
  return sm90::kBuiltForSm90a && p.sm == 90 && p.d == p.dv && (p.d == 64 || p.d == 128) && p.scale > 0.f &&
         std::isfinite(p.scale) && p.batch > 0 && p.batch <= 65535 && p.hq > 0 && p.hq <= 65535 && p.hkv > 0 &&
         p.hq % p.hkv == 0 && p.sq > 0 && p.sk > 0 && p.sq < kIndexMax && p.sk < kIndexMax && RowsAligned16(p.q, p.q_str) &&
         RowsAligned16(p.k, p.k_str) && RowsAligned16(p.v, p.v_str) && Aligned16(p.o) && p.o_str.row % 2 == 0 && p.o_str.head % 2 == 0 && p.o_str.batch % 2 == 0;
}

size_t AttentionFlashWgmmaWorkspaceBytes(const AttentionFlashParams& p) {
  return AttentionFlashWgmmaFits(p) ? WorkspaceBytesOf(p) : 0;
}

cudaError_t RunAttentionFlashWgmma(const AttentionFlashParams& p, void* workspace, cudaStream_t stream) {
  if (!AttentionFlashWgmmaFits(p)) return cudaErrorNotSupported;  // the caller takes the mma.sync kernel
  if (!workspace) return cudaErrorInvalidValue;
  Maps maps;
  if (!MakeMap(&maps.q, p, p.q, p.q_str, p.sq, p.hq, QTileRows(p.d)) || !MakeMap(&maps.k, p, p.k, p.k_str, p.sk, p.hkv, kBlockN) ||
      !MakeMap(&maps.v, p, p.v, p.v_str, p.sk, p.hkv, kBlockN))
    return cudaErrorNotSupported;
  return p.in_type == AttentionElem::kF16 ? LaunchD<__half>(maps, p, workspace, stream)
                                          : LaunchD<__nv_bfloat16>(maps, p, workspace, stream);
}

}  // namespace kaio
