// Standalone check of the Hopper wgmma kernels (no ONNX Runtime needed): runs RunMatmulTcWgmma
// (dense f16 / bf16, both B layouts), RunMatmulInt4Wgmma (packed INT4), RunMatmulInt8Wgmma (W8A16)
// and RunMatmulW8A8 / RunMatmulS8Wgmma (MatmulInt8 W8A8: int8 wgmma, or mma.sync, exact s32 sums)
// on integer-valued inputs, whose products and f32 sums are exact, against a plain GPU reference, and
// reports the first
// mismatches (row, column, value, expected) and the kernel time. For debugging a kernel change in
// one device call; the pytest GPU suite remains the test of record.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//     -I ort_ops -o /tmp/wgmma_probe bench/device/wgmma_probe.cu ort_ops/matmul_tc/matmul_tc_sm90.cu \
//     ort_ops/matmul_tc/matmul_tc_sm80.cu ort_ops/quant_matmul/matmul_int4_sm90.cu \
//     ort_ops/quant_matmul/matmul_int8_sm90.cu ort_ops/quant_matmul/matmul_w8a8_sm80.cu && /tmp/wgmma_probe
// probe-sources: ort_ops/matmul_tc/matmul_tc_sm90.cu ort_ops/matmul_tc/matmul_tc_sm80.cu ort_ops/quant_matmul/matmul_int4_sm90.cu ort_ops/quant_matmul/matmul_int8_sm90.cu ort_ops/quant_matmul/matmul_w8a8_sm80.cu ort_ops/common/stream_counters.cu
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "matmul_tc/matmul_tc_params.h"
#include "probe_common.cuh"  // CHECK
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
cudaError_t RunMatmulTcWgmma(const MatmulTcParams& p, cudaStream_t stream);
int64_t MatmulInt4WgmmaScratchBytes(const MatmulInt4Params& p);
int64_t MatmulInt8WgmmaScratchBytes(const MatmulInt8Params& p);
cudaError_t RunMatmulInt4Wgmma(const MatmulInt4Params& p, void* scratch, cudaStream_t stream);
cudaError_t RunMatmulInt8Wgmma(const MatmulInt8Params& p, void* scratch, cudaStream_t stream);
cudaError_t RunMatmulS8Wgmma(const MatmulTcParams& p, cudaStream_t stream);
}  // namespace kaio

using namespace kaio;

namespace {

// Y[m, n] = sum_k A[m, k] * W[k, n], W given as float [K, N]: the reference, in f32 (exact here).
__global__ void ReferenceKernel(const float* a, const float* w, float* y, int m, int n, int k) {
  const int row = blockIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= m || col >= n) return;
  float s = 0.f;
  for (int i = 0; i < k; ++i) s += a[int64_t(row) * k + i] * w[int64_t(i) * n + col];
  y[int64_t(row) * n + col] = s;
}

uint16_t Bits16(float v, bool bf16) {
  if (bf16) {
    __nv_bfloat16 h = __float2bfloat16(v);
    return *reinterpret_cast<uint16_t*>(&h);
  }
  __half h = __float2half(v);
  return *reinterpret_cast<uint16_t*>(&h);
}

float Float16(uint16_t bits, bool bf16) {
  if (bf16) return __bfloat162float(*reinterpret_cast<__nv_bfloat16*>(&bits));
  return __half2float(*reinterpret_cast<__half*>(&bits));
}

template <typename T>
T* ToDevice(const std::vector<T>& v) {
  T* d = nullptr;
  CHECK(cudaMalloc(&d, v.size() * sizeof(T) + 256));
  CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Compares Y (float [m, n]) with the reference of A (float [m, k]) x W (float [k, n]); returns true
// where they agree everywhere. out16 (0: Y is f32; 1: f16; 2: bf16): Y holds 16-bit values, compared
// with the reference rounded to that type.
bool Compare(const char* what, const void* y_dev, const std::vector<float>& a, const std::vector<float>& w, int m,
             int n, int k, float ms, double flops, int out16 = 0) {
  float *da = ToDevice(a), *dw = ToDevice(w), *dref = nullptr;
  CHECK(cudaMalloc(&dref, sizeof(float) * m * n));
  ReferenceKernel<<<dim3((n + 127) / 128, m), 128>>>(da, dw, dref, m, n, k);
  CHECK(cudaGetLastError());
  std::vector<float> got(size_t(m) * n), want(size_t(m) * n);
  if (out16) {
    std::vector<uint16_t> bits(got.size());
    CHECK(cudaMemcpy(bits.data(), y_dev, bits.size() * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < bits.size(); ++i) got[i] = Float16(bits[i], out16 == 2);
  } else {
    CHECK(cudaMemcpy(got.data(), y_dev, got.size() * 4, cudaMemcpyDeviceToHost));
  }
  CHECK(cudaMemcpy(want.data(), dref, want.size() * 4, cudaMemcpyDeviceToHost));
  if (out16)
    for (auto& e : want) e = Float16(Bits16(e, out16 == 2), out16 == 2);
  int bad = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      const float g = got[size_t(r) * n + c], e = want[size_t(r) * n + c];
      if (g != e) {
        if (bad < 8) std::printf("    (%d, %d): %g, expected %g\n", r, c, g, e);
        ++bad;
      }
    }
  std::printf("%-44s %s  %d of %d wrong  %.3f ms  %.0f TFLOP/s\n", what, bad ? "FAIL" : "ok  ", bad, m * n, ms,
              flops / (ms * 1e-3) / 1e12);
  cudaFree(da), cudaFree(dw), cudaFree(dref);
  return bad == 0;
}

template <typename Launch>
float TimeMs(Launch launch, int reps) {
  cudaEvent_t t0, t1;
  CHECK(cudaEventCreate(&t0));
  CHECK(cudaEventCreate(&t1));
  CHECK(launch());  // warm-up (and the run whose result is checked)
  CHECK(cudaEventRecord(t0));
  for (int i = 0; i < reps; ++i) CHECK(launch());
  CHECK(cudaEventRecord(t1));
  CHECK(cudaEventSynchronize(t1));
  float ms = 0.f;
  CHECK(cudaEventElapsedTime(&ms, t0, t1));
  return ms / reps;
}

int SmCount() {
  int n = 0;
  CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, 0));
  return n;
}

// Dense: values in {-2, ..., 2}; trans_b stores B as [N, K], trans_a A as [K, M] (MatmulTcGrad's dB);
// sync: through RunMatmulTc's mma.sync kernel instead of the wgmma one; out16: Y in A's type (else f32);
// split: through RunMatmulTc with the K slices MatmulTcKSplit picks (the op's decode path: slices
// into f32 partials, then the combining kernel).
// cp: through RunMatmulTc as the Async ops (use_async) with KAIO_MATMUL_CP_ASYNC=1 and KAIO_WGMMA=0 set
// for the call: the multi-stage cp.async mma.sync kernel where the shape allows 16-byte loads (else the
// register-prefetch one), as on sm_80 - sm_89.
// KAIO_PROBE_RANDOM=1: uniform values in [-1, 1) instead (as the benchmarks' random operands: the
// tensor cores' power, and so the clock, depends on the bits), times only, no comparison.
bool Dense(int m, int n, int k, bool trans_b, bool bf16, int reps, bool trans_a = false, bool sync = false,
           bool out16 = false, bool split = false, bool cp = false) {
  static const bool random = std::getenv("KAIO_PROBE_RANDOM") != nullptr;
  std::vector<float> a(size_t(m) * k), w(size_t(k) * n);
  auto value = [] { return random ? float(std::rand()) / float(RAND_MAX) * 2.f - 1.f : float(std::rand() % 5 - 2); };
  for (auto& v : a) v = value();
  for (auto& v : w) v = value();
  std::vector<uint16_t> a16(a.size()), b16(w.size());
  for (int r = 0; r < m; ++r)
    for (int kk = 0; kk < k; ++kk)
      a16[trans_a ? size_t(kk) * m + r : size_t(r) * k + kk] = Bits16(a[size_t(r) * k + kk], bf16);
  for (int kk = 0; kk < k; ++kk)
    for (int c = 0; c < n; ++c)
      b16[trans_b ? size_t(c) * k + kk : size_t(kk) * n + c] = Bits16(w[size_t(kk) * n + c], bf16);
  uint16_t *da = ToDevice(a16), *db = ToDevice(b16);
  float* dy = nullptr;
  CHECK(cudaMalloc(&dy, sizeof(float) * m * n));
  CHECK(cudaMemset(dy, 0xFF, sizeof(float) * m * n));  // NaN: unwritten elements show
  MatmulTcParams p;
  p.a = da, p.b = db, p.y = dy;
  p.in_type = bf16 ? MatmulElem::kBF16 : MatmulElem::kF16;
  p.out_type = out16 ? p.in_type : MatmulElem::kF32;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.use_async = !sync || cp;
  p.m = m, p.n = n, p.k = k;
  p.sm = 90, p.sm_count = SmCount();
  if (split) {
    p.k_split = MatmulTcKSplit(p);
    if (p.k_split > 1) CHECK(cudaMalloc(&p.partial, sizeof(float) * p.k_split * m * n));
  }
  char what[96];
  std::snprintf(what, sizeof what, "dense %s %dx%dx%d%s%s%s%s%s", bf16 ? "bf16" : "f16", m, n, k,
                trans_a ? " trans_a" : "", trans_b ? " trans_b" : "", cp ? " cp.async" : sync ? " mma.sync" : "",
                out16 ? " out16" : "", split ? " split" : "");
  if (cp) {  // read by RunMatmulTc at each launch; unset again below
    setenv("KAIO_MATMUL_CP_ASYNC", "1", 1);
    setenv("KAIO_WGMMA", "0", 1);
  }
  struct Unset {
    bool on;
    ~Unset() {
      if (on) unsetenv("KAIO_MATMUL_CP_ASYNC"), unsetenv("KAIO_WGMMA");
    }
  } unset{cp};
  if (split) std::snprintf(what + std::strlen(what), sizeof what - std::strlen(what), " %d", int(p.k_split));
  auto launch = [&] {
    return sync || split || cp ? static_cast<cudaError_t>(RunMatmulTc(p, nullptr)) : RunMatmulTcWgmma(p, nullptr);
  };
  if (launch() == cudaErrorNotSupported) {
    std::printf("%-44s declined\n", what);
    return true;
  }
  const float ms = TimeMs(launch, reps);
  if (random) {
    std::printf("%-44s random  %.3f ms  %.0f TFLOP/s\n", what, ms, 2.0 * m * n * k / (ms * 1e-3) / 1e12);
    cudaFree(da), cudaFree(db), cudaFree(dy), cudaFree(p.partial);
    return true;
  }
  const bool ok = Compare(what, dy, a, w, m, n, k, ms, 2.0 * m * n * k, out16 ? (bf16 ? 2 : 1) : 0);
  cudaFree(da), cudaFree(db), cudaFree(dy), cudaFree(p.partial);
  return ok;
}

// Quantized B (kBits 4: MatmulInt4's packed codes in [-8, 7]; 8: MatmulInt8 W8A16, weights in
// [-128, 127], group 0 per channel): zero points in {-1, 0, 1} (or none), scales powers of two.
template <int kBits>
bool Quantized(int m, int n, int k, int group, bool zp, bool bf16, int reps) {
  std::vector<float> a(size_t(m) * k), w(size_t(k) * n);
  for (auto& v : a) v = float(std::rand() % 5 - 2);
  const int groups = group > 0 ? k / group : 1;
  std::vector<uint16_t> s16(size_t(groups) * n), z16(size_t(groups) * n);
  std::vector<float> s(s16.size()), z(z16.size());
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = float(1 << (std::rand() % 3)) / 2.f;  // 0.5, 1, 2
    z[i] = zp ? float(std::rand() % 3 - 1) : 0.f;
    s16[i] = Bits16(s[i], bf16), z16[i] = Bits16(z[i], bf16);
  }
  std::vector<uint32_t> packed(kBits == 4 ? size_t(n) * (k / 8) : 0, 0u);  // [N, K/8]
  std::vector<int8_t> bytes(kBits == 8 ? size_t(k) * n : 0);                // [K, N]
  for (int kk = 0; kk < k; ++kk)
    for (int c = 0; c < n; ++c) {
      const int q = kBits == 4 ? std::rand() % 16 - 8 : std::rand() % 256 - 128;
      if (kBits == 4) packed[size_t(c) * (k / 8) + kk / 8] |= uint32_t(q & 15) << (4 * (kk % 8));
      else bytes[size_t(kk) * n + c] = int8_t(q);
      const size_t g = size_t(group > 0 ? kk / group : 0) * n + c;
      w[size_t(kk) * n + c] = (float(q) - z[g]) * s[g];
    }
  std::vector<uint16_t> a16(a.size());
  for (size_t i = 0; i < a.size(); ++i) a16[i] = Bits16(a[i], bf16);
  uint16_t *da = ToDevice(a16), *ds = ToDevice(s16), *dz = ToDevice(z16);
  void* db = kBits == 4 ? static_cast<void*>(ToDevice(packed)) : static_cast<void*>(ToDevice(bytes));
  float* dy = nullptr;
  CHECK(cudaMalloc(&dy, sizeof(float) * m * n));
  CHECK(cudaMemset(dy, 0xFF, sizeof(float) * m * n));
  using Params = std::conditional_t<kBits == 4, MatmulInt4Params, MatmulInt8Params>;
  Params p;
  p.a = da, p.scales = ds, p.zero_points = zp ? dz : nullptr, p.y = dy;
  p.b = static_cast<decltype(p.b)>(db);
  p.bf16 = bf16, p.out_f32 = true;
  p.m = m, p.n = n, p.k = k, p.group_size = group;
  p.sm = 90, p.sm_count = SmCount();
  int64_t scratch_bytes;
  if constexpr (kBits == 4) scratch_bytes = MatmulInt4WgmmaScratchBytes(p);
  else scratch_bytes = MatmulInt8WgmmaScratchBytes(p);
  void* scratch = nullptr;
  if (scratch_bytes) CHECK(cudaMalloc(&scratch, size_t(scratch_bytes)));
  auto run = [&] {
    if constexpr (kBits == 4) return RunMatmulInt4Wgmma(p, scratch, nullptr);
    else return RunMatmulInt8Wgmma(p, scratch, nullptr);
  };
  char what[96];
  std::snprintf(what, sizeof what, "int%d %s %dx%dx%d g%d%s%s", kBits, bf16 ? "bf16" : "f16", m, n, k, group,
                zp ? " zp" : "", !scratch_bytes ? "" : m >= 1024 ? " dequantised first" : " split");
  bool ok = true;
  if (run() == cudaErrorNotSupported) {
    std::printf("%-44s declined\n", what);
  } else {
    const float ms = TimeMs(run, reps);
    ok = Compare(what, dy, a, w, m, n, k, ms, 2.0 * m * n * k);
  }
  cudaFree(da), cudaFree(db), cudaFree(ds), cudaFree(dz), cudaFree(dy), cudaFree(scratch);
  return ok;
}

// W8A8 reference: exact int64 sums, then the kernels' (and the CPU kernel's) float(double(s) * scale).
__global__ void ReferenceS8Kernel(const int8_t* a, const int8_t* b, float scale, float* y, int m, int n, int k) {
  const int row = blockIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= m || col >= n) return;
  long long s = 0;
  for (int i = 0; i < k; ++i) s += int(a[int64_t(row) * k + i]) * int(b[int64_t(i) * n + col]);
  y[int64_t(row) * n + col] = float(double(s) * double(scale));
}

// MatmulInt8 W8A8 through RunMatmulW8A8 (the transpose of B into scratch, then int8 wgmma on sm_90a
// where it applies, else mma.sync; sync: mma.sync forced), values in [-128, 127] (extreme: all -128,
// the largest sums), compared bit for bit. The time is the whole op; with wgmma also the GEMM alone
// (RunMatmulS8Wgmma on the already transposed B), the rate to set against the f16 dense kernel's.
bool W8A8(int m, int n, int k, bool out16, int reps, bool extreme = false, bool sync = false) {
  std::vector<int8_t> a(size_t(m) * k), b(size_t(k) * n);
  for (auto& v : a) v = extreme ? int8_t(-128) : int8_t(std::rand() % 256 - 128);
  for (auto& v : b) v = extreme ? int8_t(-128) : int8_t(std::rand() % 256 - 128);
  const float scale = extreme ? 1.f : 0.0013f;
  int8_t *da = ToDevice(a), *db = ToDevice(b), *bt = nullptr;
  float *ds = ToDevice(std::vector<float>{scale}), *dref = nullptr;
  void* dy = nullptr;
  CHECK(cudaMalloc(&dy, sizeof(float) * m * n));
  CHECK(cudaMemset(dy, 0xFF, sizeof(float) * m * n));  // NaN: unwritten elements show
  CHECK(cudaMalloc(&dref, sizeof(float) * m * n));
  MatmulW8A8Params p;
  p.a = da, p.b = db, p.scale = ds, p.y = dy;
  p.out_f32 = !out16;
  p.m = m, p.n = n, p.k = k;
  p.sm = 90, p.sm_count = SmCount();
  if (sync) setenv("KAIO_WGMMA", "0", 1);  // the library's switch: the mma.sync kernel on sm_90 too
  CHECK(cudaMalloc(&bt, size_t(MatmulW8A8ScratchBytes(p)) + 16));
  const bool wgmma = !sync && k % 16 == 0 && n % 8 == 0;
  char what[96];
  std::snprintf(what, sizeof what, "w8a8 %dx%dx%d%s%s %s", m, n, k, out16 ? " out16" : "", extreme ? " extreme" : "",
                wgmma ? "wgmma" : "mma.sync");
  auto run = [&] { return static_cast<cudaError_t>(RunMatmulW8A8(p, bt, nullptr)); };
  const float ms = TimeMs(run, reps);
  if (sync) unsetenv("KAIO_WGMMA");
  ReferenceS8Kernel<<<dim3((n + 127) / 128, m), 128>>>(da, db, scale, dref, m, n, k);
  CHECK(cudaGetLastError());
  std::vector<float> got(size_t(m) * n), want(size_t(m) * n);
  if (out16) {
    std::vector<uint16_t> bits(got.size());
    CHECK(cudaMemcpy(bits.data(), dy, bits.size() * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < bits.size(); ++i) got[i] = Float16(bits[i], false);
  } else {
    CHECK(cudaMemcpy(got.data(), dy, got.size() * 4, cudaMemcpyDeviceToHost));
  }
  CHECK(cudaMemcpy(want.data(), dref, want.size() * 4, cudaMemcpyDeviceToHost));
  if (out16)
    for (auto& e : want) e = Float16(Bits16(e, false), false);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      if (bad < 8) std::printf("    (%d, %d): %.9g, expected %.9g\n", int(i / n), int(i % n), got[i], want[i]);
      ++bad;
    }
  const double ops = 2.0 * m * n * k;
  std::printf("%-44s %s  %d of %d wrong  %.3f ms  %.0f TOP/s (with the transpose)\n", what, bad ? "FAIL" : "ok  ",
              bad, m * n, ms, ops / (ms * 1e-3) / 1e12);
  if (wgmma && reps > 3) {  // the GEMM alone, B already transposed in bt
    MatmulTcParams tp;
    tp.a = da, tp.b = bt, tp.y = dy;
    tp.in_type = MatmulElem::kI8;
    tp.out_type = out16 ? MatmulElem::kF16 : MatmulElem::kF32;
    tp.trans_b = true, tp.use_async = true;
    tp.m = m, tp.n = n, tp.k = k;
    tp.sm = 90, tp.sm_count = p.sm_count;
    tp.acc_scale = ds;
    const float gemm_ms = TimeMs([&] { return RunMatmulS8Wgmma(tp, nullptr); }, reps);
    std::printf("%-44s       GEMM alone  %.3f ms  %.0f TOP/s\n", what, gemm_ms, ops / (gemm_ms * 1e-3) / 1e12);
  }
  cudaFree(da), cudaFree(db), cudaFree(bt), cudaFree(ds), cudaFree(dy), cudaFree(dref);
  return bad == 0;
}

}  // namespace

// A kernel that does nothing but exist, with `bytes` of dynamic shared memory a block.
__global__ void NullKernel(int* sink) {
  extern __shared__ uint8_t smem[];
  if (sink && threadIdx.x == 0) sink[blockIdx.x] = smem[0];
}

// KAIO_PROBE_OVERHEAD=1 (alone, no other cases): where the dense Hopper GEMM's time goes at small
// shapes (through ORT, H200: 7x2056x1032 9.1 us against cuBLAS's 3.9, and the same ~9 us with 2 or 4
// K slices, clusters or not: bench/results/2026-11-27_hopper_regimes_summary_5e474f59.md). CUDA-graph
// replays (the host's tensor-map encoding stays out): a null kernel of 34 blocks of 256 threads
// without and with the GEMM's shared memory, then the GEMM growing from one tile and one K step, then
// the op's split path. Times per launch; no correctness check here (the other cases do that).
void Overhead() {
  constexpr int kGemmSmem = 8 * 24 * 1024 + 1024;  // the skinny tiles' ring (8 stages of 24 KiB) + alignment slack
  CHECK(cudaFuncSetAttribute(NullKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kGemmSmem));
  for (int bytes : {0, 48 * 1024, kGemmSmem}) {
    const double ms = probe::GraphLaunchMs([&](cudaStream_t st, int) { NullKernel<<<34, 256, bytes, st>>>(nullptr); });
    std::printf("null kernel, 34 x 256 threads, %6d B shared    %.2f us\n", bytes, ms * 1e3);
  }
  struct Shape {
    int m, n, k;
    bool split, trans_b = false;
    uint16_t value = 0x3C00;  // every element of A and B (f16 1.0)
  };
  for (const Shape& s : {Shape{7, 128, 64, false}, Shape{7, 128, 1024, false}, Shape{7, 128, 1024, false, true},
                         Shape{7, 128, 1024, false, false, 0}, Shape{7, 128, 1024, false, true, 0},
                         Shape{7, 2056, 64, false}, Shape{7, 2056, 1032, false}, Shape{7, 2056, 1032, true},
                         Shape{7, 2056, 1032, true, true}, Shape{64, 2056, 1032, true}, Shape{16, 4096, 4096, true},
                         Shape{16, 4096, 4096, true, true}}) {
    std::vector<uint16_t> a(size_t(s.m) * s.k, s.value), b(size_t(s.k) * s.n, s.value);
    uint16_t *da = ToDevice(a), *db = ToDevice(b);
    uint16_t* dy = nullptr;
    CHECK(cudaMalloc(&dy, sizeof(uint16_t) * s.m * s.n));
    MatmulTcParams p;
    p.a = da, p.b = db, p.y = dy;
    p.in_type = p.out_type = MatmulElem::kF16;
    p.use_async = true;
    p.trans_b = s.trans_b;
    p.m = s.m, p.n = s.n, p.k = s.k;
    p.sm = 90, p.sm_count = SmCount();
    if (s.split) {
      p.k_split = MatmulTcKSplit(p);
      if (p.k_split > 1) CHECK(cudaMalloc(&p.partial, sizeof(float) * p.k_split * s.m * s.n));
    }
    const double ms = probe::GraphLaunchMs([&](cudaStream_t st, int) {
      CHECK(s.split ? static_cast<cudaError_t>(RunMatmulTc(p, st)) : RunMatmulTcWgmma(p, st));
    });
    std::printf("dense f16 %dx%dx%d%s%s%s, 16-bit Y %*s %.2f us\n", s.m, s.n, s.k, s.trans_b ? " trans_b" : "",
                s.value ? "" : " zeros",
                s.split ? " (the op's split path)" : "", 6, "", ms * 1e3);
    cudaFree(da), cudaFree(db), cudaFree(dy), cudaFree(p.partial);
  }
}

// The op's decode path (RunMatmulTc, 16-bit Y, the K slices MatmulTcKSplit picks) with B cold in L2
// as in the benchmarks: eight copies of B (8 x 32 MiB at 4096^2), each launch reading the next. Times
// only (the exact cases check the results); event-timed, so gaps between the op's kernels count.
void ColdDecode(int m, int n, int k, bool trans_b, bool bf16, const char* splits) {
  constexpr int kCopies = 8, kReps = 400;
  std::vector<uint16_t> a16(size_t(m) * k), b16(size_t(k) * n);
  for (auto& v : a16) v = Bits16(float(std::rand() % 5 - 2), bf16);
  for (auto& v : b16) v = Bits16(float(std::rand() % 5 - 2), bf16);
  uint16_t* da = ToDevice(a16);
  std::vector<uint16_t*> db;
  for (int c = 0; c < kCopies; ++c) db.push_back(ToDevice(b16));
  MatmulTcParams p;
  p.a = da;
  p.in_type = p.out_type = bf16 ? MatmulElem::kBF16 : MatmulElem::kF16;
  p.trans_b = trans_b;
  p.use_async = true;
  p.m = m, p.n = n, p.k = k;
  p.sm = 90, p.sm_count = SmCount();
  CHECK(cudaMalloc(&p.y, 2 * size_t(m) * n));
  p.k_split = MatmulTcKSplit(p);
  if (p.k_split > 1) CHECK(cudaMalloc(&p.partial, sizeof(float) * p.k_split * m * n));
  int i = 0;
  auto launch = [&] {
    p.b = db[i++ % kCopies];
    return static_cast<cudaError_t>(RunMatmulTc(p, nullptr));
  };
  for (int w = 0; w < 16; ++w) CHECK(launch());
  const float ms = TimeMs(launch, kReps);
  std::printf("cold decode %s %dx%dx%d%s splits %d (KAIO_MATMUL_SPLITS=%s) | %.2f us\n", bf16 ? "bf16" : "f16", m, n,
              k, trans_b ? " trans_b" : "", int(p.k_split), *splits ? splits : "unset", ms * 1e3);
  cudaFree(da), cudaFree(p.y), cudaFree(p.partial);
  for (auto* b : db) cudaFree(b);
}

int main() {
  bool ok = true;
  if (std::getenv("KAIO_PROBE_OVERHEAD")) {
    Overhead();
    return 0;
  }
  // KAIO_PROBE_SWAP=1: [K, N] B in wide tiles, the swapped kernel (Y^T = B^T A^T) beside the unswapped
  // one and [N, K] B, over K (where the swap starts paying: the launcher's kSwapMinK).
  if (std::getenv("KAIO_PROBE_SWAP")) {
    for (int k : {256, 512, 1024, 2048, 4096})
      for (bool out16 : {false, true})
        for (const char* swap : {"0", "1"}) {
          setenv("KAIO_WGMMA_SWAP", swap, 1);
          std::printf("KAIO_WGMMA_SWAP=%s  ", swap);
          ok &= Dense(4096, 4096, k, false, false, 20, false, false, out16);
        }
    unsetenv("KAIO_WGMMA_SWAP");
    for (int k : {1024, 4096}) ok &= Dense(4096, 4096, k, true, false, 20);
    std::printf(ok ? "ALL OK\n" : "FAILURES\n");
    return ok ? 0 : 1;
  }
  // KAIO_PROBE_TRANS_A=1: speed lines of trans_a (MatmulTcGrad's dB: both operands MN-major) at the
  // gradient benchmark's dB shapes, for A/B runs of the tile switches (KAIO_WGMMA_WIDE=0: 256 x 128).
  if (std::getenv("KAIO_PROBE_TRANS_A")) {
    ok &= Dense(4096, 4096, 4096, false, false, 20, true);
    ok &= Dense(14336, 4096, 4096, false, false, 10, true);
    ok &= Dense(4096, 14336, 4096, false, false, 10, true);
    ok &= Dense(4096, 4096, 2048, false, false, 20, true);
    ok &= Dense(4096, 4096, 4096, false, false, 20, true, false, true);
    std::printf(ok ? "ALL OK\n" : "FAILURES\n");
    return ok ? 0 : 1;
  }
  // KAIO_PROBE_M16=1: 16x4096x4096 ([K, N] B, 16-bit Y) through RunMatmulTc at each K-slice count
  // (KAIO_MATMUL_SPLITS; unset: MatmulTcKSplit's choice), for A/B runs of the decode path; with
  // KAIO_PROBE_M16=ab, the op's own slices on the decode shapes with the skinny-tile switches
  // (narrow 64 x 64 tiles, decode tiles of 16 A rows) each way; with KAIO_PROBE_M16=counters, 1 / 16 x
  // 4096 x 4096 / 14336 with the slices summed by the last one (KAIO_WGMMA_TILE_COUNTERS) each way.
  if (const char* m16 = std::getenv("KAIO_PROBE_M16")) {
    if (std::string(m16) == "counters") {  // the slices summed by the last one, or by the combine kernel
      for (int rep = 0; rep < 2; ++rep)
        for (const char* counters : {"1", "0"}) {
          setenv("KAIO_WGMMA_TILE_COUNTERS", counters, 1);
          for (int m : {1, 16})
            for (int k : {4096, 14336})
              for (bool bf16 : {false, true})
                for (bool trans_b : {false, true}) {
                  std::printf("KAIO_WGMMA_TILE_COUNTERS=%s  ", counters);
                  ColdDecode(m, 4096, k, trans_b, bf16, "");
                }
        }
      unsetenv("KAIO_WGMMA_TILE_COUNTERS");
      return 0;
    }
    if (std::string(m16) == "ab") {
      struct Shape {
        int m, n, k;
      };
      for (int rep = 0; rep < 2; ++rep)
        for (const char* narrow : {"1", "0"})
          for (const char* decode : {"1", "0"}) {
            setenv("KAIO_WGMMA_NARROW", narrow, 1);
            setenv("KAIO_WGMMA_DECODE", decode, 1);
            for (const Shape& s : {Shape{16, 4096, 4096}, Shape{7, 2056, 1032}, Shape{64, 2056, 1032},
                                   Shape{1, 4096, 4096}, Shape{16, 14336, 4096}, Shape{16, 4096, 14336}})
              for (bool bf16 : {false, true})
                for (bool trans_b : {false, true}) {
                  std::printf("KAIO_WGMMA_NARROW=%s KAIO_WGMMA_DECODE=%s  ", narrow, decode);
                  ColdDecode(s.m, s.n, s.k, trans_b, bf16, "");
                }
          }
      unsetenv("KAIO_WGMMA_NARROW");
      unsetenv("KAIO_WGMMA_DECODE");
      return 0;
    }
    for (int rep = 0; rep < 2; ++rep)
      for (bool bf16 : {false, true})
        for (const char* splits : {"", "2", "3", "4", "6", "8"}) {
          if (*splits) setenv("KAIO_MATMUL_SPLITS", splits, 1);
          else unsetenv("KAIO_MATMUL_SPLITS");
          for (bool trans_b : {false, true}) ColdDecode(16, 4096, 4096, trans_b, bf16, splits);
        }
    unsetenv("KAIO_MATMUL_SPLITS");
    return 0;
  }
  // KAIO_PROBE_QUANT_K=1: the quantized GEMM at M = 128, N = 4096 over K (4 slices: 8 to 64 k steps a
  // CTA), for the per-step cost and the fixed one (read with ncu).
  if (std::getenv("KAIO_PROBE_QUANT_K")) {
    for (int k : {2048, 4096, 8192, 16384}) ok &= Quantized<4>(128, 4096, k, 128, false, false, 10);
    std::printf(ok ? "ALL OK\n" : "FAILURES\n");
    return ok ? 0 : 1;
  }
  // KAIO_PROBE_QUANT_SPEED=1: only the quantized GEMM's speed lines, K slices (M = 128) and dequantised
  // first (M = 2048), for A/B runs of builds.
  if (std::getenv("KAIO_PROBE_QUANT_SPEED")) {
    ok &= Quantized<8>(128, 4096, 4096, 128, false, false, 50);
    ok &= Quantized<8>(128, 4096, 14336, 128, false, false, 20);
    ok &= Quantized<4>(128, 4096, 4096, 128, false, false, 50);
    ok &= Quantized<4>(128, 4096, 14336, 128, false, false, 20);
    ok &= Quantized<4>(2048, 4096, 4096, 128, false, false, 20);  // the weights dequantised first
    ok &= Quantized<4>(2048, 14336, 4096, 128, false, false, 10);
    ok &= Quantized<8>(2048, 4096, 4096, 128, false, false, 20);
    std::printf(ok ? "ALL OK\n" : "FAILURES\n");
    return ok ? 0 : 1;
  }
  // KAIO_PROBE_SYNC=1: only the mma.sync kernel (MatmulTc, MatmulTcBf16): exact on shapes that take its
  // wide tile (2200 x 2184 is 18 x 9 = 162 wide tiles: row, column and K tails) and, where the switch
  // KAIO_MATMUL_WIDE=0 is set, its narrow one; then its speed lines (A/B runs of tiles and builds).
  // KAIO_PROBE_SYNC=speed: the speed lines alone (a profiler's first launch is then a 4096^3 one).
  if (const char* sync_only = std::getenv("KAIO_PROBE_SYNC")) {
    const bool exact = std::strcmp(sync_only, "speed") != 0;
    for (bool bf16 : {false, true}) {
      if (!exact) break;
      for (bool trans_b : {true, false}) {
        ok &= Dense(2200, 2184, 264, trans_b, bf16, 3, false, true);
        ok &= Dense(2200, 2184, 264, trans_b, bf16, 3, false, true, true);  // 16-bit output
      }
      ok &= Dense(2200, 2184, 264, false, bf16, 3, true, true);  // trans_a
    }
    for (bool bf16 : {false, true})
      for (bool trans_b : {false, true}) ok &= Dense(4096, 4096, 4096, trans_b, bf16, 20, false, true, true);
    ok &= Dense(8192, 8192, 8192, false, false, 5, false, true, true);
    std::printf(ok ? "ALL OK\n" : "FAILURES\n");
    return ok ? 0 : 1;
  }
  // KAIO_PROBE_QUICK=1 leaves out the speed shapes (for runs under compute-sanitizer).
  const bool speed = std::getenv("KAIO_PROBE_QUICK") == nullptr;
  for (bool bf16 : {false, true})
    for (bool trans_b : {true, false}) {
      ok &= Dense(128, 128, 64, trans_b, bf16, 3);        // one tile, one K step
      ok &= Dense(129, 72, 72, trans_b, bf16, 3);         // boxes partly past M, N, K
      ok &= Dense(300, 264, 520, trans_b, bf16, 3);       // tails inside tiles
      ok &= Dense(2048, 2048, 256, trans_b, bf16, 3);     // more tiles than SMs
      ok &= Dense(2200, 2048, 264, trans_b, bf16, 3);     // large tiles (128 x 256 wide, or 256 x 128)
      ok &= Dense(2200, 2184, 264, trans_b, bf16, 3);     // a wide tile's last boxes past N (3 of 4 loaded)
      ok &= Dense(2200, 2184, 264, trans_b, bf16, 3, false, false, true);  // 16-bit output
      ok &= Dense(300, 264, 520, trans_b, bf16, 3, false, false, true);
      // K >= 2048 ([K, N] B: the swapped kernel, Y stored transposed through shared memory): row,
      // column and K tails, the last tile's second consumer wholly past N
      ok &= Dense(2200, 2184, 2056, trans_b, bf16, 3);
      ok &= Dense(2200, 2184, 2056, trans_b, bf16, 3, false, false, true);
    }
  // Pairs of CTAs sharing A tiles (tall tiles, >= 2 tile columns): an odd tile column count (the
  // second CTA of the last pair wholly past N), a row tail leaving the last tile's second A half
  // wholly past M, K tails. KAIO_WGMMA_CLUSTER=0 runs the same shapes on single CTAs.
  for (bool bf16 : {false, true})
    for (bool trans_b : {true, false}) {
      ok &= Dense(3900, 1032, 136, trans_b, bf16, 3);
      ok &= Dense(4100, 2048, 72, trans_b, bf16, 3);
    }
  // Skinny 64 x 128 tiles (M <= 64), with and without K slices (1 and 16-bit outputs), trans_a too.
  for (bool bf16 : {false, true})
    for (bool trans_b : {true, false}) {
      ok &= Dense(1, 136, 72, trans_b, bf16, 3);
      ok &= Dense(33, 264, 520, trans_b, bf16, 3, false, false, true);
      ok &= Dense(64, 1032, 2056, trans_b, bf16, 3, false, false, false, true);
      ok &= Dense(7, 2056, 1032, trans_b, bf16, 3, false, false, true, true);
      ok &= Dense(16, 2048, 8192, trans_b, bf16, 3, false, false, true, true);  // 8 K slices
      ok &= Dense(16, 512, 8192, trans_b, bf16, 3, false, false, false, true);  // 16 K slices
      // Narrow 64 x 64 tiles: N and K tails, clusters of 5 slices (16 tiles); unsplit (79 tiles).
      ok &= Dense(9, 1000, 3000, trans_b, bf16, 3, false, false, true, true);
      ok &= Dense(5, 5000, 1040, trans_b, bf16, 3, false, false, false, true);
    }
  ok &= Dense(40, 264, 520, false, false, 3, true);
  // MatmulTcGrad's dB: A read transposed (MN-major), wgmma and mma.sync; M % 64 != 0 leaves a consumer's
  // A box unloaded (wholly past M), K tails inside a stage.
  for (bool bf16 : {false, true})
    for (bool sync : {false, true}) {
      ok &= Dense(128, 128, 64, false, bf16, 3, true, sync);
      ok &= Dense(136, 264, 520, false, bf16, 3, true, sync);
      ok &= Dense(72, 200, 77, false, bf16, 3, true, sync);
      ok &= Dense(2200, 2048, 264, false, bf16, 3, true, sync);
      ok &= Dense(33, 17, 45, false, bf16, 3, true, sync);  // declined by wgmma (M % 8); mma.sync element loads
    }
  // The Async ops' cp.async pipeline (opt-in, matmul_tc_sm80.cu), exact on integer values: edges, K
  // tails, M = 1, split K, trans_b, trans_a (MatmulTcGrad's dB), 16-bit output; 33x17x45 (K % 8 != 0)
  // falls back to element loads. Its timing line is the 4096^3 "cp.async" one below.
  for (bool bf16 : {false, true})
    for (bool trans_b : {true, false}) {
      ok &= Dense(128, 128, 64, trans_b, bf16, 3, false, false, false, false, true);
      ok &= Dense(1, 136, 72, trans_b, bf16, 3, false, false, false, false, true);
      ok &= Dense(129, 72, 72, trans_b, bf16, 3, false, false, false, false, true);
      ok &= Dense(300, 264, 520, trans_b, bf16, 3, false, false, false, false, true);
      ok &= Dense(300, 264, 520, trans_b, bf16, 3, false, false, true, false, true);
      ok &= Dense(2200, 2184, 264, trans_b, bf16, 3, false, false, false, false, true);
      ok &= Dense(64, 1032, 2056, trans_b, bf16, 3, false, false, false, true, true);
      ok &= Dense(7, 2056, 1032, trans_b, bf16, 3, false, false, true, true, true);
      ok &= Dense(136, 264, 520, false, bf16, 3, true, false, false, false, true);
      ok &= Dense(33, 17, 45, false, bf16, 3, true, false, false, false, true);
    }
  if (speed) ok &= Dense(4096, 4096, 4096, false, false, 20, true);
  if (speed) ok &= Dense(4096, 4096, 4096, false, false, 10, false, true);  // the mma.sync kernel, for its A/B runs
  if (speed) ok &= Dense(4096, 4096, 4096, false, false, 10, false, false, false, false, true);  // cp.async pipeline
  if (speed) ok &= Dense(4096, 4096, 4096, true, false, 10, false, false, false, false, true);
  if (speed) ok &= Dense(4096, 4096, 4096, false, false, 20);        // speed (values small: sums stay exact)
  if (speed) ok &= Dense(4096, 4096, 4096, true, false, 20);
  if (speed) ok &= Dense(8192, 8192, 8192, false, false, 5);
  if (speed) ok &= Dense(8192, 8192, 8192, false, true, 5);
  // 16-bit Y (the benchmark's), longer runs (sustained clocks).
  if (speed) ok &= Dense(4096, 4096, 4096, false, false, 100, false, false, true);
  if (speed) ok &= Dense(8192, 8192, 8192, false, false, 30, false, false, true);
  if (speed) ok &= Dense(8192, 8192, 8192, true, false, 30, false, false, true);
  if (speed) ok &= Dense(8192, 8192, 8192, false, false, 30);
  // Decode-sized M with the op's K slices (B 32-112 MiB: partly L2-resident here, unlike the benchmark's).
  for (int m : {1, 16, 64})
    if (speed) ok &= Dense(m, 4096, 4096, false, false, 50, false, false, true, true);
  if (speed) ok &= Dense(16, 14336, 4096, false, false, 50, false, false, true, true);
  if (speed) ok &= Dense(16, 4096, 14336, false, false, 50, false, false, true, true);
  for (bool bf16 : {false, true})
    for (int group : {32, 64, 128})
      for (bool zp : {false, true}) ok &= Quantized<4>(300, 3208, 1024, group, zp, bf16, 3);
  ok &= Quantized<4>(520, 2056, 96, 32, true, false, 3);          // a half 64-k tile
  if (speed) ok &= Quantized<4>(2048, 4096, 4096, 128, false, false, 20);    // speed
  if (speed) ok &= Quantized<4>(2048, 14336, 4096, 128, false, false, 10);
  // K slices (few tiles: M <= 128 and N ~ 4096), odd M and N, a last slice ending in a half 64-k tile.
  for (bool bf16 : {false, true})
    for (bool zp : {false, true}) ok &= Quantized<4>(100, 1032, 8224, 32, zp, bf16, 3);
  ok &= Quantized<4>(128, 4096, 4096, 128, false, false, speed ? 20 : 3);
  if (speed) ok &= Quantized<4>(128, 4096, 14336, 128, false, false, 20);
  // >= 1024 rows: the weights dequantised first (scratch), then the dense GEMM.
  for (bool bf16 : {false, true})
    for (bool zp : {false, true}) ok &= Quantized<4>(1030, 1032, 1056, 32, zp, bf16, 3);
  for (bool bf16 : {false, true})
    for (int group : {0, 32, 128})
      for (bool zp : {false, true}) ok &= Quantized<8>(301, 3216, 1024, group, zp, bf16, 3);
  ok &= Quantized<8>(520, 2064, 1056, 32, true, false, 3);        // a half 64-k tile
  ok &= Quantized<8>(301, 3216, 1000, 0, false, false, 3);        // per channel, K % 64 != 0
  ok &= Quantized<8>(301, 3216, 1000, 0, true, false, 3);         // (declined: zero points past K)
  if (speed) ok &= Quantized<8>(2048, 4096, 4096, 128, false, false, 20);    // speed
  for (bool bf16 : {false, true})
    for (bool zp : {false, true}) ok &= Quantized<8>(77, 2064, 4160, 64, zp, bf16, 3);  // K slices
  ok &= Quantized<8>(128, 4096, 4096, 128, false, false, speed ? 20 : 3);
  for (bool bf16 : {false, true})
    for (bool zp : {false, true}) ok &= Quantized<8>(1030, 1040, 1056, 32, zp, bf16, 3);  // dequantised first
  // MatmulInt8 W8A8: int8 wgmma (skinny M <= 64, 128 x 128, wide 128 x 256 where 256-row tiles fill
  // the SMs; K tile 128: K = 16, 144, 1040 leave partial tiles), mma.sync (forced, and K % 16 != 0 /
  // N % 8 != 0, which wgmma declines), both outputs; exact bit for bit.
  for (bool out16 : {false, true})
    for (bool sync : {false, true}) {
      ok &= W8A8(1, 136, 16, out16, 3, false, sync);
      ok &= W8A8(33, 264, 144, out16, 3, false, sync);
      ok &= W8A8(129, 200, 1040, out16, 3, false, sync);       // row and column tails
      ok &= W8A8(300, 3208, 1024, out16, 3, false, sync);      // 128 x 128 tiles, more than SMs
      ok &= W8A8(2200, 2184, 272, out16, 3, false, sync);      // wide tiles, last boxes past N
    }
  ok &= W8A8(77, 45, 33, false, 3);                            // odd: mma.sync with element loads
  ok &= W8A8(130, 72, 1000, true, 3);                          // K % 16 == 8: mma.sync
  ok &= W8A8(64, 256, 131056, false, 3, true);                 // the largest sums (K < 2^17), wgmma
  ok &= W8A8(64, 256, 131071, false, 3, true);                 // K = 2^17 - 1, mma.sync
  if (speed) ok &= W8A8(4096, 4096, 4096, false, 20);          // target: >= 2x the f16 dense rate
  if (speed) ok &= W8A8(4096, 4096, 4096, true, 20);
  if (speed) ok &= W8A8(8192, 8192, 8192, false, 5);
  if (speed) ok &= W8A8(4096, 4096, 4096, false, 5, false, true);  // mma.sync, for reference
  std::printf(ok ? "ALL OK\n" : "FAILURES\n");
  return ok ? 0 : 1;
}
