// Pieces the standalone kernel probes (bench/device/*_probe.cu) share: CUDA error checks, 16-bit
// values on host and device, the median kernel time, and for the attention probes a plain f32 GPU
// reference with bottom-right causal masks, GQA and both layouts. Header-only, included by each probe
// (built alone by gpu_check.sh: nvcc ... -I ort_ops bench/device/<probe>.cu <probe-sources>).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "attention/attention_params.h"

#define CHECK(x)                                                                              \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::printf("  CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace probe {

inline __host__ __device__ uint16_t Bits16(float v, bool bf16) {
  if (bf16) {
    __nv_bfloat16 h = __float2bfloat16(v);
    return *reinterpret_cast<uint16_t*>(&h);
  }
  __half h = __float2half(v);
  return *reinterpret_cast<uint16_t*>(&h);
}

inline __host__ __device__ float Float16(uint16_t bits, bool bf16) {
  if (bf16) {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  __half h;
  std::memcpy(&h, &bits, 2);
  return __half2float(h);
}

__device__ inline float Load16(const uint16_t* p, int64_t i, bool bf16) {
  const uint16_t bits = p[i];
  if (bf16) return __uint_as_float(uint32_t(bits) << 16);
  return __half2float(__ushort_as_half(bits));
}

// Median milliseconds of `runs` timed calls of launch() on the default stream, after `warm` untimed ones.
template <class F>
double MedianMs(F&& launch, int warm = 3, int runs = 20) {
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  for (int w = 0; w < warm; ++w) launch();
  std::vector<float> ms;
  for (int r = 0; r < runs; ++r) {
    CHECK(cudaEventRecord(e0));
    launch();
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A well-mixed 32-bit hash of x (the quantized probes' fill values, reproducible from a seed).
__host__ __device__ inline uint32_t Hash(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return uint32_t(x);
}

// The quantized probes' output check. P: MatmulInt4Params / MatmulInt8Params (y [m, n], float or
// 16-bit by out_f32 / bf16). Counts the elements of Y that differ from ref (floats, Y's rounding
// applied), NaN included, and keeps the index of one.
template <class P>
__global__ void CompareKernel(P p, const float* ref, unsigned long long* bad, int64_t* first) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= p.m * p.n) return;
  const float got = p.out_f32 ? static_cast<const float*>(p.y)[i] : Float16(static_cast<const uint16_t*>(p.y)[i], p.bf16);
  if (!(got == ref[i])) {  // NaN (an unwritten element) fails too
    if (atomicAdd(bad, 1ull) == 0) *first = i;
  }
}

// "" where segment `seg`'s Y equals ref bit for bit, else how many elements differ and the first.
template <class P>
std::string Mismatches(const P& p, const float* ref, int seg) {
  unsigned long long* bad;
  int64_t* first;
  CHECK(cudaMalloc(&bad, 8));
  CHECK(cudaMalloc(&first, 8));
  CHECK(cudaMemset(bad, 0, 8));
  CHECK(cudaMemset(first, 0, 8));  // (read back even when nothing is wrong)
  CompareKernel<<<unsigned((p.m * p.n + 255) / 256), 256>>>(p, ref, bad, first);
  CHECK(cudaDeviceSynchronize());
  unsigned long long nbad = 0;
  int64_t f = 0;
  CHECK(cudaMemcpy(&nbad, bad, 8, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(&f, first, 8, cudaMemcpyDeviceToHost));
  CHECK(cudaFree(bad));
  CHECK(cudaFree(first));
  if (!nbad) return "";
  float want = 0, got = 0;
  CHECK(cudaMemcpy(&want, ref + f, 4, cudaMemcpyDeviceToHost));
  if (p.out_f32) {
    CHECK(cudaMemcpy(&got, static_cast<const float*>(p.y) + f, 4, cudaMemcpyDeviceToHost));
  } else {
    uint16_t h;
    CHECK(cudaMemcpy(&h, static_cast<const uint16_t*>(p.y) + f, 2, cudaMemcpyDeviceToHost));
    got = Float16(h, p.bf16);
  }
  char buf[200];
  std::snprintf(buf, sizeof buf, " seg %d: %llu wrong, first (row %lld, col %lld) = %g, expected %g", seg, nbad,
                (long long)(f / p.n), (long long)(f % p.n), got, want);
  return buf;
}

// Whether run() (poisoned Y first) writes the same `bytes` of y again, bit for bit.
template <class Run>
bool RerunsBitwise(void* y, size_t bytes, Run&& run) {
  std::vector<char> y0(bytes), y1(bytes);
  CHECK(cudaMemcpy(y0.data(), y, bytes, cudaMemcpyDeviceToHost));
  CHECK(cudaMemset(y, 0xFF, bytes));
  run();
  CHECK(cudaMemcpy(y1.data(), y, bytes, cudaMemcpyDeviceToHost));
  return std::memcmp(y0.data(), y1.data(), bytes) == 0;
}

template <class F>
double GraphLaunchMs(F&& launch, int launches = 20, int replays = 9);

// One case of the quantized decode probes, its operands in place (ps[0..nseg), P: MatmulInt4Params
// or MatmulInt8Params, each y holding m x n floats): every y poisoned, run(stream) once, each
// segment bit for bit against the float64 reference (reference(i) launches it and returns its
// buffer), a rerun bitwise identical (the slices' combine is deterministic); with `timed`, 20 launches
// in one CUDA graph, select(r % sets) pointing ps at weight set r % sets before launch r (cold
// weights), against the floor of `wbytes` at `peak_tbs`. Prints the case's line; returns whether it passed.
template <class P, class Run, class Reference, class Select>
bool CheckDecodeCase(const std::string& name, P* ps, int nseg, const Run& run, const Reference& reference, bool timed,
                     int sets, const Select& select, int64_t wbytes, double peak_tbs) {
  bool ok = true;
  std::string detail;
  for (int i = 0; i < nseg; ++i) CHECK(cudaMemset(ps[i].y, 0xFF, size_t(ps[i].m * ps[i].n * 4)));
  const int e = run(cudaStream_t(nullptr));
  CHECK(cudaDeviceSynchronize());
  if (e != 0) ok = false, detail = std::string(" launch error ") + cudaGetErrorString(cudaError_t(e));
  for (int i = 0; i < nseg && ok; ++i) {
    detail += Mismatches(ps[i], reference(i), i);
    ok = detail.empty();
  }
  if (ok && !RerunsBitwise(ps[0].y, size_t(ps[0].m * ps[0].n) * (ps[0].out_f32 ? 4 : 2),
                           [&] { CHECK(cudaError_t(run(cudaStream_t(nullptr)))); }))
    ok = false, detail += " second run differs";
  std::printf("%-5s %s%s", ok ? "ok" : "FAIL", name.c_str(), detail.c_str());
  if (timed && ok) {
    const double ms = GraphLaunchMs([&](cudaStream_t st, int r) {
      select(r % sets);
      CHECK(cudaError_t(run(st)));
    });
    const double us = 1e3 * ms, floor_us = double(wbytes) / (peak_tbs * 1e6);
    std::printf("  | %8.2f us  %5.2f TB/s  floor %6.2f us (%.2fx)  sets %d", us, double(wbytes) / (us * 1e6), floor_us,
                us / floor_us, sets);
  }
  std::printf("\n");
  return ok;
}

// Per-launch milliseconds of `launches` calls of launch(stream, i) captured into one CUDA graph:
// each replay is timed with events and divided by `launches` (back-to-back kernels: the ~10 us of a
// single launch's overhead stays out, the gaps between the graph's kernels stay in); median of
// `replays` replays after one warm-up.
template <class F>
double GraphLaunchMs(F&& launch, int launches, int replays) {
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int r = 0; r < launches; ++r) launch(st, r);
  CHECK(cudaStreamEndCapture(st, &graph));
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  CHECK(cudaGraphLaunch(exec, st));  // warm-up
  std::vector<float> ms;
  for (int r = 0; r < replays; ++r) {
    CHECK(cudaEventRecord(e0, st));
    CHECK(cudaGraphLaunch(exec, st));
    CHECK(cudaEventRecord(e1, st));
    CHECK(cudaEventSynchronize(e1));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t / launches);
  }
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaStreamDestroy(st));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Element strides (batch, head, row) of a [B, H, S, D] (bhsd) or [B, S, H, D] (bshd) tensor.
inline kaio::AttentionStrides StridesOf(bool bshd, int64_t heads, int64_t seq, int64_t d) {
  if (bshd) return {seq * heads * d, d, heads * d};
  return {heads * seq * d, seq * d, d};
}

// Keys query row i sees: all Sk, or causal (bottom-right) j <= i + Sk - Sq.
inline int64_t VisibleKeys(bool causal, int64_t i, int64_t sq, int64_t sk) {
  return causal ? std::min<int64_t>(sk, std::max<int64_t>(0, i + sk - sq + 1)) : sk;
}

// Attention reference, one block per checked query row (b, h, i = blockIdx.x * row_step): scores in
// shared memory (f32; launch with (Sk + D + 32) floats of dynamic shared memory), softmax, then O's
// Dv columns into o_ref [row][Dv] and, when lse_ref is not null, the natural-log LSE into lse_ref
// [row], row = (b * Hq + h) * Sq + i. A row that sees no key: O = 0, LSE = -inf.
__global__ void AttentionReferenceKernel(kaio::AttentionFlashParams p, bool bf16, int64_t row_step, float* o_ref,
                                         float* lse_ref) {
  extern __shared__ float sh[];  // [Sk] scores, then [D] q row, then reduction scratch [32]
  float* sc = sh;
  float* qrow = sh + p.sk;
  float* red = qrow + p.d;
  const int64_t i = int64_t(blockIdx.x) * row_step, h = blockIdx.y, b = blockIdx.z;
  if (i >= p.sq) return;
  const int64_t kvh = h / (p.hq / p.hkv);
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + b * p.q_str.batch + h * p.q_str.head + i * p.q_str.row;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + b * p.k_str.batch + kvh * p.k_str.head;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + b * p.v_str.batch + kvh * p.v_str.head;
  for (int c = threadIdx.x; c < p.d; c += blockDim.x) qrow[c] = Load16(q, c, bf16);
  __syncthreads();
  int64_t visible = p.sk;
  if (p.causal) visible = min(p.sk, max(int64_t(0), i + p.sk - p.sq + 1));
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    float s = 0.f;
    for (int c = 0; c < p.d; ++c) s += qrow[c] * Load16(k, j * p.k_str.row + c, bf16);
    s *= p.scale;
    sc[j] = s;
    mx = fmaxf(mx, s);
  }
  for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < blockDim.x / 32; ++w) mx = fmaxf(mx, red[w]);
  __syncthreads();
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    const float e = expf(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = sum;
  __syncthreads();
  sum = 0.f;
  for (int w = 0; w < blockDim.x / 32; ++w) sum += red[w];
  const int64_t row = (b * p.hq + h) * p.sq + i;
  for (int c = threadIdx.x; c < p.dv; c += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < visible; ++j) acc += sc[j] * Load16(v, j * p.v_str.row + c, bf16);
    o_ref[row * p.dv + c] = visible > 0 ? acc / sum : 0.f;
  }
  if (lse_ref && threadIdx.x == 0) lse_ref[row] = visible > 0 ? mx + logf(sum) : -INFINITY;
}

// Runs AttentionReferenceKernel on every row_step-th query row of every (batch, head) and waits.
inline void RunAttentionReference(const kaio::AttentionFlashParams& p, bool bf16, int64_t row_step, float* o_ref,
                                  float* lse_ref) {
  const size_t sh = (p.sk + p.d + 32) * sizeof(float);
  if (sh > 48 * 1024)
    CHECK(cudaFuncSetAttribute(AttentionReferenceKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh)));
  const int64_t checked = (p.sq + row_step - 1) / row_step;
  AttentionReferenceKernel<<<dim3(unsigned(checked), unsigned(p.hq), unsigned(p.batch)), 128, sh>>>(p, bf16, row_step,
                                                                                                 o_ref, lse_ref);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
}

}  // namespace probe
