// Zeroed int counters that belong to one CUDA stream, for kernels whose CTAs count themselves in and
// that return every counter they touched to zero before they end (the Hopper GEMM's last K slice,
// matmul_tc_wgmma_kernel.cuh). Allocated and zeroed once per (device, stream), so a launch needs no
// memset and stays capturable by CUDA graphs. Keyed by stream: the work of one stream runs in order,
// so two launches never hold the same counters at once, and launches on different streams (e.g.
// concurrent Run()s on streams of their own) hold different ones. A CUDA graph captured on one stream must not be replayed on another while that first
// stream runs the same kernels. The memory lives as long as the process (a cudaDeviceReset would
// leave it dangling; neither ORT nor torch resets a device).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kaio {

constexpr int64_t kStreamCounters = 4096;

// The stream's kStreamCounters counters (zero between launches), or nullptr where `count` exceeds
// them, where the stream is capturing a CUDA graph and has none yet (the capture would record their
// zeroing), or where CUDA fails (the error is cleared); the caller then takes a path without them.
int* StreamCounters(cudaStream_t stream, int64_t count);

}  // namespace kaio
