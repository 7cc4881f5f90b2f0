// Host side of a kernel's dynamic shared memory above 48 KiB: the attribute must be set once per
// kernel and device (it belongs to the device's context); later launches skip the driver call.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace kaio {

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

}  // namespace kaio
