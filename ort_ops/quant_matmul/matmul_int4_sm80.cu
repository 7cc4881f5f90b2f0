// Launcher of the MatmulInt4 kernels (matmul_int4_kernel.cuh): picks the regime from M.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/smem_opt_in.h"
#include "quant_matmul/matmul_int4_kernel.cuh"

namespace kaio {

// matmul_int4_sm90.cu: the GEMM regime's Hopper kernel, in K slices where its tiles alone leave SMs
// idle, or from 1024 rows on the weights dequantised first; `scratch` (MatmulInt4WgmmaScratchBytes)
// holds the slices' f32 sums or those weights. cudaErrorNotSupported where it does not apply.
int64_t MatmulInt4WgmmaScratchBytes(const MatmulInt4Params& p);
cudaError_t RunMatmulInt4Wgmma(const MatmulInt4Params& p, void* scratch, cudaStream_t stream);
int64_t MatmulInt4WgmmaSplits(const MatmulInt4Params& p);  // 0: the Hopper GEMM does not take p

namespace {

// Shared memory per block (opt-in) and per SM by compute capability.
void SmemLimits(int sm, int* per_block, int* per_sm) {
  if (sm == 90 || sm == 100 || sm == 103) {
    *per_block = kSm90SmemPerBlock, *per_sm = 233472;  // 227 / 228 KB
  } else if (sm == 80 || sm == 87) {
    *per_block = 166912, *per_sm = 167936;  // 163 / 164 KB
  } else {
    *per_block = 101376, *per_sm = 102400;  // 99 / 100 KB (sm_86, sm_89, sm_120)
  }
}

// The FMA GEMV for M <= MR rows (A staged as float, (4 MR + 0.5) K bytes of dynamic shared memory).
// Returns false when that does not fit (the mma GEMV takes over).
template <typename T, int MR, bool kZp>
bool LaunchFma(const MatmulInt4Params& p, cudaStream_t stream, cudaError_t* err) {
  using namespace int4mm;
  const int64_t smem = (p.k / 32) * FmaPieceBytes<MR>();
  int smem_max = 0, sm_smem = 0;
  SmemLimits(p.sm, &smem_max, &sm_smem);
  if (smem > smem_max) return false;
  constexpr auto kernel = MatmulInt4GemvFmaKernel<T, MR, kZp>;
  if (smem > 48 * 1024 && (*err = AllowSharedMemory<kernel>(smem_max)) != cudaSuccess) return true;
  // All blocks resident at once (kFmaBlocksPerSm per SM unless shared memory allows fewer); warps
  // stride over columns.
  const int64_t per_sm =
      std::max<int64_t>(1, std::min<int64_t>(kFmaBlocksPerSm, sm_smem / (smem + 1024)));  // 1 KB reserved
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t grid = std::min<int64_t>((p.n + kFmaWarps - 1) / kFmaWarps, sms * per_sm);
  kernel<<<unsigned(grid), kFmaThreads, size_t(smem), stream>>>(p);
  *err = cudaGetLastError();
  return true;
}

// The decode kernel (swapped-operand mma, cp.async ring). Returns false where it does not apply
// (some N % 8 != 0: the scale rows of a tile are copied in 16-byte units; or too little shared memory).
template <typename T, int MW, int NT8, int W, bool kZp, bool kPost>
bool LaunchDecodeAs(const MatmulInt4Params* segs, int count, cudaStream_t stream, cudaError_t* err) {
  using namespace int4mm;
  using L = DecLayout<MW, NT8, W>;
  const MatmulInt4Params& p = segs[0];
  const int smem = L::Smem(int(p.m));
  int smem_max = 0, sm_smem = 0;
  SmemLimits(p.sm, &smem_max, &sm_smem);
  for (int i = 0; i < count; ++i)
    if (segs[i].n % 8 != 0) return false;
  if (L::Smem(L::kRows) > smem_max) return false;
  constexpr auto kernel = MatmulInt4DecodeKernel<T, MW, NT8, W, kZp, kPost>;
  if ((*err = AllowSharedMemory<kernel>(L::Smem(L::kRows))) != cudaSuccess) return true;
  int64_t grid = 0;
  const Int4Batch bt = MakeBatch(segs, count, L::kCols, &grid);
  kernel<<<unsigned(grid), L::kThreads, smem, stream>>>(bt);
  *err = cudaGetLastError();
  return true;
}

// Column tiles of 16 MW over all segments.
int64_t DecodeTiles(const MatmulInt4Params* segs, int count, int cols) {
  int64_t tiles = 0;
  for (int i = 0; i < count; ++i) tiles += (segs[i].n + cols - 1) / cols;
  return tiles;
}

// Groups of 128 or more take the scales after the mma (f32), smaller ones before it. M <= 8 with
// fewer than 3 column tiles per SM (small N: 4096 columns are 256 tiles) takes 8-warp blocks, which
// keep twice the weight bytes in flight per tile (else 4-warp ones, more tiles per SM).
template <typename T, int MW, int NT8, bool kZp>
bool LaunchDecode(const MatmulInt4Params* segs, int count, cudaStream_t stream, cudaError_t* err) {
  if constexpr (MW == 1 && NT8 == 1) {
    const int64_t sms = segs[0].sm_count > 0 ? segs[0].sm_count : 132;
    if (DecodeTiles(segs, count, 16 * MW) < 3 * sms &&
        (segs[0].group_size >= 128 ? LaunchDecodeAs<T, MW, NT8, 8, kZp, true>(segs, count, stream, err)
                                   : LaunchDecodeAs<T, MW, NT8, 8, kZp, false>(segs, count, stream, err)))
      return true;
  }
  return segs[0].group_size >= 128 ? LaunchDecodeAs<T, MW, NT8, 4, kZp, true>(segs, count, stream, err)
                                   : LaunchDecodeAs<T, MW, NT8, 4, kZp, false>(segs, count, stream, err);
}

// Decode variants: M <= 8 one token tile and 16 columns a block, M = 9..16 two token tiles and 32
// columns a block (each A fragment feeds two weight tiles: half the A traffic per weight).
// Measured on H100 (standalone harness, CUDA-graph replay, f16, group 128, cold weights, us;
// decode MW x NT8 vs the kernel it replaced):
//   M = 1:  4096^2 6.95 (1x1) vs FMA GEMV 7.46; 14336x4096 16.4 vs 18.9; 4096x14336 18.6 vs 21.6
//   M = 4:  4096^2 7.07 vs mma GEMV 8.18; 14336x4096 16.7 vs 25.1;  M = 8: 4096^2 7.54 vs 8.12
//   M = 16: 4096^2 8.85 (2x2; 1x2 9.33) vs 10.0; 14336x4096 22.9 (1x2 31.6) vs 33.2; 4096x14336 26.1 vs 29.5
//   (a plain coalesced read of the weights alone: 4.2 us at 4096^2, 11.2 us at 14336x4096).
// Small N loses a little (3x1000x4096: 5.68 vs 5.42 us) and stays on the decode kernel for simplicity.
// The FMA and mma GEMVs remain for N % 8 != 0 and where the decode ring does not fit.
// Later steps (bench/results, weights cold in L2, us):
// - Cheaper dequantisation and, with group 128, the scales on the f32 sums (H200, 8107ad48 ->
//   2d04c603): 1x14336x4096 15.5 -> 14.5, 1x4096x14336 18.1 -> 17.1, QkvProjectInt4 square M = 1
//   13.0 -> 12.2. Predicted from ~30% fewer instructions per weight: 11; the kernel is not bound by
//   issue at the boost clock. ncu (H200, base clock) at 1x14336x4096: DRAM 32% busy, 29% occupancy.
// - Copy addresses formed once instead of per stage (H200, b3fb4cf3): fewer instructions again, no
//   gain at M = 1 and slower at M = 16 (16x4096x14336 30.1 vs 26.4): backed out.
// - 8-warp blocks where the column tiles are few (H100, d2eb2b9f, vs ORT MatMulNBits in the same
//   run): 1x4096x14336 14.8 (ORT 18.2), 1x4096x4096 6.5 (6.7), Llama Q/K/V M = 1 8.2 (17.9).
constexpr int kDecMw16 = 2;
constexpr bool kDecodeM1 = true;  // M = 1 on the decode kernel (else the FMA GEMV)
// A stage holds only A's M real rows (not 8 NT8 rows), so M = 1 fits 6 blocks of 4 stages per SM
// (registers bound it) instead of 4. A deeper ring for M <= 4 (8 stages, 4 blocks per SM) was
// slower on H200 (same run, us, 8 vs 4 stages): 1x14336x4096 16.9 vs 15.5, 4x14336x4096 21.3 vs
// 16.8: with all weights of a block in flight the kernel is bound by its warps' issue, not by
// memory latency, so more resident warps beat a deeper ring.

// The split decode kernel (M <= 16, any N; KAIO_INT4_DECODE=0 keeps the older kernels below, for
// side-by-side runs).
bool SplitDecodeEnabled() { return EnvSwitch("KAIO_INT4_DECODE", true); }
// M = 1 with A's row staged in shared memory (KAIO_INT4_ONE_ROW=0: A through L1 as at M > 1, for A/B runs).
bool OneRowEnabled() { return EnvSwitch("KAIO_INT4_ONE_ROW", true); }

// M = 1 with A's row staged in shared memory (the split kernel's kOneRow path and
// MatmulInt4OneRowTilesKernel): the dynamic shared memory for a row of `chunks` 128-k chunks, or 0
// where that does not fit the default 48 KB or the loop's 32-bit offsets would overflow (K < 2^30,
// scale rows x N < 2^31 for every segment).
size_t OneRowSmemBytes(const MatmulInt4Params* segs, int count, int64_t chunks, int64_t bytes_per_chunk) {
  const MatmulInt4Params& p = segs[0];
  const int64_t smem = chunks * bytes_per_chunk;
  if (smem > 48 * 1024 || p.k >= (int64_t(1) << 30)) return 0;
  for (int i = 0; i < count; ++i)
    if ((p.k / p.group_size + 1) * segs[i].n >= (int64_t(1) << 31)) return 0;
  return size_t(smem);
}

// K slices: as many as keep tiles x slices within one wave of resident blocks (each warp at least
// one 128-k chunk, 8 at most: the portable cluster size; 2 with two token tiles), on sm_90 only
// (clusters).
// kPrefetchA: only where the tiles fit one wave of its blocks, on sm_90 (else cudaErrorNotSupported).
template <typename T, int MW, int NT8, bool kZp, bool kPost, bool kOneRow = false, bool kPrefetchA = false>
cudaError_t LaunchSplitAs(const MatmulInt4Params* segs, int count, cudaStream_t stream) {
  using namespace int4mm;
  constexpr auto kernel = MatmulInt4SplitDecodeKernel<T, MW, NT8, kZp, kPost, kOneRow, kPrefetchA>;
  const MatmulInt4Params& p = segs[0];
  int64_t tiles = 0;
  const Int4Batch bt = MakeBatch(segs, count, SdShape<MW, NT8>::kCols, &tiles);
  if (tiles > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t chunks = (p.k + kChunk - 1) / kChunk;
  // Two token tiles (M = 9..16): at most two slices. H200, int4_decode_probe (f16, group 128, us,
  // 2026-11-29_int4_m16_slices_probes_h200.md): 16x4096x4096 9.64 in 2 slices vs 10.6 in 3, 14.3 in
  // 4 (the cap of one wave) and 12.55 on the older decode kernel that took over there;
  // 16x4096x14336 21.0 vs 23.5 / 29.1 in 3 / 4. At M <= 8 two slices lost to the older kernel
  // (8x4096x4096 7.20 vs 6.76).
  constexpr int kMaxSplits = NT8 == 2 ? 2 : kSdMaxSplits;
  int splits = 1;
  if (p.sm >= 90) {
    const int64_t wave = sms * ResidentBlocks<kernel>(kSdThreads);
    if (kPrefetchA && tiles > wave) return cudaErrorNotSupported;
    while (splits < kMaxSplits && tiles * (splits + 1) <= wave && chunks >= int64_t(kSdWarps) * (splits + 1))
      ++splits;
  } else if (kPrefetchA) {
    return cudaErrorNotSupported;  // (not measured off sm_90)
  }
  // Measured on an H200 (bench/results/2026-11-27_quant_matmul_int4_{,old_decode_}3c78027a.md and
  // ..._qkv_project_int4_{3c78027a,4759fb0f}.md, CUPTI, cold weights): unsplit or in 2 slices this
  // kernel beats the older ones (1x14336x4096 14.9 vs 15.6 us, 16x14336x4096 19.0 vs 28.7;
  // QkvProjectInt4 4096 -> 4096/1024/1024 at M=1 8.8 vs 10.1, M=16 11.1 vs 14.6); in 4 slices it
  // loses at M <= 8 (1x4096x4096 8.6 vs 5.8, 1x4096x14336 17.6 vs 13.4). Where it would take more
  // than 2 slices (M <= 8) and the older decode kernel applies (every N % 8 == 0; its arithmetic is
  // this one's), that one runs instead.
  bool older_applies = true;
  for (int i = 0; i < count; ++i) older_applies = older_applies && segs[i].n % 8 == 0;
  if (splits > 2 && older_applies) {
    // M = 1 (A staged once a block): unsplit where the tiles alone give every SM two blocks. H200,
    // int4_decode_probe: QkvProjectInt4's Llama widths (384 tiles) 8.00 us vs 8.49 on the older kernel
    // (8.13 in 2 slices); with 256 tiles (N = 4096) the older kernel stays ahead (K = 4096: 5.79 vs
    // 7.35 unsplit, 6.70 in 2 slices, 8.86 in 4; K = 14336: 13.44 vs 20.65 / 14.45 / 17.31).
    if (!(kOneRow && tiles >= 2 * sms)) return cudaErrorNotSupported;
    splits = 1;
  }
  size_t smem = 0;
  if constexpr (kOneRow) {  // A's row for the longest slice
    smem = OneRowSmemBytes(segs, count, (chunks + splits - 1) / splits, SdRowLayout<false>::kBytesPerChunk);
    if (smem == 0) return cudaErrorNotSupported;
  }
  return LaunchKSlices(kernel, unsigned(tiles), splits, kSdThreads, stream, bt, smem);
}

// M = 1, 32 columns a block of 8 warps (MatmulInt4OneRowTilesKernel: 8 tiles of 4 columns, a warp
// each, four neighbouring chunks a step, A's row staged padded), on sm_90 where those blocks number
// more than 2 and at most 3 per SM, or, with K split in two over a cluster, more than 1.9. H200,
// int4_decode_probe (2026-11-29_int4_m1_row_layout_probes_h200.md), us, vs the kernels otherwise used:
// QkvProjectInt4 1 x 4096 -> 3 x 4096 (384 blocks, unsplit) 9.09-9.17 vs 9.53 (two 16-column tiles
// of 4 warps, A unpadded, which had measured 9.54-9.65 vs 9.83-9.87 on the 4-warp split kernel); the
// Llama widths (192 blocks, 2 slices) 6.48-6.51 vs 7.29-7.31; 1x4096x14336 (128, 2 slices) 12.44-12.46
// vs 13.45; 1x4096x4096 (128, 2 slices) 5.75-5.79 vs 5.76-5.78 (groups 32 / 64, zero points: 6.01-6.14
// vs 6.18-6.51). It lost unsplit at other block counts (1x14336x4096, 448: 13.7 vs 10.7; 128 blocks:
// 17.5 / 6.58 vs 13.5 / 5.77) and in 3 slices (1x4096x4096 9.4 vs 5.8, 1x4096x14336 18.4 vs 13.4).
// KAIO_INT4_PAIR=0: off; KAIO_INT4_TILE_SLICES=0: unsplit only.
template <typename T, bool kZp, bool kPost>
cudaError_t LaunchOneRowTiles(const MatmulInt4Params* segs, int count, cudaStream_t stream) {
  using namespace int4mm;
  constexpr int kTiles = 2, kR = 4;
  const MatmulInt4Params& p = segs[0];
  if (p.sm < 90 || !EnvSwitch("KAIO_INT4_PAIR", true)) return cudaErrorNotSupported;
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t chunks = (p.k + kChunk - 1) / kChunk;
  int64_t blocks = 0;
  const Int4Batch bt = MakeBatch(segs, count, 16 * kTiles, &blocks);
  // Unsplit where the blocks number 2-3 per SM (as measured), else two slices (each at least two
  // 4-chunk steps) where blocks x 2 number 1.9-3 per SM.
  int splits = 1;
  if (blocks <= 2 * sms || blocks > 3 * sms) {
    if (10 * 2 * blocks <= 19 * sms || 2 * blocks > 3 * sms || chunks < 4 * kSdWarps ||
        !EnvSwitch("KAIO_INT4_TILE_SLICES", true))
      return cudaErrorNotSupported;
    splits = 2;
  }
  // A's row for the longest slice, in whole steps of 4 chunks.
  const int64_t slice_chunks = (chunks + splits - 1) / splits;
  const size_t smem = OneRowSmemBytes(segs, count, SdWholeSteps(slice_chunks), SdRowLayout<true>::kBytesPerChunk);
  if (smem == 0) return cudaErrorNotSupported;
  if (splits == 1) {
    MatmulInt4OneRowTilesKernel<T, kZp, kPost, kTiles, kR, false>
        <<<unsigned(blocks), kSdThreads * kTiles, smem, stream>>>(bt, 1);
    return cudaGetLastError();
  }
  return LaunchKSlices(MatmulInt4OneRowTilesKernel<T, kZp, kPost, kTiles, kR, true>, unsigned(blocks), splits,
                       kSdThreads * kTiles, stream, bt, smem);
}

// M <= 8: one token tile, 16 columns a block; M = 9..16: two token tiles, 32 columns a block, A
// prefetched with the weights on sm_90 where the tiles fit one wave of 3 blocks per SM
// (KAIO_INT4_PREFETCH_A=0: never, for A/B runs). Groups of 128 or more take the scales after the mma
// (f32), smaller ones before it.
template <typename T, bool kZp>
cudaError_t LaunchSplit(const MatmulInt4Params* segs, int count, cudaStream_t stream) {
  const bool post = segs[0].group_size >= 128;
  if (segs[0].m == 1 && OneRowEnabled()) {  // A's row staged once per block (slices up to 24576 k)
    // The 32-column kernel where its rule says, else the split kernel's M = 1 path.
    cudaError_t err = post ? LaunchOneRowTiles<T, kZp, true>(segs, count, stream)
                           : LaunchOneRowTiles<T, kZp, false>(segs, count, stream);
    if (err != cudaErrorNotSupported) return err;
    err = post ? LaunchSplitAs<T, 1, 1, kZp, true, true>(segs, count, stream)
               : LaunchSplitAs<T, 1, 1, kZp, false, true>(segs, count, stream);
    if (err != cudaErrorNotSupported) return err;
  }
  if (segs[0].m <= 8)
    return post ? LaunchSplitAs<T, 1, 1, kZp, true>(segs, count, stream)
                : LaunchSplitAs<T, 1, 1, kZp, false>(segs, count, stream);
  if (EnvSwitch("KAIO_INT4_PREFETCH_A", true)) {  // M = 9..16 with A prefetched where its tiles fit one wave
    const cudaError_t err = post ? LaunchSplitAs<T, 2, 2, kZp, true, false, true>(segs, count, stream)
                                 : LaunchSplitAs<T, 2, 2, kZp, false, false, true>(segs, count, stream);
    if (err != cudaErrorNotSupported) return err;
  }
  return post ? LaunchSplitAs<T, 2, 2, kZp, true>(segs, count, stream)
              : LaunchSplitAs<T, 2, 2, kZp, false>(segs, count, stream);
}

// The Hopper GEMM takes one segment past the decode kernels' rows (Launch below).
bool WgmmaMayRun(const MatmulInt4Params* segs, int count) { return count == 1 && segs[0].m > 16 && segs[0].k > 0; }

template <typename T, bool kZp>
cudaError_t Launch(const MatmulInt4Params* segs, int count, void* scratch, cudaStream_t stream) {
  using namespace int4mm;
  const MatmulInt4Params& p = segs[0];  // m, k, types and the device: shared by every segment
  cudaError_t err = cudaSuccess;
  if (p.k > 0 && p.m <= 16 && SplitDecodeEnabled()) {
    err = LaunchSplit<T, kZp>(segs, count, stream);
    if (err != cudaErrorNotSupported) return err;  // else: the shapes where the older kernels are faster
    err = cudaSuccess;
  }
  // M = 1: the FMA GEMV (coalesced 512-byte warp loads of one column) where the decode kernel does
  // not apply. Measured on H100 (standalone harness, CUDA-graph replay), f16, group 128, cold weights, vs the mma GEMV: 1x4096x4096 7.9 vs 8.2 us, 1x14336x4096 19.2 vs 25.0,
  // 1x4096x14336 22.1 vs 23.6, 1x11008x4096 16.8 vs 20.6, 1x1000x4096 4.4 vs 5.7. At M = 2 and 4 the
  // FFMA work (one FFMA per weight and row, plus the f32 conversion) makes it issue-bound and slower
  // (2x4096x4096 9.8 vs 8.3 us, 4x4096x4096 17.0 vs 8.3), so M >= 2 stays on the mma GEMV.
  // It strides over its own columns, so it takes one launch per segment.
  // K = 0 (an empty sum: Y = bias) goes to the GEMM kernel, which handles it at any M.
  if (p.k > 0 && p.m == 1 && kDecodeM1 && LaunchDecode<T, 1, 1, kZp>(segs, count, stream, &err)) return err;
  if (p.k > 0 && p.m == 1) {
    bool fma = true;
    for (int i = 0; i < count && fma && err == cudaSuccess; ++i) fma = LaunchFma<T, 1, kZp>(segs[i], stream, &err);
    if (fma || err != cudaSuccess) return err;  // (the first segment decides: all share K)
  }
  if (p.k > 0 && p.m > 1 && p.m <= 8 && LaunchDecode<T, 1, 1, kZp>(segs, count, stream, &err)) return err;
  if (p.k > 0 && p.m > 8 && p.m <= 16 && LaunchDecode<T, kDecMw16, 2, kZp>(segs, count, stream, &err))
    return err;
  int64_t blocks = 0;
  if (p.k > 0 && p.m <= 16) {
    const Int4Batch bt = MakeBatch(segs, count, kGemvCols, &blocks);
    if (p.m <= 8)
      MatmulInt4GemvKernel<T, false, kZp><<<unsigned(blocks), kGemvThreads, 0, stream>>>(bt);
    else
      MatmulInt4GemvKernel<T, true, kZp><<<unsigned(blocks), kGemvThreads, 0, stream>>>(bt);
    return cudaGetLastError();
  }
  if (WgmmaMayRun(segs, count)) {  // sm_90: TMA + wgmma, the codes dequantised in shared memory (matmul_int4_sm90.cu)
    err = RunMatmulInt4Wgmma(p, scratch, stream);
    if (err != cudaErrorNotSupported) return err;
    err = cudaSuccess;
  }
  const int64_t mblocks = (p.m + kGemmM - 1) / kGemmM;
  static_assert(kMatmulInt4MaxRows == int64_t(65535) * kGemmM, "the glue's row limit is the grid's");
  if (mblocks > 65535) return cudaErrorInvalidConfiguration;  // the glue refuses it first, by name
  // Wide tiles (4 x 32 columns) when they still give two blocks per SM, else 4 x 16 columns.
  // Tried and removed: on sm_90, the wide tiles with K split over a thread-block cluster of 2-8
  // blocks (partials summed through distributed shared memory) to fill the GPU at M = 128: slower
  // on H200 (128x4096x4096 48.8-49.8 us vs 40.1 here, 128x14336x4096 101-108 vs 101): the short
  // per-block K loops and the cluster reduction cost more than the occupancy they bring.
  const Int4Batch wide = MakeBatch(segs, count, 128, &blocks);
  if (blocks * mblocks >= 2 * int64_t(p.sm_count > 0 ? p.sm_count : 132)) {
    MatmulInt4GemmKernel<T, 4, kZp><<<dim3(unsigned(blocks), unsigned(mblocks)), kGemmThreads, 0, stream>>>(wide);
  } else {
    const Int4Batch narrow = MakeBatch(segs, count, 64, &blocks);
    MatmulInt4GemmKernel<T, 2, kZp><<<dim3(unsigned(blocks), unsigned(mblocks)), kGemmThreads, 0, stream>>>(narrow);
  }
  return cudaGetLastError();
}

// The segments with columns (the others take no blocks) into live[]; returns their count.
int LiveSegments(const MatmulInt4Params* segs, int count, MatmulInt4Params* live) {
  int n_live = 0;
  for (int i = 0; i < count && i < kMaxQuantSegments; ++i)
    if (segs[i].n > 0) live[n_live++] = segs[i];
  return n_live;
}

// QkvProjectInt4 past the decode rows: one launch per projection where the Hopper GEMM takes every
// one of them, else (any bias, narrow projections) one launch of the mma.sync GEMM over all three.
// H200, bench_qkv_project at 21b6027c, M = 128, K = 4096: square widths (3 x 4096) 87.7 us fused vs
// 58.4 as three MatmulInt4 nodes (each the wgmma GEMM in 4 K slices); Llama widths (4096, 1024, 1024),
// where the 1024-wide ones are too few tiles for it, 51.2 fused vs 114.3.
bool PerProjectionGemm(const MatmulInt4Params* segs, int count) {
  if (count < 2 || segs[0].m <= 16 || segs[0].k == 0) return false;
  for (int i = 0; i < count; ++i)
    if (MatmulInt4WgmmaSplits(segs[i]) == 0) return false;
  return true;
}

}  // namespace

int64_t MatmulInt4ScratchBytes(const MatmulInt4Params* segs, int count) {
  MatmulInt4Params live[kMaxQuantSegments];
  const int n_live = LiveSegments(segs, count, live);
  if (PerProjectionGemm(live, n_live)) {  // the launches run in turn on one stream: the largest
    int64_t bytes = 0;
    for (int i = 0; i < n_live; ++i) bytes = std::max(bytes, MatmulInt4WgmmaScratchBytes(live[i]));
    return bytes;
  }
  return WgmmaMayRun(live, n_live) ? MatmulInt4WgmmaScratchBytes(live[0]) : 0;
}

int RunMatmulInt4(const MatmulInt4Params* segs, int count, void* scratch, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (count < 1 || count > kMaxQuantSegments) return cudaErrorInvalidValue;
  // K = 0 is an empty sum (Y = bias or 0).
  MatmulInt4Params live[kMaxQuantSegments];
  const int n_live = LiveSegments(segs, count, live);
  if (n_live == 0 || segs[0].m == 0) return cudaSuccess;
  const MatmulInt4Params& p = live[0];
  if (p.k == 0 && !p.bias) {  // Y = 0 (biases: all segments or none)
    for (int i = 0; i < n_live; ++i) {
      const size_t elem = p.out_f32 ? 4 : 2;
      const cudaError_t e = cudaMemsetAsync(live[i].y, 0, static_cast<size_t>(p.m * live[i].n) * elem, stream);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  static_assert(kMisalignedOperands == cudaErrorMisalignedAddress, "the glue's refusal reads this status");
  if (!Aligned16(p.a)) return kMisalignedOperands;
  for (int i = 0; i < n_live; ++i)
    if (!Aligned16(live[i].b)) return kMisalignedOperands;
  const bool zp = p.zero_points != nullptr;
  auto run = [&](const MatmulInt4Params* s, int n) {
    if (p.bf16)
      return zp ? Launch<__nv_bfloat16, true>(s, n, scratch, stream) : Launch<__nv_bfloat16, false>(s, n, scratch, stream);
    return zp ? Launch<__half, true>(s, n, scratch, stream) : Launch<__half, false>(s, n, scratch, stream);
  };
  if (PerProjectionGemm(live, n_live)) {
    for (int i = 0; i < n_live; ++i)
      if (const cudaError_t e = run(&live[i], 1)) return e;
    return cudaSuccess;
  }
  return run(live, n_live);
}

}  // namespace kaio
