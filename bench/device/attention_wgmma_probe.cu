// Standalone check of the Hopper FlashAttention forward (no ONNX Runtime needed): runs
// RunAttentionFlashWgmma (attention_flash_sm90.cu) on random f16 / bf16 inputs against a plain f32
// GPU reference (below), for D = 64 and 128, causal (bottom-right) and not, Sq / Sk not multiples of
// the 128-row tiles, Sq != Sk both ways, GQA, both layouts, LSE, f32 and 16-bit O; reports
// ||out - ref|| / ||ref|| per case, the largest LSE error, the first wrong elements, then the kernel
// time and TFLOP/s at the speed shapes next to the mma.sync kernel's (RunAttentionFlash with sm = 80).
// The outputs are poisoned with NaN before each run: an element never written fails. For debugging
// a kernel change in one device call; the pytest GPU suite remains the test of record.
// KAIO_PROBE_QUICK=1 leaves out the speed shapes (for compute-sanitizer runs). Exit code 1 on any failure.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//     -I ort_ops -o /tmp/attention_wgmma_probe bench/device/attention_wgmma_probe.cu \
//     ort_ops/attention/attention_flash_sm90.cu ort_ops/attention/attention_flash_sm80.cu && /tmp/attention_wgmma_probe
// probe-sources: ort_ops/attention/attention_flash_sm90.cu ort_ops/attention/attention_flash_sm80.cu
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "attention/attention_params.h"
#include "probe_common.cuh"

namespace kaio {
cudaError_t RunAttentionFlashWgmma(const AttentionFlashParams& p, void* workspace, cudaStream_t stream);
size_t AttentionFlashWgmmaWorkspaceBytes(const AttentionFlashParams& p);
bool AttentionFlashWgmmaFits(const AttentionFlashParams& p);
}  // namespace kaio

using namespace kaio;
using probe::Bits16;
using probe::Float16;
using probe::StridesOf;

namespace {

struct Case {
  const char* name;
  bool bf16, causal, bshd, out_f32, lse;
  int64_t batch, hq, hkv, sq, sk, d;
  float scale;  // 0: 1 / sqrt(D)
};

// Query-key pairs a causal (bottom-right) or full mask lets through, per (batch, head).
double Pairs(const Case& c) {
  double n = 0;
  for (int64_t i = 0; i < c.sq; ++i) n += double(probe::VisibleKeys(c.causal, i, c.sq, c.sk));
  return n;
}

struct Buffers {
  uint16_t *q = nullptr, *k = nullptr, *v = nullptr;
  void* o = nullptr;
  float *lse = nullptr, *o_ref = nullptr, *lse_ref = nullptr;
  void* workspace = nullptr;
  void* counter = nullptr;  // the Hopper kernel's workspace (its tile counter)
};

AttentionFlashParams ParamsOf(const Case& c, const Buffers& buf, int sm, int sm_count) {
  AttentionFlashParams p;
  p.q = buf.q;
  p.k = buf.k;
  p.v = buf.v;
  p.o = buf.o;
  p.lse = c.lse ? buf.lse : nullptr;
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
  p.k_str = p.v_str = StridesOf(c.bshd, c.hkv, c.sk, c.d);
  p.o_str = StridesOf(c.bshd, c.hq, c.sq, c.d);
  p.scale = c.scale > 0.f ? c.scale : 1.f / std::sqrt(float(c.d));
  p.sm = sm;
  p.sm_count = sm_count;
  return p;
}

// Runs one case; returns false on a mismatch. speed: time the wgmma kernel and the mma.sync one.
bool RunCase(const Case& c, bool speed, int sm_count, std::mt19937& gen) {
  const int64_t q_elems = c.batch * c.hq * c.sq * c.d, kv_elems = c.batch * c.hkv * c.sk * c.d;
  const int64_t rows = c.batch * c.hq * c.sq;
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<uint16_t> hq(q_elems), hk(kv_elems), hv(kv_elems);
  for (auto& x : hq) x = Bits16(dist(gen), c.bf16);
  for (auto& x : hk) x = Bits16(dist(gen), c.bf16);
  for (auto& x : hv) x = Bits16(dist(gen), c.bf16);
  Buffers buf;
  const size_t o_bytes = rows * c.d * (c.out_f32 ? 4 : 2);
  CHECK(cudaMalloc(&buf.q, q_elems * 2));
  CHECK(cudaMalloc(&buf.k, kv_elems * 2));
  CHECK(cudaMalloc(&buf.v, kv_elems * 2));
  CHECK(cudaMalloc(&buf.o, o_bytes));
  CHECK(cudaMalloc(&buf.lse, rows * 4));
  CHECK(cudaMalloc(&buf.o_ref, rows * c.d * 4));
  CHECK(cudaMalloc(&buf.lse_ref, rows * 4));
  CHECK(cudaMemcpy(buf.q, hq.data(), q_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(buf.k, hk.data(), kv_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(buf.v, hv.data(), kv_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemset(buf.o, 0xFF, o_bytes));  // NaN in f32, f16 and bf16
  CHECK(cudaMemset(buf.lse, 0xFF, rows * 4));

  const AttentionFlashParams p = ParamsOf(c, buf, 90, sm_count);
  if (!AttentionFlashWgmmaFits(p)) {
    std::printf("%-28s DOES NOT FIT the wgmma kernel\n", c.name);
    return false;
  }
  CHECK(cudaMalloc(&buf.counter, AttentionFlashWgmmaWorkspaceBytes(p)));
  CHECK(RunAttentionFlashWgmma(p, buf.counter, 0));
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());

  // The reference on every row (small cases) or every row_step-th row (speed shapes).
  const int64_t row_step = speed ? 61 : 1;
  probe::RunAttentionReference(p, c.bf16, row_step, buf.o_ref, buf.lse_ref);
  std::vector<float> o_ref(rows * c.d), lse_ref(rows), lse(rows);
  std::vector<uint8_t> o_raw(o_bytes);
  CHECK(cudaMemcpy(o_ref.data(), buf.o_ref, rows * c.d * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(lse_ref.data(), buf.lse_ref, rows * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(lse.data(), buf.lse, rows * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(o_raw.data(), buf.o, o_bytes, cudaMemcpyDeviceToHost));

  const AttentionStrides os = p.o_str;
  double num = 0, den = 0, lse_err = 0;
  int shown = 0;
  bool ok = true;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.sq; i += row_step) {
        const int64_t row = (b * c.hq + h) * c.sq + i;
        for (int64_t col = 0; col < c.d; ++col) {
          const int64_t at = b * os.batch + h * os.head + i * os.row + col;
          float got;
          if (c.out_f32) std::memcpy(&got, o_raw.data() + at * 4, 4);
          else got = Float16(reinterpret_cast<const uint16_t*>(o_raw.data())[at], c.bf16);
          const float want = o_ref[row * c.d + col];
          const double diff = double(got) - double(want);
          num += diff * diff;
          den += double(want) * double(want);
          if (!std::isfinite(got) || std::fabs(diff) > 0.05 + 0.05 * std::fabs(want)) {
            if (shown++ < 5)
              std::printf("    O[b=%lld h=%lld i=%lld c=%lld] = %g, expected %g\n", (long long)b, (long long)h,
                          (long long)i, (long long)col, got, want);
            ok = false;  // a local error (a row, a tile edge, a mask off by one) can hide under the case's rel_err
          }
        }
        if (c.lse) {
          const float got = lse[row], want = lse_ref[row];
          if (std::isinf(want) || std::isinf(got) || std::isnan(got)) {
            if (!(got == want)) {
              ok = false;
              if (shown++ < 5)
                std::printf("    LSE[b=%lld h=%lld i=%lld] = %g, expected %g\n", (long long)b, (long long)h,
                            (long long)i, got, want);
            }
          } else {
            lse_err = std::max(lse_err, double(std::fabs(got - want)) / std::max(1.0, double(std::fabs(want))));
          }
        }
      }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const double tol = c.bf16 ? 1e-2 : 5e-3;
  ok = ok && rel <= tol && lse_err <= 1e-3;
  std::printf("%-28s %s %s D=%-3lld B=%lld Hq=%-2lld Hkv=%-2lld Sq=%-5lld Sk=%-5lld %s %s%s rel_err %.2e lse_err %.1e  %s\n",
              c.name, c.bf16 ? "bf16" : "f16 ", c.causal ? "causal" : "full  ", (long long)c.d, (long long)c.batch,
              (long long)c.hq, (long long)c.hkv, (long long)c.sq, (long long)c.sk, c.bshd ? "bshd" : "bhsd",
              c.out_f32 ? "O f32" : "O 16", c.lse ? " +LSE" : "", rel, lse_err, ok ? "ok" : "FAIL");

  if (speed) {
    const double flops = 4.0 * double(c.d) * Pairs(c) * double(c.batch * c.hq);
    AttentionFlashParams p80 = ParamsOf(c, buf, 80, sm_count);
    const size_t ws = AttentionFlashWorkspaceBytes(p80);
    if (ws) CHECK(cudaMalloc(&buf.workspace, ws));
    const double wgmma = probe::MedianMs([&] { CHECK(RunAttentionFlashWgmma(p, buf.counter, 0)); });
    const double mma = probe::MedianMs([&] {
      if (int e = RunAttentionFlash(p80, buf.workspace, nullptr)) CHECK(cudaError_t(e));
    });
    for (auto [name, ms] : {std::pair<const char*, double>{"wgmma", wgmma}, {"mma.sync", mma}})
      std::printf("    %-8s %8.3f ms  %6.1f TFLOP/s (median of 20)\n", name, ms, flops / (ms * 1e-3) / 1e12);
  }
  cudaFree(buf.q);
  cudaFree(buf.k);
  cudaFree(buf.v);
  cudaFree(buf.o);
  cudaFree(buf.lse);
  cudaFree(buf.o_ref);
  cudaFree(buf.lse_ref);
  if (buf.workspace) cudaFree(buf.workspace);
  cudaFree(buf.counter);
  return ok;
}

}  // namespace

int main() {
  int dev = 0, sm_count = 0, major = 0, minor = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev));
  CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device %s (sm_%d%d, %d SMs)\n", prop.name, major, minor, sm_count);
  if (major * 10 + minor != 90) {
    std::printf("needs compute capability 9.0\n");
    return 1;
  }
  const bool quick = std::getenv("KAIO_PROBE_QUICK") && std::atoi(std::getenv("KAIO_PROBE_QUICK")) != 0;
  std::mt19937 gen(1234);
  std::vector<Case> cases;
  // name, bf16, causal, bshd, out_f32, lse, batch, hq, hkv, sq, sk, d, scale
  for (int d : {64, 128})
    for (bool bf16 : {false, true})
      for (bool causal : {false, true})
        for (int64_t s : {1, 77, 200, 1000}) {
          const bool bshd = (s == 77 || s == 1000);
          cases.push_back({"square", bf16, causal, bshd, s != 200, s != 77, 2, 3, 3, s, s, d, 0.f});
        }
  for (int d : {64, 128})
    for (bool causal : {false, true}) {
      cases.push_back({"sq<sk", false, causal, false, true, true, 1, 4, 4, 77, 1000, d, 0.f});
      cases.push_back({"sq>sk (rows see no key)", true, causal, true, true, true, 1, 4, 4, 1000, 77, d, 0.f});
      cases.push_back({"sq<sk 16-bit O", false, causal, true, false, true, 2, 4, 2, 200, 333, d, 0.3f});
      cases.push_back({"gqa 32/8", false, causal, false, true, true, 1, 32, 8, 300, 300, d, 0.f});
      cases.push_back({"gqa 32/8 bshd bf16", true, causal, true, false, true, 1, 32, 8, 129, 700, d, 0.f});
      cases.push_back({"mqa 8/1", false, causal, true, true, true, 2, 8, 1, 256, 256, d, 0.f});
      cases.push_back({"sq1 sk1000", false, causal, false, true, true, 1, 2, 2, 1, 1000, d, 0.f});
      cases.push_back({"sq128 sk1", true, causal, false, true, true, 1, 2, 2, 128, 1, d, 0.f});
    }
  bool ok = true;
  for (const Case& c : cases) ok = RunCase(c, false, sm_count, gen) && ok;
  if (!quick) {
    std::printf("speed shapes (O f16, no LSE; correctness on every 61st query row):\n");
    for (bool causal : {false, true}) {
      ok = RunCase({"speed 4x2048x32x128", false, causal, false, false, false, 4, 32, 32, 2048, 2048, 128, 0.f}, true,
                   sm_count, gen) && ok;
      ok = RunCase({"speed 1x8192x32x128", false, causal, false, false, false, 1, 32, 32, 8192, 8192, 128, 0.f}, true,
                   sm_count, gen) && ok;
      ok = RunCase({"speed 8x2048x16x64", false, causal, false, false, false, 8, 16, 16, 2048, 2048, 64, 0.f}, true,
                   sm_count, gen) && ok;
      ok = RunCase({"speed bf16 bshd 4x2048x32x128", true, causal, true, false, false, 4, 32, 32, 2048, 2048, 128, 0.f},
                   true, sm_count, gen) && ok;
    }
  }
  std::printf("%s\n", ok ? "ALL OK" : "SOME CASES FAILED");
  return ok ? 0 : 1;
}
