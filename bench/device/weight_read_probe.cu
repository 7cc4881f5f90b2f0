// How fast the GPU reads a packed INT4 weight matrix [N][K/2 bytes] (MatmulInt4's B) in the access
// patterns a decode (M = 1) kernel can use, with no math: the ceiling of each pattern, next to a flat
// sweep of the same bytes. Each launch reads one of several weight sets whose total exceeds 2x L2
// (cold weights), timed by probe::GraphLaunchMs; floor = bytes at KAIO_PROBE_PEAK_TBS (default 4.8).
// Patterns (blocks of 4 warps, 8 blocks per SM as the split decode kernel):
//   decode: MatmulInt4SplitDecodeKernel's: a block owns 16 columns; warp w reads 128-k chunks w,
//           w + 4, ...; lane (g, t) reads 16 bytes at byte 64 c + 16 t of columns g and g + 8 (a warp
//           load = 16 columns x 64 bytes); the next chunk's loads go out before this one is used.
//   decode4: the same with 4 chunks' loads in flight a lane.
//   column: a warp reads one column at a time, 512 contiguous bytes a load (lane l: byte 16 l).
//   tile8:  a block owns 16 columns, a warp 4 of them in turn, 512 contiguous bytes a load.
//   flat:   grid-stride 16-byte loads over the whole matrix.
// Loads: LoadStream, the decode kernels' own (the results of 2026-11-28 were taken at 141741b with a
// plain ld.global.nc.L1::no_allocate, without its L2::256B hint).
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -I ort_ops -o /tmp/weight_read_probe \
//     bench/device/weight_read_probe.cu && /tmp/weight_read_probe
// probe-sources:
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "probe_common.cuh"
#include "quant_matmul/quant_kernel_common.cuh"  // LoadStream: the decode kernels' weight loads

namespace {

// 16 weight bytes as the decode kernels load them (not kept in L1, 256-byte L2 fetches).
__device__ __forceinline__ uint4 Ld(const uint4* p) { return kaio::LoadStream(reinterpret_cast<const uint32_t*>(p)); }
__device__ __forceinline__ uint32_t Fold(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

// kDepth chunks of loads in flight a lane.
template <int kDepth>
__global__ void __launch_bounds__(128, 8) DecodeRead(const uint4* w, int64_t n, int64_t k, float* sink) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t row16 = k / 32;  // uint4 per column
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  const int chunks = int(k / 128);
  const uint4* c0 = w + (n0 + g) * row16 + t;
  const uint4* c1 = w + (n0 + g + 8) * row16 + t;
  uint32_t acc = 0;
  uint4 buf[kDepth][2];
  int c = warp;
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    const int cc = c + 4 * d;
    buf[d][0] = cc < chunks ? Ld(c0 + 4 * cc) : make_uint4(0, 0, 0, 0);
    buf[d][1] = cc < chunks ? Ld(c1 + 4 * cc) : make_uint4(0, 0, 0, 0);
  }
  for (; c < chunks; c += 4 * kDepth) {
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      acc ^= Fold(buf[d][0]) ^ Fold(buf[d][1]);
      const int cc = c + 4 * d + 4 * kDepth;
      buf[d][0] = cc < chunks ? Ld(c0 + 4 * cc) : make_uint4(0, 0, 0, 0);
      buf[d][1] = cc < chunks ? Ld(c1 + 4 * cc) : make_uint4(0, 0, 0, 0);
    }
  }
  if (acc == 0x12345678u) sink[0] = 1.f;
}

// A warp streams whole columns: cols_per_warp columns starting at `first`, 512 bytes a load, 4 loads in flight.
__device__ __forceinline__ uint32_t ReadColumns(const uint4* w, int64_t row16, int64_t first, int64_t count, int lane) {
  uint32_t acc = 0;
  const int64_t total = count * row16;  // uint4s, column-major run: contiguous
  const uint4* base = w + first * row16;
  for (int64_t i = lane; i < total; i += 4 * 32) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = i + 32 * u < total ? Ld(base + i + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= Fold(v[u]);
  }
  return acc;
}

// kColsPerWarp consecutive columns a warp (column: 1; tile8: 4 of the block's 16).
template <int kColsPerWarp>
__global__ void __launch_bounds__(128, 8) ColumnRead(const uint4* w, int64_t n, int64_t k, float* sink) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t first = (int64_t(blockIdx.x) * 4 + warp) * kColsPerWarp;
  uint32_t acc = 0;
  if (first < n) acc = ReadColumns(w, k / 32, first, n - first < kColsPerWarp ? n - first : int64_t(kColsPerWarp), lane);
  if (acc == 0x12345678u) sink[0] = 1.f;
}

__global__ void __launch_bounds__(256) FlatRead(const uint4* w, int64_t count, float* sink) {
  uint32_t acc = 0;
  for (int64_t i = blockIdx.x * 256 + threadIdx.x; i < count; i += int64_t(gridDim.x) * 256) acc ^= Fold(Ld(w + i));
  if (acc == 0x12345678u) sink[0] = 1.f;
}

}  // namespace

int main() {
  int dev = 0, sms = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  const double peak = std::getenv("KAIO_PROBE_PEAK_TBS") ? std::atof(std::getenv("KAIO_PROBE_PEAK_TBS")) : 4.8;
  std::printf("weight_read_probe on %s (%d SMs), floor at %.2f TB/s\n", prop.name, sms, peak);
  float* sink;
  CHECK(cudaMalloc(&sink, 4));
  const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {12288, 4096}};  // N, K
  for (auto& s : shapes) {
    const int64_t n = s[0], k = s[1], bytes = n * k / 2;
    const int sets = int(std::max<int64_t>(2, (int64_t(150) << 20) / bytes + 1));
    std::vector<uint4*> w(sets);
    for (auto& p : w) {
      CHECK(cudaMalloc(&p, bytes));
      CHECK(cudaMemset(p, 0x5A, bytes));
    }
    auto time = [&](const char* what, auto&& launch) {
      const double ms = probe::GraphLaunchMs([&](cudaStream_t st, int r) { launch(w[r % sets], st); });
      const double floor_us = double(bytes) / (peak * 1e6);
      std::printf("  N=%-5lld K=%-5lld %-40s %7.2f us  %5.2f TB/s  %.2fx floor\n", (long long)n, (long long)k, what,
                  ms * 1e3, double(bytes) / (ms * 1e9), ms * 1e3 / floor_us);
    };
    const unsigned tiles = unsigned(n / 16);
    time("decode (1 chunk in flight, 16 cols x 64 B)", [&](const uint4* p, cudaStream_t st) {
      DecodeRead<2><<<tiles, 128, 0, st>>>(p, n, k, sink);
    });
    time("decode4 (4 chunks in flight)", [&](const uint4* p, cudaStream_t st) {
      DecodeRead<4><<<tiles, 128, 0, st>>>(p, n, k, sink);
    });
    time("column (a warp a column, 512 B loads)", [&](const uint4* p, cudaStream_t st) {
      ColumnRead<1><<<unsigned((n + 3) / 4), 128, 0, st>>>(p, n, k, sink);
    });
    time("tile8 (a warp 4 adjacent columns)", [&](const uint4* p, cudaStream_t st) {
      ColumnRead<4><<<unsigned((n + 15) / 16), 128, 0, st>>>(p, n, k, sink);
    });
    time("flat (grid-stride)", [&](const uint4* p, cudaStream_t st) {
      FlatRead<<<sms * 8, 256, 0, st>>>(p, bytes / 16, sink);
    });
    for (auto& p : w) cudaFree(p);
  }
  CHECK(cudaGetLastError());
  cudaFree(sink);
  return 0;
}
