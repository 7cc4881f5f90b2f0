// Standalone check and timing of AttentionFlash's decode kernel (attention_decode_kernel.cuh, short
// queries: Sq * Hq / Hkv <= 16) through RunAttentionFlash, no ONNX Runtime. Random f16 / bf16 inputs
// against the f32 GPU reference of probe_common.cuh on every query row: Sq 1, 4, 8; Sk 1, 17, 4096,
// 4097, 32768; Hq = Hkv = 32 and GQA 32 / 8; D 64, 128 (+ 32, 96, 256); causal (bottom-right) and
// not; bhsd and bshd; O f32 and 16-bit; the LSE output. O and LSE are poisoned with NaN first.
// A case fails on a relative error ||O - ref|| / ||ref|| above 5e-3 (f16) / 1e-2 (bf16), on any element
// outside atol + rtol |ref|, or on an LSE off by more than 1e-3.
// Timing (Sq = 1, Sk = 4096, H = 32, D = 128, f16, bshd; B = 1 and 16): 20 launches rotating over
// enough K/V caches that they total more than 2x the L2 (so K/V come from HBM) are captured into one
// CUDA graph; the graph replays are timed with events and reported per launch, with the achieved
// K+V bandwidth and the floor (K+V bytes / 4.8 TB/s). KAIO_DECODE_V2=0 selects the older launch
// (combine kernel) in the same binary; KAIO_DECODE_SPLITS=n forces n cluster slices.
// KAIO_PROBE_QUICK=1 leaves out the timing. Exit code 1 on any failure.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -DKAIO_MBAR_TIMEOUT -gencode arch=compute_90a,code=sm_90a \
//     --expt-relaxed-constexpr -I ort_ops -o /tmp/attention_decode_probe bench/device/attention_decode_probe.cu \
//     $(sed -n 's|^// probe-sources: ||p' bench/device/attention_decode_probe.cu)
//   /tmp/attention_decode_probe && KAIO_DECODE_V2=0 /tmp/attention_decode_probe
// probe-sources: ort_ops/attention/attention_flash_sm80.cu ort_ops/attention/attention_flash_sm90.cu
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "attention/attention_params.h"
#include "probe_common.cuh"

using namespace kaio;
using probe::Bits16;
using probe::Float16;
using probe::StridesOf;

namespace {

struct Case {
  bool bf16, causal, bshd, out_f32, lse;
  int64_t batch, hq, hkv, sq, sk, d;
};

struct Device {
  int sm = 0, sm_count = 0;
};

AttentionFlashParams ParamsOf(const Case& c, const void* q, const void* k, const void* v, void* o, float* lse,
                              const Device& dev) {
  AttentionFlashParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.o = o;
  p.lse = lse;
  p.in_type = c.bf16 ? AttentionElem::kBF16 : AttentionElem::kF16;
  p.out_f32 = c.out_f32;
  p.causal = c.causal;
  p.batch = c.batch;
  p.hq = c.hq;
  p.hkv = c.hkv;
  p.sq = c.sq;
  p.sk = c.sk;
  p.d = p.dv = c.d;
  p.q_str = StridesOf(c.bshd, c.hq, c.sq, c.d);
  p.k_str = StridesOf(c.bshd, c.hkv, c.sk, c.d);
  p.v_str = StridesOf(c.bshd, c.hkv, c.sk, c.d);
  p.o_str = StridesOf(c.bshd, c.hq, c.sq, c.d);
  p.scale = 1.f / std::sqrt(float(c.d));
  p.sm = dev.sm;
  p.sm_count = dev.sm_count;
  return p;
}

bool RunCase(const Case& c, const Device& dev, std::mt19937& gen) {
  const int64_t q_elems = c.batch * c.hq * c.sq * c.d, kv_elems = c.batch * c.hkv * c.sk * c.d;
  const int64_t rows = c.batch * c.hq * c.sq;
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<uint16_t> hq(q_elems), hk(kv_elems), hv(kv_elems);
  for (auto& x : hq) x = Bits16(dist(gen), c.bf16);
  for (auto& x : hk) x = Bits16(dist(gen), c.bf16);
  for (auto& x : hv) x = Bits16(dist(gen), c.bf16);
  uint16_t *q, *k, *v;
  void *o, *ws = nullptr;
  float *lse = nullptr, *o_ref, *lse_ref;
  const size_t o_bytes = rows * c.d * (c.out_f32 ? 4 : 2);
  CHECK(cudaMalloc(&q, q_elems * 2));
  CHECK(cudaMalloc(&k, kv_elems * 2));
  CHECK(cudaMalloc(&v, kv_elems * 2));
  CHECK(cudaMalloc(&o, o_bytes));
  CHECK(cudaMalloc(&o_ref, rows * c.d * 4));
  CHECK(cudaMalloc(&lse_ref, rows * 4));
  if (c.lse) CHECK(cudaMalloc(&lse, rows * 4));
  CHECK(cudaMemcpy(q, hq.data(), q_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(k, hk.data(), kv_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(v, hv.data(), kv_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemset(o, 0xFF, o_bytes));  // NaN in f32, f16 and bf16
  if (lse) CHECK(cudaMemset(lse, 0xFF, rows * 4));
  const AttentionFlashParams p = ParamsOf(c, q, k, v, o, lse, dev);
  const size_t ws_bytes = AttentionFlashWorkspaceBytes(p);
  if (ws_bytes) CHECK(cudaMalloc(&ws, ws_bytes));
  if (ws) CHECK(cudaMemset(ws, 0xFF, ws_bytes));
  const int e = RunAttentionFlash(p, ws, nullptr);
  if (e != 0) {
    std::printf("RunAttentionFlash returned %d  FAIL\n", e);
    return false;
  }
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  probe::RunAttentionReference(p, c.bf16, 1, o_ref, lse_ref);
  std::vector<float> ref(rows * c.d), lref(rows), lgot(rows);
  std::vector<uint8_t> raw(o_bytes);
  CHECK(cudaMemcpy(ref.data(), o_ref, rows * c.d * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(lref.data(), lse_ref, rows * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(raw.data(), o, o_bytes, cudaMemcpyDeviceToHost));
  if (lse) CHECK(cudaMemcpy(lgot.data(), lse, rows * 4, cudaMemcpyDeviceToHost));
  const double atol = c.bf16 ? 2e-2 : 4e-3, rtol = c.bf16 ? 1e-2 : 2e-3;
  double num = 0, den = 0, lse_err = 0;
  int shown = 0;
  bool ok = true;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.sq; ++i) {
        const int64_t row = (b * c.hq + h) * c.sq + i;
        const bool unseen = probe::VisibleKeys(c.causal, i, c.sq, c.sk) == 0;
        for (int64_t col = 0; col < c.d; ++col) {
          const int64_t at = b * p.o_str.batch + h * p.o_str.head + i * p.o_str.row + col;
          float got;
          if (c.out_f32) std::memcpy(&got, raw.data() + at * 4, 4);
          else got = Float16(reinterpret_cast<const uint16_t*>(raw.data())[at], c.bf16);
          const float want = ref[row * c.d + col];
          const double diff = double(got) - double(want);
          num += diff * diff;
          den += double(want) * double(want);
          if (!std::isfinite(got) || std::fabs(diff) > atol + rtol * std::fabs(want) || (unseen && got != 0.f)) {
            if (shown++ < 5)
              std::printf("    O[b=%lld h=%lld i=%lld c=%lld] = %g, expected %g\n", (long long)b, (long long)h,
                          (long long)i, (long long)col, got, want);
            ok = false;
          }
        }
        if (lse) {
          const float g = lgot[row], w = lref[row];
          const bool same = (std::isinf(w) && g == w) || (std::isfinite(g) && std::fabs(g - w) <= 1e-3 * (1 + std::fabs(w)));
          if (!same) {
            if (shown++ < 5) std::printf("    LSE[row %lld] = %g, expected %g\n", (long long)row, g, w);
            ok = false;
          }
          if (std::isfinite(w)) lse_err = std::max(lse_err, double(std::fabs(g - w)));
        }
      }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  ok = ok && rel <= (c.bf16 ? 1e-2 : 5e-3);
  std::printf("%s %s D=%-3lld B=%lld Hq=%-2lld Hkv=%-2lld Sq=%lld Sk=%-5lld %s %s%s rel_err %.2e lse_err %.1e  %s\n",
              c.bf16 ? "bf16" : "f16 ", c.causal ? "causal" : "full  ", (long long)c.d, (long long)c.batch,
              (long long)c.hq, (long long)c.hkv, (long long)c.sq, (long long)c.sk, c.bshd ? "bshd" : "bhsd",
              c.out_f32 ? "O f32" : "O 16 ", c.lse ? " lse" : "    ", rel, lse_err, ok ? "ok" : "FAIL");
  cudaFree(q);
  cudaFree(k);
  cudaFree(v);
  cudaFree(o);
  cudaFree(o_ref);
  cudaFree(lse_ref);
  if (lse) cudaFree(lse);
  if (ws) cudaFree(ws);
  return ok;
}

// Per-launch microseconds of Sq = 1 decode over `sets` K/V caches (> 2x L2 in all), 20 launches a graph.
void Time(int64_t batch, const Device& dev, size_t l2_bytes) {
  const Case c{false, false, true, false, false, batch, 32, 32, 1, 4096, 128};
  const int64_t kv_elems = c.batch * c.hkv * c.sk * c.d;
  const double kv_bytes = 2.0 * kv_elems * 2;
  const int sets = std::max<int>(2, int(std::ceil(2.0 * l2_bytes / kv_bytes)) + 1);
  std::vector<uint16_t*> k(sets), v(sets);
  uint16_t* q;
  void *o, *ws = nullptr;
  CHECK(cudaMalloc(&q, c.batch * c.hq * c.d * 2));
  CHECK(cudaMalloc(&o, c.batch * c.hq * c.d * 2));
  CHECK(cudaMemset(q, 0x33, c.batch * c.hq * c.d * 2));  // (values do not matter for the time)
  for (int s = 0; s < sets; ++s) {
    CHECK(cudaMalloc(&k[s], kv_elems * 2));
    CHECK(cudaMalloc(&v[s], kv_elems * 2));
    CHECK(cudaMemset(k[s], 0x2c, kv_elems * 2));
    CHECK(cudaMemset(v[s], 0x2c, kv_elems * 2));
  }
  const size_t ws_bytes = AttentionFlashWorkspaceBytes(ParamsOf(c, q, k[0], v[0], o, nullptr, dev));
  if (ws_bytes) CHECK(cudaMalloc(&ws, ws_bytes));
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int s = 0; s < sets; ++s)  // warm-up (and the one-time attribute calls) outside the capture
    CHECK(cudaError_t(RunAttentionFlash(ParamsOf(c, q, k[s], v[s], o, nullptr, dev), ws, stream)));
  CHECK(cudaStreamSynchronize(stream));
  constexpr int kLaunches = 20;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < kLaunches; ++i) {
    const int s = i % sets;
    CHECK(cudaError_t(RunAttentionFlash(ParamsOf(c, q, k[s], v[s], o, nullptr, dev), ws, stream)));
  }
  CHECK(cudaStreamEndCapture(stream, &graph));
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  for (int w = 0; w < 3; ++w) CHECK(cudaGraphLaunch(exec, stream));
  std::vector<float> ms;
  for (int r = 0; r < 15; ++r) {
    CHECK(cudaEventRecord(e0, stream));
    CHECK(cudaGraphLaunch(exec, stream));
    CHECK(cudaEventRecord(e1, stream));
    CHECK(cudaEventSynchronize(e1));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double us = ms[ms.size() / 2] * 1e3 / kLaunches;
  const double floor_us = kv_bytes / 4.8e12 * 1e6;
  std::printf("time B=%-2lld Sq=1 Sk=4096 H=32 D=128 f16 bshd (%d K/V sets of %.0f MB): %7.2f us per launch, "
              "%.2f TB/s K+V, floor %.2f us (4.8 TB/s), %.2fx the floor  [KAIO_DECODE_V2=%s]\n",
              (long long)batch, sets, kv_bytes / 1e6, us, kv_bytes / (us * 1e-6) / 1e12, floor_us, us / floor_us,
              std::getenv("KAIO_DECODE_V2") ? std::getenv("KAIO_DECODE_V2") : "1");
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaStreamDestroy(stream));
  for (int s = 0; s < sets; ++s) {
    cudaFree(k[s]);
    cudaFree(v[s]);
  }
  cudaFree(q);
  cudaFree(o);
  if (ws) cudaFree(ws);
}

}  // namespace

int main() {
  Device dev;
  int id = 0, major = 0, minor = 0, l2 = 0;
  CHECK(cudaGetDevice(&id));
  CHECK(cudaDeviceGetAttribute(&dev.sm_count, cudaDevAttrMultiProcessorCount, id));
  CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, id));
  CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, id));
  CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, id));
  dev.sm = major * 10 + minor;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, id));
  std::printf("device %s (sm_%d%d, %d SMs, L2 %d MB)  KAIO_DECODE_V2=%s KAIO_DECODE_SPLITS=%s\n", prop.name, major, minor,
              dev.sm_count, l2 >> 20, std::getenv("KAIO_DECODE_V2") ? std::getenv("KAIO_DECODE_V2") : "(unset)",
              std::getenv("KAIO_DECODE_SPLITS") ? std::getenv("KAIO_DECODE_SPLITS") : "(unset)");
  const bool quick = std::getenv("KAIO_PROBE_QUICK") && std::atoi(std::getenv("KAIO_PROBE_QUICK")) != 0;
  std::mt19937 gen(1234);
  bool ok = true;
  std::vector<Case> cases;
  // bf16, causal, bshd, out_f32, lse, batch, hq, hkv, sq, sk, d
  int n = 0;
  for (int64_t sq : {1, 4, 8})
    for (int64_t sk : {1, 17, 4096, 4097, 32768})
      for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{32, 32}, {32, 8}})
        for (int d : {64, 128})
          for (bool causal : {false, true}) {
            if (sq * hq / hkv > 16) continue;  // not the decode kernel's shapes
            if (sk == 32768 && (d == 64 || sq == 4)) continue;  // (time: the long cases once per kind)
            ++n;
            const bool bf16 = n % 3 == 0, bshd = n % 2 == 0, out_f32 = n % 4 == 1, lse = n % 2 == 1 || sk == 1;
            cases.push_back({bf16, causal, bshd, out_f32, lse, sk >= 32768 ? 1 : 2, hq, hkv, sq, sk, d});
          }
  for (int d : {32, 96, 256})
    for (bool causal : {false, true}) {
      cases.push_back({false, causal, true, true, true, 2, 8, 2, 4, 4097, d});
      cases.push_back({true, causal, false, false, true, 1, 4, 4, 1, 1000, d});
    }
  cases.push_back({false, false, true, false, true, 16, 32, 32, 1, 4096, 128});  // the B = 16 timing shape (unsplit)
  cases.push_back({false, false, true, false, true, 1, 32, 32, 1, 4096, 128});   // the B = 1 timing shape
  for (const Case& c : cases) ok = RunCase(c, dev, gen) && ok;
  if (!quick) {
    Time(1, dev, size_t(l2));
    Time(16, dev, size_t(l2));
  }
  std::printf("%s\n", ok ? "ALL OK" : "SOME CASES FAILED");
  return ok ? 0 : 1;
}
