// Launcher of the FlashAttention-2 backward (attention_flash_grad_kernel.cuh), compiled for every
// CUDA target (sm_80 and sm_90 alike): the prep pass, the K/V kernel (on sm_90 the wgmma one of
// attention_flash_grad_sm90.cu where it fits), and dQ by f32 atomics plus a store pass, or
// (deterministic) by its own kernel.
#include <cuda_runtime.h>

#include <algorithm>

#include "attention/attention_flash_grad_kernel.cuh"
#include "common/smem_opt_in.h"

namespace kaio {

// attention_flash_grad_sm90.cu: the Hopper K/V kernel (TMA + wgmma); cudaErrorNotSupported where it
// does not apply.
cudaError_t RunAttentionFlashGradWgmma(const AttentionFlashGradParams& p, const attention_grad::GradWork& w,
                                       cudaStream_t stream);

namespace {

using attention_grad::GradTiles;
using attention_grad::GradWork;

constexpr size_t kAlign = 256;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int64_t RowCount(const AttentionFlashGradParams& p) { return p.batch * p.hq * p.sq; }

// Scratch: Dvec, then dO's rounded copy (float dO), then the dQ accumulator (atomic dQ).
struct WorkspaceLayout {
  size_t dvec = 0, do_rounded = 0, dq_accum = 0, total = 0;
};
WorkspaceLayout LayoutOf(const AttentionFlashGradParams& p) {
  const size_t rows = static_cast<size_t>(RowCount(p));
  WorkspaceLayout l;
  l.dvec = 0;
  l.do_rounded = AlignUp(rows * sizeof(float));
  l.dq_accum = l.do_rounded + (p.do_f32 ? AlignUp(rows * static_cast<size_t>(p.dv) * 2) : 0);
  const bool atomic_dq = p.dq_out && !p.deterministic;
  l.total = l.dq_accum + (atomic_dq ? rows * static_cast<size_t>(p.d) * sizeof(float) : 0);
  return l;
}

// The head-dim tile: 64, 128 or 256 (D or Dv of 32 and 96 run in the next wider tile).
int TileOf(const AttentionFlashGradParams& p) {
  const int64_t d = std::max(p.d, p.dv);
  return d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

template <typename T, int kD>
cudaError_t LaunchMain(const AttentionFlashGradParams& p, const GradWork& w, cudaStream_t stream) {
  using Tl = GradTiles<kD>;
  const bool kv_kernel = p.dk_out || p.dv_out || w.dq_accum;
  cudaError_t hopper = cudaErrorNotSupported;
  if (kv_kernel && p.sk > 0) {
    hopper = RunAttentionFlashGradWgmma(p, w, stream);
    if (hopper != cudaSuccess && hopper != cudaErrorNotSupported) return hopper;
  }
  if (kv_kernel && p.sk > 0 && hopper == cudaErrorNotSupported) {
    constexpr auto kernel = attention_grad::AttentionGradKvKernel<T, kD>;
    if (cudaError_t e = AllowSharedMemory<kernel>(Tl::kSmemBytes)) return e;
    const dim3 grid(static_cast<unsigned>((p.sk + Tl::kN - 1) / Tl::kN), static_cast<unsigned>(p.hkv),
                    static_cast<unsigned>(p.batch));
    kernel<<<grid, attention_grad::kThreads, Tl::kSmemBytes, stream>>>(p, w);
    if (cudaError_t e = cudaGetLastError()) return e;
  }
  if (p.dq_out && p.deterministic && p.sq > 0) {
    constexpr auto kernel = attention_grad::AttentionGradQKernel<T, kD>;
    if (cudaError_t e = AllowSharedMemory<kernel>(Tl::kQSmemBytes)) return e;
    const dim3 grid(static_cast<unsigned>((p.sq + Tl::kM - 1) / Tl::kM), static_cast<unsigned>(p.hq),
                    static_cast<unsigned>(p.batch));
    kernel<<<grid, attention_grad::kThreads, Tl::kQSmemBytes, stream>>>(p, w);
    if (cudaError_t e = cudaGetLastError()) return e;
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t Run(const AttentionFlashGradParams& p, char* workspace, cudaStream_t stream) {
  const WorkspaceLayout l = LayoutOf(p);
  const int64_t rows = RowCount(p);
  GradWork w;
  w.dvec = reinterpret_cast<float*>(workspace + l.dvec);
  w.d_o = p.d_o;
  w.do_str = p.o_str;
  if (p.do_f32) {
    w.do_rounded = workspace + l.do_rounded;
    w.d_o = w.do_rounded;
    w.do_str = {p.hq * p.sq * p.dv, p.sq * p.dv, p.dv};
  }
  if (p.dq_out && !p.deterministic && rows > 0) w.dq_accum = reinterpret_cast<float*>(workspace + l.dq_accum);
  w.vec = p.d % 8 == 0 && p.dv % 8 == 0 && RowsAligned16(p.q, p.q_str) && RowsAligned16(p.k, p.k_str) &&
          RowsAligned16(p.v, p.v_str) && RowsAligned16(w.d_o, w.do_str);

  const bool prep_vec = attention_grad::PrepVectorizes(p);
  const bool prep_zeroes_dq = prep_vec && w.dq_accum && p.d % 4 == 0;
  if (rows > 0 && prep_vec) {
    attention_grad::AttentionGradPrepVecKernel<T><<<attention_grad::RowBlocks(rows), 256, 0, stream>>>(p, w, prep_zeroes_dq);
    if (cudaError_t e = cudaGetLastError()) return e;
  } else if (rows > 0) {
    attention_grad::AttentionGradPrepKernel<T><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream>>>(p, w);
    if (cudaError_t e = cudaGetLastError()) return e;
  }
  if (w.dq_accum && !prep_zeroes_dq) {
    if (cudaError_t e = cudaMemsetAsync(w.dq_accum, 0, static_cast<size_t>(rows * p.d) * sizeof(float), stream))
      return e;
  }
  cudaError_t e = cudaSuccess;
  switch (TileOf(p)) {
    case 64: e = LaunchMain<T, 64>(p, w, stream); break;
    case 128: e = LaunchMain<T, 128>(p, w, stream); break;
    default: e = LaunchMain<T, 256>(p, w, stream); break;
  }
  if (e != cudaSuccess || !w.dq_accum) return e;
  if (p.d % 8 == 0 && RowsAligned16(p.dq_out, p.q_str)) {
    attention_grad::AttentionGradDqStoreVec<T><<<attention_grad::RowBlocks(rows), 256, 0, stream>>>(p, w.dq_accum);
    return cudaGetLastError();
  }
  const int64_t count = rows * p.d;
  const int64_t blocks = std::min<int64_t>((count + 255) / 256, 65536);
  attention_grad::AttentionGradDqStore<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p, w.dq_accum, count);
  return cudaGetLastError();
}

}  // namespace

size_t AttentionFlashGradWorkspaceBytes(const AttentionFlashGradParams& p) {
  return RowCount(p) == 0 ? 0 : LayoutOf(p).total;
}

int RunAttentionFlashGrad(const AttentionFlashGradParams& p, void* workspace, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (!p.dq_out && !p.dk_out && !p.dv_out) return cudaSuccess;
  if (p.batch == 0 || p.hkv == 0) return cudaSuccess;  // every output is empty
  if (p.batch > 65535 || p.hq > 65535 || (p.sq + 63) / 64 > 0x7fffffff || (RowCount(p) + 7) / 8 > 0x7fffffff)
    return -1;
  if (RowCount(p) > 0 && !workspace) return cudaErrorInvalidValue;
  if (p.in_type == AttentionElem::kF16) return Run<__half>(p, static_cast<char*>(workspace), stream);
  return Run<__nv_bfloat16>(p, static_cast<char*>(workspace), stream);
}

}  // namespace kaio
