// Where a small Hopper GEMM's fixed time goes. The dense skinny wgmma kernel (64 x 128 tiles) takes
// 4.4 us a launch for ONE tile and ONE 64-k step (7x128x64), a null kernel 1.0 us, and each further
// k step ~0.41 us on one CTA (7x128x1024: 10.6 us): bench/results/..._kernel_start_*.md. Minimal
// kernels, one CTA each unless the line says otherwise, time the pieces: a TMA box's first load
// through a __grid_constant__ map (and through a map in global memory), a ring of stages with and
// without the wgmmas, and plain global loads for comparison. CUDA-graph timed (20 back-to-back
// launches a replay, median of 9), as the wgmma probe's KAIO_PROBE_OVERHEAD lines.
// Build: nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -I ort_ops -o kernel_start_probe bench/device/kernel_start_probe.cu
// probe-sources:
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "../../bench/device/probe_common.cuh"
#include "common/sm90.cuh"
#include "common/tensor_map.h"

using namespace kaio::sm90;

namespace {

constexpr int kThreads = 256, kRing = 8, kSmem = kRing * 24 * 1024 + 1024;

__global__ void __launch_bounds__(kThreads, 1) Null(int* sink) {
  extern __shared__ uint8_t smem[];
  if (sink && threadIdx.x == 0) sink[blockIdx.x] = smem[0];
}

// Thread 0 loads `steps` stages of A (64 x 64 f16) and B (128 x 64 f16: 2 boxes of 64 x 64) through
// a ring of kRing stages; warpgroup 1 waits each stage, runs 4 wgmma m64n128k16 on it (kWgmma) and
// releases it (kOverlap: the previous stage, after wgmma.wait_group 1, as the library's kernel; else
// this one after wait_group 0); writes one value. kGlobalMap: the maps are read from global memory,
// not the parameters. kMnB: B is K x N (boxes of 64 n x 64 k rows, wgmma's transposed B), else N x K.
template <bool kWgmma, bool kGlobalMap, bool kOverlap = false, bool kMnB = false>
__global__ void __launch_bounds__(kThreads, 1)
    Pipeline(const __grid_constant__ CUtensorMap pa, const __grid_constant__ CUtensorMap pb, const CUtensorMap* ga,
             const CUtensorMap* gb, int steps, float* out) {
#if KAIO_SM90A_DEVICE
  extern __shared__ uint8_t smem_raw[];
  __shared__ uint64_t full[kRing], empty[kRing];
  uint8_t* ring = smem_raw + ((1024 - (SmemAddr(smem_raw) & 1023)) & 1023);
  const CUtensorMap* ma = kGlobalMap ? ga : &pa;
  const CUtensorMap* mb = kGlobalMap ? gb : &pb;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kRing; ++s) MbarInit(&full[s], 1), MbarInit(&empty[s], 1);
    FenceBarrierInit();
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    if (threadIdx.x == 0) {
      for (int it = 0; it < steps; ++it) {
        const int s = it % kRing;
        if (it >= kRing) MbarWait(&empty[s], (it / kRing - 1) & 1);
        uint8_t* st = ring + s * 24 * 1024;
        MbarArriveExpectTx(&full[s], 24 * 1024);
        TmaLoad3d(st, ma, &full[s], it * 64, 0, 0);
        if (kMnB) {
          TmaLoad3d(st + 8192, mb, &full[s], 0, it * 64, 0);
          TmaLoad3d(st + 16384, mb, &full[s], 64, it * 64, 0);
        } else {
          TmaLoad3d(st + 8192, mb, &full[s], it * 64, 0, 0);
          TmaLoad3d(st + 16384, mb, &full[s], it * 64, 64, 0);
        }
      }
    }
  } else {
    float acc[64];
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;
    FenceOperands(acc);
    for (int it = 0; it < steps; ++it) {
      const int s = it % kRing;
      MbarWait(&full[s], (it / kRing) & 1);
      const uint8_t* st = ring + s * 24 * 1024;
      if constexpr (kWgmma) {
        WgmmaFence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const uint64_t da = DescSw128(st + kk * 32, 16, 1024);
          if (kMnB) WgmmaM64K16<__half, 128, 1>(acc, da, DescSw128(st + 8192 + kk * 16 * 128, 8192, 1024));
          else WgmmaM64K16<__half, 128, 0>(acc, da, DescSw128(st + 8192 + kk * 32, 16, 1024));
        }
        WgmmaCommit();
        if (kOverlap) {
          WgmmaWait<1>();
          if (threadIdx.x == 128 && it > 0) MbarArrive(&empty[(it - 1) % kRing]);
          continue;
        }
        WgmmaWait<0>();
      }
      if (threadIdx.x == 128) MbarArrive(&empty[s]);
    }
    if (kWgmma && kOverlap) WgmmaWait<0>();
    FenceOperands(acc);
    float sum = 0.f;
    for (int i = 0; i < 64; ++i) sum += acc[i];
    out[threadIdx.x] = sum;
  }
#endif
}

// Every thread loads 32 bytes (8 KB a CTA) with plain loads and writes their sum.
__global__ void __launch_bounds__(kThreads, 1) GlobalLoads(const float4* in, float* out) {
  const float4 a = in[2 * threadIdx.x], b = in[2 * threadIdx.x + 1];
  out[threadIdx.x] = a.x + a.y + a.z + a.w + b.x + b.y + b.z + b.w;
}

}  // namespace

int main() {
  const int k = 4096;
  uint16_t* a = nullptr;
  uint16_t* b = nullptr;
  float* out = nullptr;
  CUtensorMap *ga = nullptr, *gb = nullptr;
  CHECK(cudaMalloc(&a, size_t(64) * k * 2));
  CHECK(cudaMalloc(&b, size_t(128) * k * 2));
  CHECK(cudaMemset(a, 0, size_t(64) * k * 2));
  CHECK(cudaMemset(b, 0, size_t(128) * k * 2));
  CHECK(cudaMalloc(&out, 1 << 20));
  CHECK(cudaMalloc(&ga, sizeof(CUtensorMap)));
  CHECK(cudaMalloc(&gb, sizeof(CUtensorMap)));
  CUtensorMap ma, mb, mb_mn;
  if (!kaio::MakeTensorMap(&ma, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, a, 7, k, 1, 64, 64, CU_TENSOR_MAP_SWIZZLE_128B) ||
      !kaio::MakeTensorMap(&mb, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, b, 128, k, 1, 64, 64, CU_TENSOR_MAP_SWIZZLE_128B) ||
      !kaio::MakeTensorMap(&mb_mn, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, b, k, 128, 1, 64, 64, CU_TENSOR_MAP_SWIZZLE_128B)) {
    std::printf("tensor map encoding failed\n");
    return 1;
  }
  CHECK(cudaMemcpy(ga, &ma, sizeof ma, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(gb, &mb, sizeof mb, cudaMemcpyHostToDevice));
  CHECK(cudaFuncSetAttribute(Null, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<false, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<true, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<true, false, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  CHECK(cudaFuncSetAttribute(Pipeline<false, false, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  auto line = [](const char* what, double ms) { std::printf("%-62s %6.2f us\n", what, ms * 1e3); };
  for (int blocks : {1, 34}) {
    char what[128];
    std::snprintf(what, sizeof what, "null, %d blocks, no shared memory", blocks);
    line(what, probe::GraphLaunchMs([&](cudaStream_t st, int) { Null<<<blocks, kThreads, 0, st>>>(nullptr); }));
    std::snprintf(what, sizeof what, "null, %d blocks, %d B shared", blocks, kSmem);
    line(what, probe::GraphLaunchMs([&](cudaStream_t st, int) { Null<<<blocks, kThreads, kSmem, st>>>(nullptr); }));
  }
  line("plain loads, 8 KB", probe::GraphLaunchMs([&](cudaStream_t st, int) {
         GlobalLoads<<<1, kThreads, 0, st>>>(reinterpret_cast<const float4*>(b), out);
       }));
  for (int steps : {1, 2, 4, 8, 16, 64})
    for (int variant = 0; variant < 4; ++variant) {
      const bool wgmma = variant & 1, global = variant & 2;
      auto kernel = wgmma ? (global ? Pipeline<true, true> : Pipeline<true, false>)
                          : (global ? Pipeline<false, true> : Pipeline<false, false>);
      char what[128];
      std::snprintf(what, sizeof what, "ring, %2d stages of 24 KB, %s, map in %s", steps,
                    wgmma ? "4 wgmma a stage" : "no wgmma       ", global ? "global" : "params");
      line(what, probe::GraphLaunchMs([&](cudaStream_t st, int) {
             kernel<<<1, kThreads, kSmem, st>>>(ma, mb, ga, gb, steps, out);
           }));
    }
  for (int steps : {1, 16, 64}) {
    char what[128];
    std::snprintf(what, sizeof what, "ring, %2d stages, wgmma overlapped (wait 1), N x K B", steps);
    line(what, probe::GraphLaunchMs([&](cudaStream_t st, int) {
           Pipeline<true, false, true><<<1, kThreads, kSmem, st>>>(ma, mb, ga, gb, steps, out);
         }));
    std::snprintf(what, sizeof what, "ring, %2d stages, wgmma overlapped (wait 1), K x N B", steps);
    line(what, probe::GraphLaunchMs([&](cudaStream_t st, int) {
           Pipeline<true, false, true, true><<<1, kThreads, kSmem, st>>>(ma, mb_mn, ga, gb, steps, out);
         }));
    std::snprintf(what, sizeof what, "ring, %2d stages, no wgmma, K x N B", steps);
    line(what, probe::GraphLaunchMs([&](cudaStream_t st, int) {
           Pipeline<false, false, false, true><<<1, kThreads, kSmem, st>>>(ma, mb_mn, ga, gb, steps, out);
         }));
  }
  // The library's geometry: B of 1024 x 128 (K x N), A of 7 x 1024, ones (f16).
  {
    CUtensorMap ma1, mb1;
    std::vector<uint16_t> ones(size_t(128) * 1024, 0x3C00);
    CHECK(cudaMemcpy(a, ones.data(), size_t(7) * 1024 * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(b, ones.data(), size_t(128) * 1024 * 2, cudaMemcpyHostToDevice));
    if (!kaio::MakeTensorMap(&ma1, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, a, 7, 1024, 1, 64, 64, CU_TENSOR_MAP_SWIZZLE_128B) ||
        !kaio::MakeTensorMap(&mb1, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, b, 1024, 128, 1, 64, 64, CU_TENSOR_MAP_SWIZZLE_128B))
      return 1;
    line("ring, 16 stages, wgmma overlapped, K x N B of 1024 x 128, ones", probe::GraphLaunchMs([&](cudaStream_t st, int) {
           Pipeline<true, false, true, true><<<1, kThreads, kSmem, st>>>(ma1, mb1, ga, gb, 16, out);
         }));
    line("ring, 16 stages, no wgmma, K x N B of 1024 x 128, ones", probe::GraphLaunchMs([&](cudaStream_t st, int) {
           Pipeline<false, false, false, true><<<1, kThreads, kSmem, st>>>(ma1, mb1, ga, gb, 16, out);
         }));
  }
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::printf("done\n");
  return 0;
}
