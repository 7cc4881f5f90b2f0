// Standalone check of AttentionTc's CUDA kernel (no ONNX Runtime needed): runs RunAttentionTc
// (attention_tc_sm80.cu) on random f16 / bf16 inputs against a plain f32 GPU reference (below), with
// every query-tile height forced in turn (16, 32, 64 rows) and the launcher's own choice, causal
// (bottom-right) and not, S = 1, Sq / Sk not multiples of the tiles, Sq != Sk both ways (rows that see
// no key must be exactly 0), GQA (the kernel honours Hq % Hkv although the op asks Hkv == Hq), both
// layouts, D != Dv, D % 8 != 0 (element loads), head dims 20..256, f32 and 16-bit O, a scale
// attribute, and Sk at the device's cap (AttentionTcMaxSk; one key more is refused with -2). Reports
// ||out - ref|| / ||ref|| per case and the first wrong elements: any element outside
// |out - ref| <= atol + rtol |ref| (f16: 4e-3 + 2e-3 |ref|, bf16: 2e-2 + 1e-2 |ref|: P rounded to the
// input type, then O) fails its case, as does a relative error above 5e-3 (f16) / 1e-2 (bf16). The
// outputs are poisoned with NaN before each run: an element never written fails. Then the kernel time
// and TFLOP/s at (B, H, S, D) = (4, 32, 384, 128) and (4, 32, 1024, 128), next to AttentionFlash
// (RunAttentionFlash: the TMA + wgmma kernel on sm_90, else mma.sync).
// KAIO_PROBE_QUICK=1 leaves out the speed shapes (for compute-sanitizer runs). Exit code 1 on any failure.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//     -I ort_ops -o /tmp/attention_tc_probe bench/device/attention_tc_probe.cu \
//     ort_ops/attention/attention_tc_sm80.cu ort_ops/attention/attention_flash_sm80.cu \
//     ort_ops/attention/attention_flash_sm90.cu && /tmp/attention_tc_probe
// (or KAIO_PROBES=attention_tc_probe bash bench/device/gpu_check.sh)
// probe-sources: ort_ops/attention/attention_tc_sm80.cu ort_ops/attention/attention_flash_sm80.cu ort_ops/attention/attention_flash_sm90.cu
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "attention/attention_params.h"
#include "attention/attention_tc_kernel.cuh"  // attention_tc::SmemBytes: which forced tile heights fit
#include "probe_common.cuh"

using namespace kaio;
using probe::Bits16;
using probe::Float16;
using probe::StridesOf;

namespace {

struct Case {
  const char* name;
  bool bf16, causal, bshd, out_f32;
  int64_t batch, hq, hkv, sq, sk, d, dv;
  float scale;  // 0: 1 / sqrt(D)
  int block_m;  // 0: the launcher's choice
};

int64_t Visible(const Case& c, int64_t i) { return probe::VisibleKeys(c.causal, i, c.sq, c.sk); }

// Query-key pairs the mask lets through, per (batch, head).
double Pairs(const Case& c) {
  double n = 0;
  for (int64_t i = 0; i < c.sq; ++i) n += double(Visible(c, i));
  return n;
}

struct Buffers {
  uint16_t *q = nullptr, *k = nullptr, *v = nullptr;
  void* o = nullptr;
  float* o_ref = nullptr;
  void* workspace = nullptr;
};

AttentionFlashParams ParamsOf(const Case& c, const Buffers& buf, int sm, int sm_count) {
  AttentionFlashParams p;
  p.q = buf.q;
  p.k = buf.k;
  p.v = buf.v;
  p.o = buf.o;
  p.in_type = c.bf16 ? AttentionElem::kBF16 : AttentionElem::kF16;
  p.out_f32 = c.out_f32;
  p.causal = c.causal;
  p.batch = c.batch;
  p.hq = c.hq;
  p.hkv = c.hkv;
  p.sq = c.sq;
  p.sk = c.sk;
  p.d = c.d;
  p.dv = c.dv;
  p.q_str = StridesOf(c.bshd, c.hq, c.sq, c.d);
  p.k_str = StridesOf(c.bshd, c.hkv, c.sk, c.d);
  p.v_str = StridesOf(c.bshd, c.hkv, c.sk, c.dv);
  p.o_str = StridesOf(c.bshd, c.hq, c.sq, c.dv);
  p.scale = c.scale > 0.f ? c.scale : 1.f / std::sqrt(float(c.d));
  p.sm = sm;
  p.sm_count = sm_count;
  return p;
}

struct Device {
  int sm = 0, sm_count = 0, smem_optin = 0, smem_per_sm = 0;
};

// Runs one case; returns false on a mismatch. speed: also time it next to AttentionFlash.
bool RunCase(const Case& c, bool speed, const Device& dev, std::mt19937& gen) {
  const int d_tile = std::max(c.d, c.dv) <= 64 ? 64 : std::max(c.d, c.dv) <= 128 ? 128 : 256;
  if (c.block_m && attention_tc::SmemBytes(c.block_m, c.sk, d_tile) > dev.smem_optin) {
    // A forced tile height too tall for this Sk: the launcher must refuse it (-2) before launching.
    const int e = RunAttentionTc(ParamsOf(c, Buffers{}, dev.sm, dev.sm_count), dev.smem_optin, dev.smem_per_sm,
                                 c.block_m, nullptr);
    std::printf("%-26s %s bm=%d Sk=%lld does not fit: RunAttentionTc returned %d  %s\n", c.name,
                c.bf16 ? "bf16" : "f16 ", c.block_m, (long long)c.sk, e, e == -2 ? "ok (skipped)" : "FAIL");
    return e == -2;
  }
  const int64_t q_elems = c.batch * c.hq * c.sq * c.d, k_elems = c.batch * c.hkv * c.sk * c.d,
                v_elems = c.batch * c.hkv * c.sk * c.dv;
  const int64_t rows = c.batch * c.hq * c.sq;
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<uint16_t> hq(q_elems), hk(k_elems), hv(v_elems);
  for (auto& x : hq) x = Bits16(dist(gen), c.bf16);
  for (auto& x : hk) x = Bits16(dist(gen), c.bf16);
  for (auto& x : hv) x = Bits16(dist(gen), c.bf16);
  Buffers buf;
  const size_t o_bytes = std::max<size_t>(1, rows * c.dv * (c.out_f32 ? 4 : 2));
  CHECK(cudaMalloc(&buf.q, std::max<int64_t>(1, q_elems) * 2));
  CHECK(cudaMalloc(&buf.k, std::max<int64_t>(1, k_elems) * 2));
  CHECK(cudaMalloc(&buf.v, std::max<int64_t>(1, v_elems) * 2));
  CHECK(cudaMalloc(&buf.o, o_bytes));
  CHECK(cudaMalloc(&buf.o_ref, std::max<int64_t>(1, rows * c.dv) * 4));
  CHECK(cudaMemcpy(buf.q, hq.data(), q_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(buf.k, hk.data(), k_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(buf.v, hv.data(), v_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemset(buf.o, 0xFF, o_bytes));  // NaN in f32, f16 and bf16

  const AttentionFlashParams p = ParamsOf(c, buf, dev.sm, dev.sm_count);
  const int e = RunAttentionTc(p, dev.smem_optin, dev.smem_per_sm, c.block_m, nullptr);
  if (e != 0) {
    std::printf("%-26s RunAttentionTc returned %d (%s)  FAIL\n", c.name, e, e > 0 ? cudaGetErrorString(cudaError_t(e)) : "");
    return false;
  }
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());

  // The reference on every row (small cases) or every row_step-th row (speed shapes).
  const int64_t row_step = speed ? 61 : 1;
  probe::RunAttentionReference(p, c.bf16, row_step, buf.o_ref, nullptr);
  std::vector<float> o_ref(rows * c.dv);
  std::vector<uint8_t> o_raw(o_bytes);
  CHECK(cudaMemcpy(o_ref.data(), buf.o_ref, rows * c.dv * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(o_raw.data(), buf.o, o_bytes, cudaMemcpyDeviceToHost));

  const double atol = c.bf16 ? 2e-2 : 4e-3, rtol = c.bf16 ? 1e-2 : 2e-3;
  const AttentionStrides os = p.o_str;
  double num = 0, den = 0;
  int shown = 0;
  bool ok = true;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.sq; i += row_step) {
        const int64_t row = (b * c.hq + h) * c.sq + i;
        const bool unseen = Visible(c, i) == 0;
        for (int64_t col = 0; col < c.dv; ++col) {
          const int64_t at = b * os.batch + h * os.head + i * os.row + col;
          float got;
          if (c.out_f32) std::memcpy(&got, o_raw.data() + at * 4, 4);
          else got = Float16(reinterpret_cast<const uint16_t*>(o_raw.data())[at], c.bf16);
          const float want = o_ref[row * c.dv + col];
          const double diff = double(got) - double(want);
          num += diff * diff;
          den += double(want) * double(want);
          if (!std::isfinite(got) || std::fabs(diff) > atol + rtol * std::fabs(want) || (unseen && got != 0.f)) {
            if (shown++ < 5)
              std::printf("    O[b=%lld h=%lld i=%lld c=%lld] = %g, expected %g%s\n", (long long)b, (long long)h,
                          (long long)i, (long long)col, got, want, unseen ? " (row sees no key: exactly 0)" : "");
            ok = false;  // a local error (a row, a tile edge, a mask off by one) can hide under the case's rel_err
          }
        }
      }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const double tol = c.bf16 ? 1e-2 : 5e-3;
  ok = ok && rel <= tol;
  char tile[16];
  std::snprintf(tile, sizeof tile, c.block_m ? "bm=%d" : "bm=auto", c.block_m);
  std::printf("%-26s %s %s D=%-3lld Dv=%-3lld B=%lld Hq=%-2lld Hkv=%-2lld Sq=%-5lld Sk=%-5lld %s %s %-7s rel_err %.2e  %s\n",
              c.name, c.bf16 ? "bf16" : "f16 ", c.causal ? "causal" : "full  ", (long long)c.d, (long long)c.dv,
              (long long)c.batch, (long long)c.hq, (long long)c.hkv, (long long)c.sq, (long long)c.sk,
              c.bshd ? "bshd" : "bhsd", c.out_f32 ? "O f32" : "O 16 ", tile, rel, ok ? "ok" : "FAIL");

  if (speed) {
    const double flops = 4.0 * double(c.d) * Pairs(c) * double(c.batch * c.hq);
    const size_t ws = AttentionFlashWorkspaceBytes(p);
    if (ws) CHECK(cudaMalloc(&buf.workspace, ws));
    const double tc = probe::MedianMs([&] {
      if (int r = RunAttentionTc(p, dev.smem_optin, dev.smem_per_sm, c.block_m, nullptr)) CHECK(cudaError_t(r));
    });
    const double flash = probe::MedianMs([&] {
      if (int r = RunAttentionFlash(p, buf.workspace, nullptr)) CHECK(cudaError_t(r));
    });
    for (auto [name, ms] : {std::pair<const char*, double>{"AttentionTc", tc}, {"AttentionFlash", flash}})
      std::printf("    %-16s %8.3f ms  %6.1f TFLOP/s (median of 20)\n", name, ms, flops / (ms * 1e-3) / 1e12);
  }
  cudaFree(buf.q);
  cudaFree(buf.k);
  cudaFree(buf.v);
  cudaFree(buf.o);
  cudaFree(buf.o_ref);
  if (buf.workspace) cudaFree(buf.workspace);
  return ok;
}

}  // namespace

int main() {
  Device dev;
  int id = 0, major = 0, minor = 0;
  CHECK(cudaGetDevice(&id));
  CHECK(cudaDeviceGetAttribute(&dev.sm_count, cudaDevAttrMultiProcessorCount, id));
  CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, id));
  CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, id));
  CHECK(cudaDeviceGetAttribute(&dev.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, id));
  CHECK(cudaDeviceGetAttribute(&dev.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, id));
  dev.sm = major * 10 + minor;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, id));
  std::printf("device %s (sm_%d%d, %d SMs, %d bytes of opt-in shared memory per block, %d per SM)\n", prop.name, major,
              minor, dev.sm_count, dev.smem_optin, dev.smem_per_sm);
  for (int d : {64, 128, 256})
    std::printf("AttentionTcMaxSk(D = Dv = %d) = %lld\n", d, (long long)AttentionTcMaxSk(d, d, dev.smem_optin));
  const bool quick = std::getenv("KAIO_PROBE_QUICK") && std::atoi(std::getenv("KAIO_PROBE_QUICK")) != 0;
  std::mt19937 gen(1234);
  bool ok = true;

  // The refusal past the cap (-2), before anything runs.
  {
    const int64_t max_sk = AttentionTcMaxSk(128, 128, dev.smem_optin);
    Case c{"past the cap", false, false, false, true, 1, 1, 1, 16, max_sk + 1, 128, 128, 0.f, 0};
    const int r = RunAttentionTc(ParamsOf(c, Buffers{}, dev.sm, dev.sm_count), dev.smem_optin, dev.smem_per_sm, 0,
                                 nullptr);
    std::printf("Sk = %lld (one chunk past the cap for D = 128): RunAttentionTc returned %d  %s\n", (long long)(max_sk + 1),
                r, r == -2 ? "ok" : "FAIL");
    ok = ok && r == -2;
  }

  std::vector<Case> cases;
  // name, bf16, causal, bshd, out_f32, batch, hq, hkv, sq, sk, d, dv, scale, block_m
  for (bool bf16 : {false, true})
    for (bool causal : {false, true})
      for (int bm : {0, 16, 32, 64}) {
        cases.push_back({"s1", bf16, causal, false, true, 2, 3, 3, 1, 1, 64, 64, 0.f, bm});
        cases.push_back({"square 77 bshd", bf16, causal, true, !bf16, 2, 3, 3, 77, 77, 128, 128, 0.f, bm});
        cases.push_back({"sq<sk d!=dv scale", bf16, causal, false, false, 1, 4, 4, 200, 333, 64, 32, 0.3f, bm});
        cases.push_back({"sq>sk (rows see no key)", bf16, causal, true, true, 1, 2, 2, 300, 77, 128, 128, 0.f, bm});
        cases.push_back({"sq1 sk1000", bf16, causal, false, true, 2, 2, 2, 1, 1000, 128, 128, 0.f, bm});
        cases.push_back({"gqa 8/2 d96", bf16, causal, bm % 32 == 0, true, 1, 8, 2, 65, 129, 96, 96, 0.f, bm});
        cases.push_back({"d256 130", bf16, causal, false, !bf16, 1, 2, 2, 130, 130, 256, 256, 0.f, bm});
        cases.push_back({"d20 dv36 element loads", bf16, causal, true, true, 2, 2, 2, 33, 70, 20, 36, 0.f, bm});
        cases.push_back({"sq65 sk1", bf16, causal, false, true, 1, 2, 2, 65, 1, 32, 32, 0.f, bm});
      }
  for (bool causal : {false, true})
    for (int d : {64, 128, 256}) {  // Sk at the cap: the auto choice falls back to 16-row tiles
      const int64_t max_sk = AttentionTcMaxSk(d, d, dev.smem_optin);
      cases.push_back({"sk at the cap", false, causal, false, true, 1, 2, 2, 40, max_sk, d, d, 0.f, 0});
    }
  for (const Case& c : cases) ok = RunCase(c, false, dev, gen) && ok;
  if (!quick) {
    std::printf("speed shapes (O f16; correctness on every 61st query row):\n");
    for (bool causal : {false, true})
      for (int64_t s : {384, 1024})
        ok = RunCase({s == 384 ? "speed 4x32x384x128" : "speed 4x32x1024x128", false, causal, false, false, 4, 32, 32,
                      s, s, 128, 128, 0.f, 0},
                     true, dev, gen) && ok;
  }
  std::printf("%s\n", ok ? "ALL OK" : "SOME CASES FAILED");
  return ok ? 0 : 1;
}
