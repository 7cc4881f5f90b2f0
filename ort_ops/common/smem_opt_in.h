// Host side of a kernel's launch resources: dynamic shared memory above 48 KiB (the attribute must
// be set once per kernel and device: it belongs to the device's context; later launches skip the
// driver call), its resident blocks per SM, and K slices launched as thread-block clusters.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace kaio {

// The most dynamic shared memory one block may opt into on sm_90 (H100 / H200): 227 KiB.
constexpr int kSm90SmemPerBlock = 232448;

// The flag is per kernel because the template parameter is the kernel itself. (A template on the
// kernel's type shares one flag among every kernel of the same signature: only the first one
// launched was opted in and the others failed with cudaErrorInvalidValue.)
template <auto kKernel>
cudaError_t AllowSharedMemory(int bytes) {
  static std::atomic<uint64_t> done{0};  // one bit per device (ids >= 64 ask every time)
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
  if (bit && (done.load(std::memory_order_relaxed) & bit)) return cudaSuccess;
  e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) done.fetch_or(bit, std::memory_order_relaxed);
  return e;
}

// Resident blocks per SM of `kernel` at `threads` a block and no dynamic shared memory, asked once
// (at least 1).
template <auto kKernel>
int ResidentBlocks(int threads) {
  static const int blocks = [threads] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kKernel, threads, 0) != cudaSuccess) {
      cudaGetLastError();
      b = 1;
    }
    return b > 1 ? b : 1;
  }();
  return blocks;
}

// kernel(batch, splits) on a grid of tiles x splits K slices: with splits > 1 as clusters of
// 1 x splits (a cluster = the slices of one tile, summed through distributed shared memory; sm_90),
// else, or where no cluster of that size fits, unsplit: kernel<<<tiles, threads>>>(batch, 1).
// dynamic_smem: bytes a block (<= 48 KB: no opt-in), sized for one slice: where it is nonzero and
// no cluster fits, cudaErrorNotSupported instead of the unsplit launch.
template <typename Kernel, typename Batch>
cudaError_t LaunchKSlices(Kernel kernel, unsigned tiles, int splits, unsigned threads, cudaStream_t stream,
                          const Batch& batch, size_t dynamic_smem = 0) {
  if (splits > 1) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(tiles, unsigned(splits));
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = dynamic_smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = unsigned(splits);
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cudaLaunchKernelEx(&cfg, kernel, batch, splits) == cudaSuccess) return cudaSuccess;
    cudaGetLastError();  // no cluster of that size fits (or none at all): unsplit below, unless
    // the block's dynamic shared memory holds one slice's data: then the caller takes another path
    if (dynamic_smem > 0) return cudaErrorNotSupported;
  }
  kernel<<<dim3(tiles, 1), threads, dynamic_smem, stream>>>(batch, 1);
  return cudaGetLastError();
}

}  // namespace kaio
