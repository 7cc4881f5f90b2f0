// The ceiling of mma.sync m16n8k16 (f16 and bf16 operands, f32 accumulators) on this GPU: no memory,
// kChains independent accumulators a warp, 8 warps a block, 1 or 2 blocks an SM (2 or 4 warps a
// scheduler: MatmulTc's wide and narrow tiles). The register-prefetch matmul (MatmulTc,
// matmul_tc_kernel.cuh) is measured against this rate, not against wgmma's.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -I ort_ops -o /tmp/mma_sync_rate_probe \
//     bench/device/mma_sync_rate_probe.cu && /tmp/mma_sync_rate_probe
// probe-sources:
#include <cstdio>

#include "common/ptx.cuh"
#include "probe_common.cuh"

namespace {

constexpr int kIters = 4096;

template <typename T, int kChains>
__global__ void __launch_bounds__(256, 1) MmaRate(float* sink, uint32_t seed) {
  uint32_t a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = seed * (threadIdx.x + i + 1) & 0x3c003c00u;  // small normal values
  for (int i = 0; i < 2; ++i) b[i] = seed * (threadIdx.x + i + 7) & 0x3c003c00u;
  float acc[kChains][4] = {};
  for (int it = 0; it < kIters; ++it) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) kaio::ptx::Mma16816<T>(acc[c], a, b);
  }
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < kChains; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  if (s == 1234.5f) sink[threadIdx.x] = s;  // keeps the loop; never true for these inputs
}

template <typename T, int kChains>
void Run(const char* name, int sms, int per_sm, float* sink) {
  const int blocks = per_sm * sms;
  const double ms = probe::MedianMs([&] { MmaRate<T, kChains><<<blocks, 256>>>(sink, 12345u); }, 3, 20);
  const double flop = 2.0 * 16 * 8 * 16 * kChains * kIters * 8.0 * blocks;
  std::printf("mma.sync m16n8k16 %s f32 acc, %d chains, %d warps a scheduler: %.3f ms  %.0f TFLOP/s (%d SMs)\n", name,
              kChains, 2 * per_sm, ms, flop / (ms * 1e-3) / 1e12, sms);
}

}  // namespace

int main() {
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  float* sink = nullptr;
  CHECK(cudaMalloc(&sink, 1024 * sizeof(float)));
  for (int per_sm : {2, 1}) {
    Run<__half, 8>("f16", sms, per_sm, sink);
    Run<__half, 16>("f16", sms, per_sm, sink);
  }
  Run<__nv_bfloat16, 8>("bf16", sms, 2, sink);
  CHECK(cudaDeviceSynchronize());
  return 0;
}
