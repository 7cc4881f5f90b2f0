// Standalone check and timing of MatmulInt4's decode regime (M <= 16) through RunMatmulInt4, without
// ONNX Runtime. Inputs are integer-valued (A in [-2, 2], codes in [-8, 7], zero points in [-2, 2],
// bias in [-3, 3]) with power-of-two scales, so every product and every f32 partial sum is exact
// (|sum| < 2^21 in steps of 2^-3 at K = 14336): the output must equal a float64 GPU reference rounded
// once to Y's type, bit for bit, whatever the summation order. Y is poisoned with NaN first.
// Timing: 20 launches rotating over weight sets whose total exceeds 2x a 50 MB L2 (so each run reads
// its weights cold) captured into a CUDA graph, per-launch time of the replays (median of 9). Single
// launches timed with events measured ~10 us of launch overhead on the H200, not the kernels. Floor = weight + scale (+ zero point)
// bytes at the HBM peak (H200 4.8 TB/s, H100 3.35; KAIO_PROBE_PEAK_TBS overrides).
// KAIO_INT4_DECODE=0 selects the older decode kernels (read at each launch): run the binary twice
// for old vs new; KAIO_PROBE_QUICK=1 skips the timed shapes, KAIO_PROBE_TIMED=substring times only those.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//     -I ort_ops -o /tmp/int4_decode_probe bench/device/int4_decode_probe.cu \
//     ort_ops/quant_matmul/matmul_int4_sm80.cu ort_ops/quant_matmul/matmul_int4_sm90.cu && \
//   KAIO_INT4_DECODE=0 /tmp/int4_decode_probe && /tmp/int4_decode_probe
// probe-sources: ort_ops/quant_matmul/matmul_int4_sm80.cu ort_ops/quant_matmul/matmul_int4_sm90.cu ort_ops/matmul_tc/matmul_tc_sm80.cu ort_ops/matmul_tc/matmul_tc_sm90.cu ort_ops/common/stream_counters.cu
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "probe_common.cuh"  // CHECK
#include "quant_matmul/quant_matmul_params.h"

using namespace kaio;

namespace {

using probe::Bits16;
using probe::Float16;
using probe::Hash;

// kind 0: random u32 words (codes); 1: A / zero points, ints in [-lo, lo]; 2: scales 2^-(0..3).
__global__ void FillKernel(void* dst, int64_t count, int kind, int lo, uint64_t seed, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t h = Hash(seed * 0x9E3779B97F4A7C15ull + uint64_t(i));
    if (kind == 0) {
      static_cast<uint32_t*>(dst)[i] = h;
    } else if (kind == 1) {
      static_cast<uint16_t*>(dst)[i] = Bits16(float(int(h % uint32_t(2 * lo + 1)) - lo), bf16);
    } else {
      static_cast<uint16_t*>(dst)[i] = Bits16(1.f / float(1 << (h % 4)), bf16);
    }
  }
}

// Y[m, n] in float64, rounded once to Y's type (as float bits in `ref`).
__global__ void ReferenceKernel(MatmulInt4Params p, float* ref) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, m = blockIdx.y;
  if (n >= p.n) return;
  const uint16_t* a = static_cast<const uint16_t*>(p.a);
  const uint16_t* sc = static_cast<const uint16_t*>(p.scales);
  const uint16_t* zp = static_cast<const uint16_t*>(p.zero_points);
  double sum = 0;
  for (int64_t k = 0; k < p.k; ++k) {
    const uint32_t word = p.b[n * (p.k / 8) + k / 8];
    const int q = int(int32_t(word << (28 - 4 * (k % 8))) >> 28);  // signed nibble k % 8
    const int64_t gi = (k / p.group_size) * p.n + n;
    const double w = (double(q) - (zp ? double(Float16(zp[gi], p.bf16)) : 0.0)) * double(Float16(sc[gi], p.bf16));
    sum += double(Float16(a[m * p.k + k], p.bf16)) * w;
  }
  if (p.bias) sum += double(Float16(static_cast<const uint16_t*>(p.bias)[n], p.bf16));
  const float f = float(sum);
  ref[m * p.n + n] = p.out_f32 ? f : Float16(Bits16(f, p.bf16), p.bf16);
}

void Fill(void* dst, int64_t count, int kind, int lo, uint64_t seed, bool bf16) {
  FillKernel<<<1024, 256>>>(dst, count, kind, lo, seed, bf16);
  CHECK(cudaGetLastError());
}

struct Case {
  int m;
  int64_t n, k;
  int group;
  bool zp, bf16, out_f32, bias;
  bool timed;
  std::vector<int64_t> extra_n;  // further segments (QkvProjectInt4's batch), same A
};

double g_peak_tbs = 4.8;
int g_fail = 0;

std::string Name(const Case& c) {
  char buf[160];
  std::string ns = std::to_string(c.n);
  for (int64_t e : c.extra_n) ns += "+" + std::to_string(e);
  std::snprintf(buf, sizeof buf, "%2dx%sx%lld g%-3d %s %s %s%s", c.m, ns.c_str(), (long long)c.k, c.group,
                c.bf16 ? "bf16" : "f16 ", c.zp ? "zp  " : "nozp", c.out_f32 ? "y=f32" : "y=16b", c.bias ? " bias" : "");
  return buf;
}

void RunCase(const Case& c, bool quick) {
  const int nseg = 1 + int(c.extra_n.size());
  std::vector<int64_t> ns = {c.n};
  ns.insert(ns.end(), c.extra_n.begin(), c.extra_n.end());
  // Bytes a run must read from memory (the floor's numerator): codes, scales, zero points.
  int64_t wbytes = 0;
  for (int64_t n : ns) wbytes += n * c.k / 2 + (c.zp ? 2 : 1) * n * (c.k / c.group) * 2;
  const int sets = c.timed && !quick ? int(std::max<int64_t>(2, (int64_t(120) << 20) / wbytes + 1)) : 1;

  uint16_t* a = nullptr;
  CHECK(cudaMalloc(&a, size_t(c.m * c.k * 2 + 16)));
  Fill(a, c.m * c.k, 1, 2, 1, c.bf16);
  struct Seg {
    std::vector<uint32_t*> b;
    std::vector<uint16_t*> s, z;
    uint16_t* bias = nullptr;
    void* y = nullptr;
    float* ref = nullptr;
  };
  std::vector<Seg> seg(nseg);
  for (int i = 0; i < nseg; ++i) {
    const int64_t n = ns[i], groups = c.k / c.group;
    for (int st = 0; st < sets; ++st) {
      uint32_t* b;
      uint16_t *s, *z = nullptr;
      CHECK(cudaMalloc(&b, size_t(n * c.k / 2)));
      CHECK(cudaMalloc(&s, size_t(groups * n * 2)));
      Fill(b, n * c.k / 8, 0, 0, 100 + 10 * i + st * 1000, c.bf16);
      Fill(s, groups * n, 2, 0, 200 + 10 * i + st * 1000, c.bf16);
      if (c.zp) {
        CHECK(cudaMalloc(&z, size_t(groups * n * 2)));
        Fill(z, groups * n, 1, 2, 300 + 10 * i + st * 1000, c.bf16);
      }
      seg[i].b.push_back(b), seg[i].s.push_back(s), seg[i].z.push_back(z);
    }
    if (c.bias) {
      CHECK(cudaMalloc(&seg[i].bias, size_t(n * 2)));
      Fill(seg[i].bias, n, 1, 3, 400 + i, c.bf16);
    }
    CHECK(cudaMalloc(&seg[i].y, size_t(c.m * n * 4)));
    CHECK(cudaMalloc(&seg[i].ref, size_t(c.m * n * 4)));
  }
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  auto params = [&](int st, MatmulInt4Params* ps) {
    for (int i = 0; i < nseg; ++i) {
      MatmulInt4Params& p = ps[i];
      p = MatmulInt4Params{};
      p.a = a, p.b = seg[i].b[st], p.scales = seg[i].s[st], p.zero_points = seg[i].z[st], p.bias = seg[i].bias;
      p.y = seg[i].y, p.bf16 = c.bf16, p.out_f32 = c.out_f32, p.m = c.m, p.n = ns[i], p.k = c.k;
      p.group_size = c.group, p.sm = prop.major * 10 + prop.minor, p.sm_count = prop.multiProcessorCount;
    }
  };
  MatmulInt4Params ps[kMaxQuantSegments];
  params(0, ps);
  // Scratch of the Hopper GEMM's regimes (none at the decode kernels' M <= 16).
  void* scratch = nullptr;
  const int64_t scratch_bytes = MatmulInt4ScratchBytes(ps, nseg);
  if (scratch_bytes > 0) CHECK(cudaMalloc(&scratch, size_t(scratch_bytes)));
  const bool ok = probe::CheckDecodeCase(
      Name(c), ps, nseg, [&](cudaStream_t st) { return RunMatmulInt4(ps, nseg, scratch, st); },
      [&](int i) {
        ReferenceKernel<<<dim3(unsigned((ns[i] + 127) / 128), unsigned(c.m)), 128>>>(ps[i], seg[i].ref);
        return seg[i].ref;
      },
      c.timed && !quick, sets, [&](int set) { params(set, ps); }, wbytes, g_peak_tbs);
  if (!ok) ++g_fail;
  CHECK(cudaFree(a));
  CHECK(cudaFree(scratch));
  for (auto& s : seg) {
    for (auto* p : s.b) CHECK(cudaFree(p));
    for (auto* p : s.s) CHECK(cudaFree(p));
    for (auto* p : s.z) CHECK(cudaFree(p));
    CHECK(cudaFree(s.bias));
    CHECK(cudaFree(s.y));
    CHECK(cudaFree(s.ref));
  }
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  g_peak_tbs = std::strstr(prop.name, "H200") ? 4.8 : 3.35;
  if (const char* v = std::getenv("KAIO_PROBE_PEAK_TBS")) g_peak_tbs = std::atof(v);
  const char* mode = std::getenv("KAIO_INT4_DECODE");
  const bool quick = std::getenv("KAIO_PROBE_QUICK") && std::strcmp(std::getenv("KAIO_PROBE_QUICK"), "1") == 0;
  std::printf("int4_decode_probe on %s (%d SMs), peak %.2f TB/s, KAIO_INT4_DECODE=%s (%s kernels)\n", prop.name,
              prop.multiProcessorCount, g_peak_tbs, mode ? mode : "unset",
              mode && std::strcmp(mode, "0") == 0 ? "old" : "split decode");
  std::vector<Case> cases;
  // Timed: the issue's shapes (MxNxK), f16, group 128, no zero points, f32 Y; M = 2, 4, 8 at 4096^2.
  const int64_t speed[][3] = {{1, 4096, 4096},  {1, 14336, 4096}, {1, 4096, 14336}, {2, 4096, 4096},
                              {4, 4096, 4096},  {8, 4096, 4096},  {16, 4096, 4096}, {16, 14336, 4096},
                              {16, 4096, 14336}};
  for (auto& s : speed) cases.push_back({int(s[0]), s[1], s[2], 128, false, false, true, false, true, {}});
  // Timed variants at 1x and 16x 4096^2 and 1x14336x4096: groups 32 / 64, zero points, bf16.
  for (int m : {1, 16})
    for (int64_t n : {int64_t(4096), int64_t(14336)}) {
      for (int g : {32, 64}) cases.push_back({m, n, 4096, g, false, false, true, false, true, {}});
      cases.push_back({m, n, 4096, 128, true, false, true, false, true, {}});
      cases.push_back({m, n, 4096, 128, false, true, true, false, true, {}});
      cases.push_back({m, n, 4096, 32, true, true, true, false, true, {}});
    }
  // QkvProjectInt4's three segments (Llama 8B GQA: 4096 + 1024 + 1024 columns), timed.
  cases.push_back({1, 4096, 4096, 128, false, false, true, false, true, {1024, 1024}});
  cases.push_back({16, 4096, 4096, 128, false, false, true, false, true, {1024, 1024}});
  // ... and a square layer's (3 x 4096 columns), timed.
  cases.push_back({1, 4096, 4096, 128, false, false, true, false, true, {4096, 4096}});
  cases.push_back({16, 4096, 4096, 128, false, false, true, false, true, {4096, 4096}});
  // Edges, every M = 1..16: N not a multiple of 16 / 32 (4104, 4099, 1), K not a multiple of 128
  // (4160 = 130 x 32 with group 32, 4160 with group 64, 96 < one chunk), short K (32).
  for (int m = 1; m <= 16; ++m) {
    cases.push_back({m, 4104, 4096, 128, m % 2 == 0, m % 3 == 0, m % 4 != 0, m % 5 == 0, false, {}});
    cases.push_back({m, 4099, 4160, 32, m % 2 == 1, m % 3 == 1, true, m % 4 == 0, false, {}});
    cases.push_back({m, 13, 4160, 64, true, m % 2 == 0, m % 3 != 0, true, false, {}});
    cases.push_back({m, 1, 96, 32, m % 2 == 0, m % 2 == 1, false, false, false, {}});
  }
  // M = 1 on MatmulInt4OneRowTilesKernel (sm_90: 2-3 blocks of 32 columns per SM): K not a multiple of
  // the 4-chunk step, every group size, zero points, bf16, N not a multiple of 32, three segments.
  cases.push_back({1, 9000, 4224, 128, true, true, false, true, false, {}});
  cases.push_back({1, 9000, 4160, 32, false, false, true, false, false, {}});
  cases.push_back({1, 10000, 4160, 64, true, false, false, true, false, {}});
  cases.push_back({1, 4104, 4224, 128, false, true, false, true, false, {4099, 2056}});
  // Long K with few columns (most K slices), group 64 with zero points, bf16, 16-bit Y.
  cases.push_back({1, 24, 14336, 64, true, true, false, true, false, {}});
  cases.push_back({12, 40, 11008, 128, true, false, true, false, false, {}});
  cases.push_back({3, 1000, 32, 32, true, false, true, true, false, {}});
  cases.push_back({9, 200, 128, 128, true, true, false, true, false, {3, 8}});
  // KAIO_PROBE_TIMED=substring: time only the timed cases whose name contains it (the rest still checked).
  const char* only = std::getenv("KAIO_PROBE_TIMED");
  for (Case c : cases) {
    if (only && c.timed && Name(c).find(only) == std::string::npos) c.timed = false;
    RunCase(c, quick);
  }
  std::printf("%s: %d of %zu cases failed\n", g_fail ? "FAIL" : "ok", g_fail, cases.size());
  return g_fail ? 1 : 0;
}
