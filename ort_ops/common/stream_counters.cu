#include "common/stream_counters.h"

#include <map>
#include <mutex>
#include <utility>

namespace kaio {

int* StreamCounters(cudaStream_t stream, int64_t count) {
  if (count > kStreamCounters) return nullptr;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  static std::mutex mutex;
  // Never freed: kernels queued on a stream may still use them at process exit.
  static auto* counters = new std::map<std::pair<int, cudaStream_t>, int*>();
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = counters->find({device, stream}); it != counters->end()) return it->second;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone) {
    (void)cudaGetLastError();
    return nullptr;
  }
  // Relaxed capture mode for this thread's allocation: another thread's global-mode capture would
  // otherwise forbid it (and be invalidated by it).
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
  int* memory = nullptr;
  cudaError_t e = cudaMalloc(&memory, kStreamCounters * sizeof(int));
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
  if (e == cudaSuccess) e = cudaMemsetAsync(memory, 0, kStreamCounters * sizeof(int), stream);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (memory) (void)cudaFree(memory);
    return nullptr;
  }
  counters->emplace(std::make_pair(device, stream), memory);
  return memory;
}

}  // namespace kaio
