// Launcher of the Hopper backward K/V kernel (attention_flash_grad_wgmma_kernel.cuh): decides on the
// host whether a launch fits it and builds the 4-D tensor maps of Q, K, V and dO for each run (a CUDA
// graph captures them by value with the launch). cudaErrorNotSupported where it does not apply: the
// caller (attention_flash_grad_sm80.cu) then launches the mma.sync K/V kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "attention/attention_flash_grad_wgmma_kernel.cuh"
#include "attention/attention_params.h"
#include "attention/attention_tma.h"
#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/sm90.cuh"
#include "common/smem_opt_in.h"

namespace kaio {
namespace {

using attention_grad_wgmma::kBlockN;
using attention_grad_wgmma::Layout;
using attention_grad_wgmma::Maps;

// Causal blocks differ in length (key tile j sees the query tiles from about j kBlockN / kBlockM on)
// and blocks start in index order. With the key tile fastest (order_heads = 1, kept where all blocks
// are equal) the last blocks to start are of every length and the GPU idles while the longest finish
// (6.5 % of the kernel at (4, 2048, 32, 128) in a greedy simulation). Key tile 0 of a group of heads,
// then key tile 1, ... puts the short blocks last (H200: 1.259 -> 1.215 ms there, 3.6 % of the
// backward). A group holds as many heads as keep their Q, dO and f32 dQ (read and added to again by
// every key tile of the head) within ~24 MB of the L2.
int OrderHeads(const AttentionFlashGradParams& p, int64_t heads_total) {
  if (!p.causal) return 1;
  constexpr int64_t kL2Budget = int64_t(24) << 20;
  const int64_t per_head = (p.hq / p.hkv) * p.sq * p.d * (2 * 2 + 4);
  return static_cast<int>(std::max<int64_t>(1, std::min(heads_total, kL2Budget / std::max<int64_t>(1, per_head))));
}

template <typename T, int kD, bool kCausal>
cudaError_t Launch(const Maps& maps, const AttentionFlashGradParams& p, const attention_grad::GradWork& w,
                   cudaStream_t stream) {
  constexpr int kSmem = Layout<kD>::kSmemBytes;
  constexpr auto kernel = attention_grad_wgmma::AttentionGradKvWgmmaKernel<T, kD, kCausal>;
  if (cudaError_t e = AllowSharedMemory<kernel>(kSmem)) return e;
  const int64_t key_tiles = (p.sk + kBlockN - 1) / kBlockN, heads_total = p.hkv * p.batch;
  kernel<<<static_cast<unsigned>(key_tiles * heads_total), attention_grad_wgmma::kThreads, kSmem, stream>>>(
      maps, p, w, OrderHeads(p, heads_total));
  return cudaGetLastError();
}

template <typename T, int kD>
cudaError_t LaunchCausal(const Maps& maps, const AttentionFlashGradParams& p, const attention_grad::GradWork& w,
                         cudaStream_t stream) {
  return p.causal ? Launch<T, kD, true>(maps, p, w, stream) : Launch<T, kD, false>(maps, p, w, stream);
}

template <typename T>
cudaError_t LaunchD(const Maps& maps, const AttentionFlashGradParams& p, const attention_grad::GradWork& w,
                    cudaStream_t stream) {
  return p.d == 64 ? LaunchCausal<T, 64>(maps, p, w, stream) : LaunchCausal<T, 128>(maps, p, w, stream);
}

// Whether the K/V pass of `p` fits the Hopper kernel: an sm_90a build on a 9.0 device (KAIO_WGMMA
// not 0), D == Dv in {64, 128}, a positive finite scale, TMA's alignment and stride rules for Q, K, V
// and dO (RowsAligned16), 4-byte aligned dK / dV (pairs are stored as 32-bit words), 32-bit
// coordinates and a grid within its limits (one dimension, under 2^31 blocks).
bool AttentionFlashGradWgmmaFits(const AttentionFlashGradParams& p, const attention_grad::GradWork& w) {
  constexpr int64_t kIndexMax = int64_t(1) << 31;
  return sm90::kBuiltForSm90a && p.sm == 90 && WgmmaEnabled() && p.d == p.dv && (p.d == 64 || p.d == 128) &&
         p.scale > 0.f && std::isfinite(p.scale) && p.batch > 0 && p.batch <= 65535 && p.hkv > 0 &&
         p.hkv <= 65535 && p.hq % p.hkv == 0 && p.sq > 0 && p.sk > 0 && p.sq < kIndexMax && p.sk < kIndexMax &&
         (p.sk + kBlockN - 1) / kBlockN * p.hkv * p.batch < kIndexMax &&
         RowsAligned16(p.q, p.q_str) && RowsAligned16(p.k, p.k_str) && RowsAligned16(p.v, p.v_str) &&
         RowsAligned16(w.d_o, w.do_str) && AlignedTo(p.dk_out, 4) && AlignedTo(p.dv_out, 4);
}

}  // namespace

cudaError_t RunAttentionFlashGradWgmma(const AttentionFlashGradParams& p, const attention_grad::GradWork& w,
                                       cudaStream_t stream) {
  if (!AttentionFlashGradWgmmaFits(p, w)) return cudaErrorNotSupported;
  constexpr int kBlockM64 = Layout<64>::kBlockM, kBlockM128 = Layout<128>::kBlockM;
  const int block_m = p.d == 64 ? kBlockM64 : kBlockM128;
  Maps maps;
  if (!MakeHeadMap(&maps.q, p.in_type, p.q, p.q_str, p.d, p.sq, p.hq, p.batch, block_m) ||
      !MakeHeadMap(&maps.d_o, p.in_type, w.d_o, w.do_str, p.dv, p.sq, p.hq, p.batch, block_m) ||
      !MakeHeadMap(&maps.k, p.in_type, p.k, p.k_str, p.d, p.sk, p.hkv, p.batch, kBlockN) ||
      !MakeHeadMap(&maps.v, p.in_type, p.v, p.v_str, p.dv, p.sk, p.hkv, p.batch, kBlockN))
    return cudaErrorNotSupported;
  return p.in_type == AttentionElem::kF16 ? LaunchD<__half>(maps, p, w, stream)
                                          : LaunchD<__nv_bfloat16>(maps, p, w, stream);
}

}  // namespace kaio
