// Proves bench/device/sanitize.sh's kernel filter (--kernel-name kns=kaio) instruments kernels of
// namespace kaio: each kernel below writes one int past a 4-byte allocation, which memcheck must
// report for kaio::OutOfBoundsProbe and, under the filter, not for other::OutOfBoundsProbe.
// Build and run on the GPU machine: nvcc -o /tmp/probe bench/device/sanitizer_probe.cu &&
//   compute-sanitizer --tool memcheck --kernel-name kns=kaio /tmp/probe
#include <cstdio>
#include <cuda_runtime.h>

namespace kaio {
__global__ void OutOfBoundsProbe(int* p) { p[threadIdx.x + 64] = 1; }
}  // namespace kaio
namespace other {
__global__ void OutOfBoundsProbe(int* p) { p[threadIdx.x + 64] = 2; }
}  // namespace other

int main() {
  int* p = nullptr;
  cudaMalloc(&p, sizeof(int));
  other::OutOfBoundsProbe<<<1, 1>>>(p);  // first: a reported error leaves the context unusable
  printf("other probe: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
  kaio::OutOfBoundsProbe<<<1, 1>>>(p);
  printf("kaio probe: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
  return 0;
}
