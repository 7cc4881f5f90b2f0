// Standalone check and timing of AttentionFlash's decode path (short queries against a long KV:
// AttentionDecodeKernel + AttentionCombineKernel, attention_decode_kernel.cuh), without ONNX Runtime.
// Checks RunAttentionFlash on random inputs against the plain f32 GPU reference (probe_common.cuh),
// outputs poisoned with NaN first; then times, at the bench's decode shapes (f16 bshd, Sq = 1,
// Sk = 4096, H = 32, D = 128, B = 1 and 16): RunAttentionFlash as shipped, the decode kernel with the
// K/V split forced to 1..64 slices (+ the combine), and two plain reads of the same K/V bytes (one
// warp per 256-byte head row as the decode kernel reads them; one flat coalesced sweep) as the
// device's own ceiling. Timing = probe::GraphLaunchMs (20 launches in a CUDA graph rotating over
// input sets that exceed 2x L2: cold K/V), against the floor of the K/V bytes at the HBM peak
// (KAIO_PROBE_PEAK_TBS, default 3.35 TB/s: H100). KAIO_PROBE_QUICK=1: checks only; KAIO_PROBE_NCU=B:
// two untimed launches at batch B for a profiler.
// Build and run on the GPU machine, from the repository root:
//   nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//     -I ort_ops -o /tmp/attention_decode_probe bench/device/attention_decode_probe.cu \
//     ort_ops/attention/attention_flash_sm90.cu ort_ops/attention/attention_flash_sm80.cu && /tmp/attention_decode_probe
// probe-sources: ort_ops/attention/attention_flash_sm90.cu ort_ops/attention/attention_flash_sm80.cu
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "attention/attention_decode_kernel.cuh"
#include "attention/attention_params.h"
#include "common/sm90.cuh"
#include "probe_common.cuh"

using namespace kaio;
using probe::Bits16;
using probe::Float16;

namespace {

struct Case {
  const char* name;
  bool bf16, causal, bshd;
  int64_t batch, hq, hkv, sq, sk, d;
};

AttentionFlashParams ParamsOf(const Case& c, const void* q, const void* k, const void* v, void* o, float* lse,
                              int sm_count) {
  AttentionFlashParams p;
  p.q = q, p.k = k, p.v = v, p.o = o, p.lse = lse;
  p.in_type = c.bf16 ? AttentionElem::kBF16 : AttentionElem::kF16;
  p.out_f32 = false;
  p.causal = c.causal;
  p.batch = c.batch, p.hq = c.hq, p.hkv = c.hkv, p.sq = c.sq, p.sk = c.sk, p.d = p.dv = c.d;
  p.q_str = probe::StridesOf(c.bshd, c.hq, c.sq, c.d);
  p.k_str = p.v_str = probe::StridesOf(c.bshd, c.hkv, c.sk, c.d);
  p.o_str = probe::StridesOf(c.bshd, c.hq, c.sq, c.d);
  p.scale = 1.f / std::sqrt(float(c.d));
  p.sm = 90;
  p.sm_count = sm_count;
  return p;
}

__global__ void FillNormal(uint16_t* dst, int64_t n, uint64_t seed, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    // Sum of 4 uniforms: roughly normal, mean 0, variance 1/3 * 4 / 4 (enough for a check).
    float s = 0.f;
    for (int j = 0; j < 4; ++j) s += float(probe::Hash(seed * 0x9E3779B97F4A7C15ull + uint64_t(i) * 4 + j)) * 2.3283064e-10f;
    dst[i] = Bits16(1.7f * (s - 2.f), bf16);
  }
}

// Correctness of RunAttentionFlash on one decode-shaped case (every query row checked).
bool Check(const Case& c, int sm_count) {
  const int64_t qn = c.batch * c.hq * c.sq * c.d, kvn = c.batch * c.hkv * c.sk * c.d, rows = c.batch * c.hq * c.sq;
  uint16_t *q, *k, *v, *o;
  float *lse, *o_ref, *lse_ref;
  CHECK(cudaMalloc(&q, qn * 2));
  CHECK(cudaMalloc(&k, kvn * 2));
  CHECK(cudaMalloc(&v, kvn * 2));
  CHECK(cudaMalloc(&o, qn * 2));
  CHECK(cudaMalloc(&lse, rows * 4));
  CHECK(cudaMalloc(&o_ref, qn * 4));
  CHECK(cudaMalloc(&lse_ref, rows * 4));
  static uint64_t seed = 1;
  FillNormal<<<512, 256>>>(q, qn, seed++, c.bf16);
  FillNormal<<<512, 256>>>(k, kvn, seed++, c.bf16);
  FillNormal<<<512, 256>>>(v, kvn, seed++, c.bf16);
  CHECK(cudaMemset(o, 0xFF, qn * 2));
  CHECK(cudaMemset(lse, 0xFF, rows * 4));
  const AttentionFlashParams p = ParamsOf(c, q, k, v, o, lse, sm_count);
  void* ws = nullptr;
  if (size_t b = AttentionFlashWorkspaceBytes(p)) CHECK(cudaMalloc(&ws, b));
  CHECK(cudaError_t(RunAttentionFlash(p, ws, nullptr)));
  CHECK(cudaDeviceSynchronize());
  probe::RunAttentionReference(p, c.bf16, 1, o_ref, lse_ref);
  std::vector<uint16_t> ho(qn);
  std::vector<float> hr(qn), hl(rows), hlr(rows);
  CHECK(cudaMemcpy(ho.data(), o, qn * 2, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hr.data(), o_ref, qn * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hl.data(), lse, rows * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hlr.data(), lse_ref, rows * 4, cudaMemcpyDeviceToHost));
  double num = 0, den = 0, lse_err = 0;
  bool finite = true;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.sq; ++i) {
        const int64_t row = (b * c.hq + h) * c.sq + i;
        for (int64_t col = 0; col < c.d; ++col) {
          const float got = Float16(ho[b * p.o_str.batch + h * p.o_str.head + i * p.o_str.row + col], c.bf16);
          const double want = hr[row * c.d + col], diff = double(got) - want;
          finite = finite && std::isfinite(got);
          num += diff * diff, den += want * want;
        }
        if (std::isinf(hlr[row])) finite = finite && hl[row] == hlr[row];
        else lse_err = std::max(lse_err, double(std::fabs(hl[row] - hlr[row])));
      }
  const double rel = std::sqrt(num / std::max(den, 1e-30));
  const bool ok = finite && rel <= (c.bf16 ? 1e-2 : 5e-3) && lse_err <= 1e-3;
  std::printf("%-5s %-22s %s %s B=%lld Hq=%lld Hkv=%lld Sq=%lld Sk=%lld D=%lld %s rel %.2e lse %.1e splits-ws %zu\n",
              ok ? "ok" : "FAIL", c.name, c.bf16 ? "bf16" : "f16", c.causal ? "causal" : "full", (long long)c.batch,
              (long long)c.hq, (long long)c.hkv, (long long)c.sq, (long long)c.sk, (long long)c.d,
              c.bshd ? "bshd" : "bhsd", rel, lse_err, AttentionFlashWorkspaceBytes(p));
  for (void* ptr : {(void*)q, (void*)k, (void*)v, (void*)o, (void*)lse, (void*)o_ref, (void*)lse_ref, ws}) cudaFree(ptr);
  return ok;
}

// The decode kernel's read pattern without its math: warp w of a block reads whole 16-key chunks
// of one head (256-byte rows at the KV row stride), summed so the loads stay.
__global__ void __launch_bounds__(128) HeadRowRead(const uint4* k, const uint4* v, int64_t sk, int64_t row_vecs,
                                                   int splits, float* sink) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t h = blockIdx.y, s = blockIdx.x, b = blockIdx.z;
  const int64_t per = (sk + splits - 1) / splits, k0 = s * per, k1 = min(sk, k0 + per);
  const int64_t base = b * sk * row_vecs + h * 16;  // 16 uint4 = 128 halves per head row
  uint32_t acc = 0;
  for (int64_t key = k0 + warp * 2 + (lane >> 4); key < k1; key += 8) {
    const uint4 a = __ldg(k + base + key * row_vecs + (lane & 15));
    const uint4 c = __ldg(v + base + key * row_vecs + (lane & 15));
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ c.x ^ c.y ^ c.z ^ c.w;
  }
  if (acc == 0x12345678u) sink[0] = 1.f;
}

// The decode kernel's loads without its math: each warp streams 16-key chunks of K and V rows
// (D = 128) of its block's head through its own 3-stage ring in shared memory (the kernel's shared
// memory, so the same 2 blocks per SM); the 4 warps take the slice's chunks in turn (the decode
// kernel's split). How a chunk is copied: kMode 0: 16-byte cp.async (the kernel's); 1: the same
// with an L2::256B prefetch hint; 2: one 256-byte cp.async.bulk per row (TMA engine), completion
// on an mbarrier per stage.
template <int kMode>
__global__ void __launch_bounds__(128) RingRead(const uint16_t* k, const uint16_t* v, int64_t sk, int64_t row_stride,
                                                int64_t batch_stride, int splits, float* sink) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ uint64_t bars[4][3];
  constexpr int kLd = 136, kChunkElems = 16 * kLd, kStages = 3;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, head = blockIdx.y;
  const int64_t chunks = (sk + 15) / 16, per = (chunks + splits - 1) / splits;
  const int64_t c0 = min(chunks, int64_t(blockIdx.x) * per), c1 = min(chunks, c0 + per);
  const int64_t first = c0 + warp;
  const int64_t mine = first < c1 ? (c1 - first + 3) / 4 : 0;
  uint16_t* kr = reinterpret_cast<uint16_t*>(smem) + warp * 2 * kStages * kChunkElems;
  uint16_t* vr = kr + kStages * kChunkElems;
  const uint16_t* kb = k + b * batch_stride + head * 128;
  const uint16_t* vb = v + b * batch_stride + head * 128;
  if (kMode == 2) {
    if (lane == 0)
      for (int st = 0; st < kStages; ++st) sm90::MbarInit(&bars[warp][st], 1);
    sm90::FenceBarrierInit();
    __syncwarp();
  }
  auto load = [&](int64_t j) {
    if (j < mine) {
      const int64_t key0 = (first + j * 4) * 16;
      const int slot = int(j % kStages);
      if constexpr (kMode == 2) {
        const int keys = int(sk - key0 < 16 ? sk - key0 : 16);
        if (lane == 0) sm90::MbarArriveExpectTx(&bars[warp][slot], uint32_t(keys) * 512u);
        __syncwarp();
        const int r = lane & 15;
        uint16_t* dst = (lane < 16 ? kr : vr) + slot * kChunkElems + r * kLd;
        const uint16_t* src = (lane < 16 ? kb : vb) + (key0 + r) * row_stride;
        if (r < keys)
          asm volatile(
              "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 256, [%2];\n" ::"r"(
                  ptx::SmemAddr(dst)),
              "l"(src), "r"(ptx::SmemAddr(&bars[warp][slot]))
              : "memory");
      } else {
#pragma unroll
        for (int it = 0; it < 8; ++it) {
          const int u = lane + 32 * it, r = u / 16, col = (u % 16) * 8;
          const int64_t key = key0 + r;
          const bool in = key < sk;
          uint16_t* kd = kr + slot * kChunkElems + r * kLd + col;
          uint16_t* vd = vr + slot * kChunkElems + r * kLd + col;
          const uint16_t* ks = in ? kb + key * row_stride + col : k;
          const uint16_t* vs = in ? vb + key * row_stride + col : v;
          if constexpr (kMode == 1) {
            asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(ptx::SmemAddr(kd)), "l"(ks),
                         "r"(in ? 16 : 0));
            asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(ptx::SmemAddr(vd)), "l"(vs),
                         "r"(in ? 16 : 0));
          } else {
            ptx::CpAsync16(kd, ks, in);
            ptx::CpAsync16(vd, vs, in);
          }
        }
      }
    }
    if constexpr (kMode != 2) ptx::CpAsyncCommit();
  };
  for (int j = 0; j < kStages - 1; ++j) load(j);
  uint32_t acc = 0;
  for (int64_t j = 0; j < mine; ++j) {
    load(j + kStages - 1);
    if constexpr (kMode == 2) sm90::MbarWait(&bars[warp][j % kStages], uint32_t((j / kStages) & 1));
    else ptx::CpAsyncWait<kStages - 1>();
    __syncwarp();
    acc ^= reinterpret_cast<const uint32_t*>(kr + (j % kStages) * kChunkElems)[lane] ^
           reinterpret_cast<const uint32_t*>(vr + (j % kStages) * kChunkElems)[lane];
    __syncwarp();
  }
  if constexpr (kMode != 2) ptx::CpAsyncWait<0>();
  if (acc == 0x12345678u) sink[0] = 1.f;
}
constexpr int kRingReadSmem = 4 * 2 * 3 * 16 * 136 * 2;

__global__ void __launch_bounds__(256) FlatRead(const uint4* k, const uint4* v, int64_t n, float* sink) {
  uint32_t acc = 0;
  for (int64_t i = blockIdx.x * 256 + threadIdx.x; i < n; i += int64_t(gridDim.x) * 256) {
    const uint4 a = __ldg(k + i), c = __ldg(v + i);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ c.x ^ c.y ^ c.z ^ c.w;
  }
  if (acc == 0x12345678u) sink[0] = 1.f;
}

// Timings at one bench shape (f16 bshd, Sq = 1, D = 128). ncu_only: two plain launches of
// RunAttentionFlash (for a profiler: skip the first), nothing timed.
void Time(int64_t batch, int sm_count, double peak_tbs, bool ncu_only = false) {
  const Case c{"speed", false, false, true, batch, 32, 32, 1, 4096, 128};
  const int64_t qn = c.batch * c.hq * c.d, kvn = c.batch * c.hkv * c.sk * c.d, rows = c.batch * c.hq;
  const int64_t kv_bytes = 2 * kvn * 2;
  const int sets = int(std::max<int64_t>(1, (int64_t(200) << 20) / kv_bytes + 1));
  std::vector<uint16_t*> ks(sets), vs(sets);
  uint16_t *q, *o;
  float *sink, *ws;
  CHECK(cudaMalloc(&q, qn * 2));
  CHECK(cudaMalloc(&o, qn * 2));
  CHECK(cudaMalloc(&sink, 4));
  CHECK(cudaMalloc(&ws, size_t(64) * rows * (c.d + 1) * 4));
  FillNormal<<<512, 256>>>(q, qn, 99, false);
  for (int s = 0; s < sets; ++s) {
    CHECK(cudaMalloc(&ks[s], kvn * 2));
    CHECK(cudaMalloc(&vs[s], kvn * 2));
    FillNormal<<<1024, 256>>>(ks[s], kvn, 100 + 2 * s, false);
    FillNormal<<<1024, 256>>>(vs[s], kvn, 101 + 2 * s, false);
  }
  CHECK(cudaDeviceSynchronize());
  AttentionFlashParams p = ParamsOf(c, q, ks[0], vs[0], o, nullptr, sm_count);
  const size_t ws_bytes = AttentionFlashWorkspaceBytes(p);
  const double floor_us = double(kv_bytes) / (peak_tbs * 1e6);
  if (ncu_only) {
    for (int r = 0; r < 2; ++r) CHECK(cudaError_t(RunAttentionFlash(p, ws, nullptr)));
    CHECK(cudaDeviceSynchronize());
    return;
  }
  auto report = [&](const char* what, double ms) {
    std::printf("  B=%-2lld %-34s %8.2f us  %5.2f TB/s  %.2fx floor (%.2f us), sets %d\n", (long long)batch, what,
                1e3 * ms, double(kv_bytes) / (ms * 1e9), 1e3 * ms / floor_us, floor_us, sets);
  };
  report(ws_bytes ? "RunAttentionFlash (split + combine)" : "RunAttentionFlash (one pass)",
         probe::GraphLaunchMs([&](cudaStream_t st, int r) {
           p.k = ks[r % sets], p.v = vs[r % sets];
           CHECK(cudaError_t(RunAttentionFlash(p, ws, st)));
         }));
  using Tl = attention_flash::DecodeTiles<128>;
  constexpr auto kernel = attention_flash::AttentionDecodeKernel<__half, 128>;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tl::kSmemBytes));
  for (int splits : {1, 2, 4, 8, 16}) {
    attention_flash::SplitKv split;
    split.splits = splits;
    split.o = ws;
    split.lse = ws + size_t(splits) * rows * c.d;
    char what[64];
    std::snprintf(what, sizeof what, "decode kernel, %d slices (+combine)", splits);
    report(what, probe::GraphLaunchMs([&](cudaStream_t st, int r) {
             p.k = ks[r % sets], p.v = vs[r % sets];
             kernel<<<dim3(splits, unsigned(c.hkv), unsigned(c.batch)), attention_flash::kThreads, Tl::kSmemBytes, st>>>(
                 p, split);
             if (splits > 1)
               attention_flash::AttentionCombineKernel<__half>
                   <<<unsigned((rows * ((c.d + 31) / 32) * 32 + attention_flash::kCombineThreads - 1) /
                               attention_flash::kCombineThreads),
                      attention_flash::kCombineThreads, 0, st>>>(p, split);  // (as attention_flash_sm80.cu's)
           }));
  }
  for (int splits : {8, 16, 32}) {
    char what[64];
    std::snprintf(what, sizeof what, "head-row read, %d slices", splits);
    report(what, probe::GraphLaunchMs([&](cudaStream_t st, int r) {
             HeadRowRead<<<dim3(splits, unsigned(c.hkv), unsigned(c.batch)), 128, 0, st>>>(
                 reinterpret_cast<const uint4*>(ks[r % sets]), reinterpret_cast<const uint4*>(vs[r % sets]), c.sk,
                 c.hkv * c.d / 8, splits, sink);
           }));
  }
  CHECK(cudaFuncSetAttribute(RingRead<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, kRingReadSmem));
  CHECK(cudaFuncSetAttribute(RingRead<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, kRingReadSmem));
  CHECK(cudaFuncSetAttribute(RingRead<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, kRingReadSmem));
  for (int mode : {0, 1, 2})
    for (int splits : {1, 2, 4, 8, 16}) {
      const int64_t blocks = splits * c.hkv * c.batch;
      if (blocks < 128 || blocks > 4096) continue;
      char what[64];
      std::snprintf(what, sizeof what, "ring read (%s), %d slices",
                    mode == 0 ? "cp.async" : mode == 1 ? "cp.async L2::256B" : "bulk", splits);
      report(what, probe::GraphLaunchMs([&](cudaStream_t st, int r) {
               const dim3 grid(splits, unsigned(c.hkv), unsigned(c.batch));
               const int64_t rs = c.hkv * c.d, bs = c.sk * rs;
               auto kernel = mode == 0 ? RingRead<0> : mode == 1 ? RingRead<1> : RingRead<2>;
               kernel<<<grid, 128, kRingReadSmem, st>>>(ks[r % sets], vs[r % sets], c.sk, rs, bs, splits, sink);
             }));
    }
  report("flat coalesced read", probe::GraphLaunchMs([&](cudaStream_t st, int r) {
           FlatRead<<<sm_count * 8, 256, 0, st>>>(reinterpret_cast<const uint4*>(ks[r % sets]),
                                                  reinterpret_cast<const uint4*>(vs[r % sets]), kvn / 8, sink);
         }));
  CHECK(cudaGetLastError());
  for (int s = 0; s < sets; ++s) cudaFree(ks[s]), cudaFree(vs[s]);
  cudaFree(q), cudaFree(o), cudaFree(sink), cudaFree(ws);
}

}  // namespace

int main() {
  int dev = 0, sm_count = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, sm_count);
  const char* peak_env = std::getenv("KAIO_PROBE_PEAK_TBS");
  if (const char* ncu = std::getenv("KAIO_PROBE_NCU")) {  // batch to profile: no checks, no timing
    Time(std::atoi(ncu), sm_count, 1.0, true);
    return 0;
  }
  const double peak = peak_env ? std::atof(peak_env) : 3.35;
  bool ok = true;
  // name, bf16, causal, bshd, batch, hq, hkv, sq, sk, d
  const Case cases[] = {
      {"mha sq1", false, false, true, 1, 32, 32, 1, 4096, 128},
      {"mha sq1 odd sk", false, false, true, 2, 8, 8, 1, 1000, 128},
      {"mha sq1 short sk", true, false, false, 3, 4, 4, 1, 37, 128},
      {"gqa 32/8 sq2 causal", false, true, true, 1, 32, 8, 2, 777, 128},
      {"gqa 8/2 sq4 causal bf16", true, true, false, 2, 8, 2, 4, 3001, 64},
      {"mqa 16/1 sq1", false, false, true, 1, 16, 1, 1, 5000, 64},
      {"sq1 sk1", false, true, true, 2, 4, 4, 1, 1, 128},
      {"d96 sq3", true, false, true, 1, 4, 4, 3, 513, 96},
      {"d32 gqa 8/2 sq2 causal", false, true, true, 2, 8, 2, 2, 1037, 32},
      {"d256 sq1 causal", false, true, false, 1, 4, 4, 1, 2049, 256},
      {"d256 gqa 4/1 sq4", true, false, true, 1, 4, 1, 4, 300, 256},
  };
  for (const Case& c : cases) ok = Check(c, sm_count) && ok;
  const char* quick = std::getenv("KAIO_PROBE_QUICK");
  if (!(quick && std::atoi(quick))) {
    std::printf("timing (f16 bshd, Sq=1, Sk=4096, H=32, D=128; floor = K+V bytes at %.2f TB/s):\n", peak);
    Time(1, sm_count, peak);
    Time(16, sm_count, peak);
  }
  std::printf("%s\n", ok ? "ALL OK" : "SOME CASES FAILED");
  return ok ? 0 : 1;
}
