// Launcher of the MatmulInt8 W8A16 kernels (matmul_int8_kernel.cuh): picks the regime from M.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/smem_opt_in.h"
#include "matmul_tc/matmul_tc_kernel.cuh"
#include "quant_matmul/matmul_int8_kernel.cuh"

namespace kaio {

// matmul_int8_sm90.cu: the GEMM regime's Hopper kernel in MatmulInt8WgmmaSplits(p) K slices (0: it
// does not apply, and RunMatmulInt8Wgmma returns cudaErrorNotSupported); its scratch
// (MatmulInt8WgmmaScratchBytes) holds the slices' f32 sums, or from 1024 rows the dequantised weights.
int64_t MatmulInt8WgmmaSplits(const MatmulInt8Params& p);
int64_t MatmulInt8WgmmaScratchBytes(const MatmulInt8Params& p);
cudaError_t RunMatmulInt8Wgmma(const MatmulInt8Params& p, void* scratch, cudaStream_t stream);

namespace {

// The GEMV dequantises each weight once per 8 rows of A and does one FFMA per weight and row: up
// to 16 rows (two row blocks) it beats the tensor-core kernel's 128-row tiles.
constexpr int64_t kGemvMaxM = 16;

struct GemvPlan {
  int64_t col_blocks = 0, splits = 1, slice = 0;
};

// Column blocks x K slices: about four blocks per SM; a slice is a whole number of the block's
// 64-row rounds (8 warps x 8 rows).
GemvPlan PlanGemv(const MatmulInt8Params& p) {
  GemvPlan g;
  g.col_blocks = (p.n + int8mm::kGemvCols - 1) / int8mm::kGemvCols;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t rounds = (p.k + 63) / 64;
  const int64_t want = std::max<int64_t>(1, std::min<int64_t>((4 * sms + g.col_blocks - 1) / g.col_blocks, rounds));
  g.slice = (rounds + want - 1) / want * 64;
  g.splits = (p.k + g.slice - 1) / g.slice;
  return g;
}

// K slices of the tensor-core kernel: enough 128 x 128 tiles for one per SM, each slice >= 8 K tiles.
int64_t TcSplits(const MatmulInt8Params& p) {
  using namespace matmul_tc;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t tiles = ((p.n + kBlockN - 1) / kBlockN) * ((p.m + kBlockM - 1) / kBlockM);
  const int64_t k_tiles = (p.k + kBlockK - 1) / kBlockK;
  return std::max<int64_t>(1, std::min<int64_t>((sms + tiles - 1) / tiles, k_tiles / 8));
}

// How one launch runs: the GEMV (with its grid) or the tensor-core kernel, its K slices, and whether
// its sums go through the partial buffer and the combine pass (K split, or for the tensor-core
// kernel an output scale or bias, which its epilogue does not apply). One place for the launcher and
// for the scratch size the glue allocates.
struct Int8Plan {
  bool gemv = true;
  GemvPlan g;
  int64_t splits = 1;
  bool partial = false;
  bool wgmma = false;  // sm_90's GEMM (its scratch: MatmulInt8WgmmaScratchBytes)
};

Int8Plan PlanInt8(const MatmulInt8Params& p) {
  Int8Plan pl;
  pl.gemv = p.m <= kGemvMaxM;
  if (pl.gemv) {
    pl.g = PlanGemv(p);
    pl.splits = pl.g.splits;
    pl.partial = pl.splits > 1;
  } else if (const int64_t wgmma_splits = MatmulInt8WgmmaSplits(p)) {  // (no output scale, no bias)
    pl.splits = wgmma_splits;
    pl.partial = wgmma_splits > 1;
    pl.wgmma = true;
  } else {
    pl.splits = TcSplits(p);
    pl.partial = pl.splits > 1 || p.out_scale || p.bias;
  }
  return pl;
}

// 16-byte loads of A, scales and zero points and 8-byte loads of B (else element loads).
bool Vectorized(const MatmulInt8Params& p) {
  return p.k % 8 == 0 && p.n % 8 == 0 && AlignedTo(p.a, 16) && AlignedTo(p.b, 8) && AlignedTo(p.scales, 16) &&
         (!p.zero_points || AlignedTo(p.zero_points, 16));
}

template <typename T, int MR, bool kVec>
cudaError_t LaunchGemv(const MatmulInt8Params& p, const GemvPlan& g, float* partial, cudaStream_t stream) {
  using namespace int8mm;
  const dim3 grid(unsigned(g.col_blocks), unsigned(g.splits), unsigned((p.m + MR - 1) / MR));
  MatmulInt8GemvKernel<T, MR, kVec><<<grid, kGemvThreads, 0, stream>>>(p, partial, g.slice);
  return cudaGetLastError();
}

template <typename T, bool kVec>
cudaError_t LaunchGemvRows(const MatmulInt8Params& p, const GemvPlan& g, float* partial, cudaStream_t stream) {
  if (p.m == 1) return LaunchGemv<T, 1, kVec>(p, g, partial, stream);
  if (p.m <= 4) return LaunchGemv<T, 4, kVec>(p, g, partial, stream);
  return LaunchGemv<T, 8, kVec>(p, g, partial, stream);
}

// Y = the fixed-order sum of `splits` partial results, rounded once.
template <typename T>
cudaError_t Combine(const MatmulInt8Params& p, const float* partial, int64_t splits, cudaStream_t stream) {
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t blocks = std::min<int64_t>((p.m * p.n + 255) / 256, 8 * sms);
  int8mm::MatmulInt8CombineKernel<T><<<unsigned(blocks), 256, 0, stream>>>(p, partial, int(splits));
  return cudaGetLastError();
}

// The decode kernel (M <= 16) over every segment in one launch; KAIO_INT8_DECODE=0 keeps the GEMV
// (side-by-side runs). It needs whole 16-column lane groups and 8-row lane steps (N % 16, K % 8,
// group_size % 8), 16-byte aligned operands, and the segments' scales / zero points alike.
bool DecodeApplies(const MatmulInt8Params* segs, int count) {
  const MatmulInt8Params& p = segs[0];
  if (!EnvSwitch("KAIO_INT8_DECODE", true) || p.m < 1 || p.m > 16 || p.k <= 0 || p.k % 8 != 0) return false;
  if (p.group_size % 8 != 0 || !AlignedTo(p.a, 16)) return false;
  for (int i = 0; i < count; ++i) {
    const MatmulInt8Params& q = segs[i];
    if (q.n % 16 != 0 || !AlignedTo(q.b, 16) || !AlignedTo(q.scales, 16) || !AlignedTo(q.zero_points, 16)) return false;
    if ((q.scales != nullptr) != (p.scales != nullptr) || (q.zero_points != nullptr) != (p.zero_points != nullptr))
      return false;
  }
  return !(p.zero_points && !p.scales);
}

// K slices (sm_90 only: clusters; 8 at most, the portable cluster size; each warp at least one
// 32-row step): about 2 blocks per SM at M <= 8, 1.5 at M = 9..16, whose sums are twice as large.
// Measured with bench/device/int8_decode_probe.cu on an H200 (CUDA-graph replays, cold weights,
// slices capped by KAIO_INT8_SPLITS; 2026-11-27_int8_decode_probe_*.md): slices filling the
// resident-block wave (3 / 2 blocks per SM) lost to fewer: QkvProjectInt8 1 x 4096 -> 4096/1024/1024
// 17.9 us in 8 slices vs 13.3 in 4, 1 x 4096 -> 3 x 4096 26.6 in 4 vs 20.8 in 2, 16 x 4096^2 19.3 in 8
// vs 16.7 in 4; too few lose as well (1x4096x14336 23.6 in 8, 32.0 in 4, 47.0 in 2).
// KAIO_INT8_SPLITS=n caps them (probes).
// p: the first segment (M, K, the device); bt: every segment, `tiles` 128-column blocks in all.
template <typename T, int NT8, int kMode, int W>
cudaError_t LaunchDecodeAs(const MatmulInt8Params& p, const int8mm::Int8Batch& bt, int64_t tiles, cudaStream_t stream) {
  using namespace int8mm;
  constexpr auto kernel = MatmulInt8DecodeKernel<T, NT8, kMode, W>;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t steps = (p.k + kDecStep - 1) / kDecStep;
  const int cap = std::min(kDecMaxSplits, std::max(1, EnvInt("KAIO_INT8_SPLITS", kDecMaxSplits)));
  int splits = 1;
  if (p.sm >= 90) {
    // blocks; 16-warp blocks (one per SM, DecodeSixteenWarps) stay unsplit
    const int64_t target = W == 16 ? sms : NT8 == 1 ? 2 * sms : 3 * sms / 2;
    while (splits < cap && tiles * (splits + 1) <= target && steps >= int64_t(W) * (splits + 1)) ++splits;
  }
  return LaunchKSlices(kernel, unsigned(tiles), splits, 32 * W, stream, bt);
}

// Blocks of 8 warps instead of 4 (M <= 8, sm_90) where the column blocks are many enough that
// 4-warp blocks would take at most 2 K slices (tiles > 2/3 of the SMs): twice the weights in flight
// per block without more slices. H200, int8_decode_probe (2026-11-29_int8_decode_no_cluster_h200.md):
// QkvProjectInt8 1 x 4096 -> 3 x 4096 (96 tiles) 17.75-17.96 vs 20.73 us, 1x14336x4096 (112) 22.96
// vs 23.25; where the tiles are fewer (4096 columns: 32, the Llama widths: 48) 8 warps lost (14.7-15.1
// vs 11.7 us at 1x4096x4096). KAIO_INT8_EIGHT_WARPS=0 keeps 4 (A/B runs).
bool DecodeEightWarps(const MatmulInt8Params& p, int64_t tiles) {
  if (p.m > 8 || p.sm < 90 || !EnvSwitch("KAIO_INT8_EIGHT_WARPS", true)) return false;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  return 3 * tiles > 2 * sms;
}

// Where the 8-warp blocks would apply and the column blocks fit one per SM: blocks of 16 warps, K
// unsplit (no cluster), each 8-warp half taking every other 32-row step. H200, int8_decode_probe
// (2026-11-29_int8_int4_m1_probes_h200.md): QkvProjectInt8 1 x 4096 -> 3 x 4096 (96 tiles) 17.08-17.10
// vs 17.80-17.87 us (8 warps in 2-CTA clusters), 1x14336x4096 (112) 21.04-21.09 vs 23.01-23.10.
// KAIO_INT8_SIXTEEN_WARPS=0 keeps 8 (A/B runs).
bool DecodeSixteenWarps(const MatmulInt8Params& p, int64_t tiles) {
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  return DecodeEightWarps(p, tiles) && tiles <= sms && EnvSwitch("KAIO_INT8_SIXTEEN_WARPS", true);
}

// M <= 8: one token tile (4 warps, or 8 / 16 without zero points where DecodeEightWarps /
// DecodeSixteenWarps); M = 9..16: two.
template <typename T, int kMode>
cudaError_t LaunchDecodeRows(const MatmulInt8Params* segs, int count, cudaStream_t stream) {
  const MatmulInt8Params& p = segs[0];
  int64_t tiles = 0;
  const int8mm::Int8Batch bt = MakeBatch(segs, count, int8mm::kDecCols, &tiles);
  if (tiles > 0x7fffffff) return cudaErrorInvalidConfiguration;
  if (p.m > 8) return LaunchDecodeAs<T, 2, kMode, 4>(p, bt, tiles, stream);
  if constexpr (kMode != int8mm::kDecScaledZp) {  // (with zero points ptxas spills 236-316 bytes at 8 warps)
    if (DecodeSixteenWarps(p, tiles)) return LaunchDecodeAs<T, 1, kMode, 16>(p, bt, tiles, stream);
    if (DecodeEightWarps(p, tiles)) return LaunchDecodeAs<T, 1, kMode, 8>(p, bt, tiles, stream);
  }
  return LaunchDecodeAs<T, 1, kMode, 4>(p, bt, tiles, stream);
}

template <typename T>
cudaError_t LaunchDecode(const MatmulInt8Params* segs, int count, cudaStream_t stream) {
  using namespace int8mm;
  if (!segs[0].scales) return LaunchDecodeRows<T, kDecRaw>(segs, count, stream);
  if (!segs[0].zero_points) return LaunchDecodeRows<T, kDecScaled>(segs, count, stream);
  return LaunchDecodeRows<T, kDecScaledZp>(segs, count, stream);
}

template <typename T>
cudaError_t Launch(const MatmulInt8Params& p, void* scratch, cudaStream_t stream) {
  using namespace int8mm;
  const bool vec = Vectorized(p);
  const Int8Plan pl = PlanInt8(p);
  float* partial = pl.partial ? static_cast<float*>(scratch) : nullptr;
  if (pl.partial && !partial) return cudaErrorInvalidValue;
  cudaError_t err;
  if (pl.gemv) {
    err = vec ? LaunchGemvRows<T, true>(p, pl.g, partial, stream) : LaunchGemvRows<T, false>(p, pl.g, partial, stream);
  } else {
    using namespace matmul_tc;
    static_assert(kMatmulInt8MaxRows == int64_t(65535) * kBlockM, "the glue's row limit is the grid's");
    if (p.m > kMatmulInt8MaxRows) return cudaErrorInvalidConfiguration;  // the glue refuses it first, by name
    // sm_90: TMA + wgmma with the weights dequantised in shared memory (matmul_int8_sm90.cu), its
    // slices summed by its own second kernel. Where it declines, the mma.sync GEMM below takes the
    // same plan (the slices' count and scratch).
    err = pl.wgmma ? RunMatmulInt8Wgmma(p, scratch, stream) : cudaErrorNotSupported;
    if (err != cudaErrorNotSupported) return err;
    MatmulTcParams tp = DenseGemmOf(p);
    tp.k_split = pl.splits;
    tp.partial = partial;
    const dim3 grid(unsigned((p.n + kBlockN - 1) / kBlockN), unsigned((p.m + kBlockM - 1) / kBlockM),
                    unsigned(pl.splits));
    if (vec)
      MatmulTcSyncKernel<T, false, true, Int8Source><<<grid, kThreads, 0, stream>>>(tp, Int8Source{p});
    else
      MatmulTcSyncKernel<T, false, false, Int8Source><<<grid, kThreads, 0, stream>>>(tp, Int8Source{p});
    err = cudaGetLastError();
  }
  if (err != cudaSuccess || !partial) return err;
  return Combine<T>(p, partial, pl.splits, stream);
}

// Launches one segment (the decode kernel or the GEMV / GEMM regimes).
int RunOne(const MatmulInt8Params& p, void* scratch, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.k == 0 && !p.bias) {  // empty sum: Y = 0
    const size_t elem = p.out_f32 ? 4 : 2;
    return cudaMemsetAsync(p.y, 0, static_cast<size_t>(p.m * p.n) * elem, stream);
  }
  if (p.k == 0)  // Y = bias: the GEMV's store with no K rows (one slice, no partial sums)
    return p.bf16 ? LaunchGemvRows<__nv_bfloat16, false>(p, GemvPlan{(p.n + 255) / 256, 1, 0}, nullptr, stream)
                  : LaunchGemvRows<__half, false>(p, GemvPlan{(p.n + 255) / 256, 1, 0}, nullptr, stream);
  if (DecodeApplies(&p, 1))
    return p.bf16 ? LaunchDecode<__nv_bfloat16>(&p, 1, stream) : LaunchDecode<__half>(&p, 1, stream);
  return p.bf16 ? Launch<__nv_bfloat16>(p, scratch, stream) : Launch<__half>(p, scratch, stream);
}

}  // namespace

int64_t MatmulInt8ScratchBytes(const MatmulInt8Params* segs, int count) {
  if (count < 1 || DecodeApplies(segs, count)) return 0;
  int64_t bytes = 0;
  for (int i = 0; i < count; ++i) {
    const MatmulInt8Params& p = segs[i];
    if (p.m == 0 || p.n == 0 || p.k == 0 || DecodeApplies(&p, 1)) continue;
    const Int8Plan pl = PlanInt8(p);
    if (pl.partial) bytes = std::max(bytes, pl.splits * p.m * p.n * int64_t(sizeof(float)));
    if (pl.wgmma) bytes = std::max(bytes, MatmulInt8WgmmaScratchBytes(p));
  }
  return bytes;
}

int RunMatmulInt8(const MatmulInt8Params* segs, int count, void* scratch, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (count < 1 || count > kMaxQuantSegments) return cudaErrorInvalidValue;
  const MatmulInt8Params& p = segs[0];
  bool fused = count > 1 && p.m > 0 && DecodeApplies(segs, count);
  for (int i = 0; i < count; ++i) fused = fused && segs[i].n > 0;
  if (fused)  // one launch over every segment
    return p.bf16 ? LaunchDecode<__nv_bfloat16>(segs, count, stream) : LaunchDecode<__half>(segs, count, stream);
  for (int i = 0; i < count; ++i)  // in turn on one stream: the scratch is reused
    if (int e = RunOne(segs[i], scratch, stream)) return e;
  return cudaSuccess;
}

}  // namespace kaio
