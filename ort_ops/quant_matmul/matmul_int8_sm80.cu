// Launcher of the MatmulInt8 W8A16 kernels (matmul_int8_kernel.cuh): picks the regime from M. One
// launch (plus the combine pass where sums go through the partial buffer) for every segment of the
// batch: MatmulInt8's one projection or QkvProjectInt8's three.
#include <cuda_runtime.h>

#include <algorithm>

#include "matmul_tc/matmul_tc_kernel.cuh"
#include "quant_matmul/matmul_int8_kernel.cuh"

namespace kaio {
namespace {

// The GEMV dequantises each weight once per 8 rows of A and does one FFMA per weight and row: up
// to 16 rows (two row blocks) it beats the tensor-core kernel's 128-row tiles.
constexpr int64_t kGemvMaxM = 16;

// The segments that have columns (the others take no blocks and write nothing).
struct Segments {
  MatmulInt8Params seg[kMaxInt8Segments];
  int count = 0;
  const MatmulInt8Params& shared() const { return seg[0]; }  // a, m, k, types, device
  // Column blocks of `cols` columns over all segments.
  int64_t Blocks(int64_t cols) const {
    int64_t blocks = 0;
    for (int i = 0; i < count; ++i) blocks += (seg[i].n + cols - 1) / cols;
    return blocks;
  }
  int64_t Elems() const {
    int64_t e = 0;
    for (int i = 0; i < count; ++i) e += seg[i].m * seg[i].n;
    return e;
  }
};

Segments LiveSegments(const MatmulInt8Params* segs, int count) {
  Segments s;
  for (int i = 0; i < count; ++i)
    if (segs[i].n > 0) s.seg[s.count++] = segs[i];
  return s;
}

// The batch for a kernel whose blocks cover `cols` columns each; *blocks: the grid's x extent.
int8mm::Int8Batch MakeBatch(const Segments& s, int64_t cols, int64_t* blocks) {
  int8mm::Int8Batch bt{};
  bt.count = s.count;
  int64_t block = 0, elem = 0;
  for (int i = 0; i < s.count; ++i) {
    bt.seg[i] = s.seg[i];
    bt.first_block[i] = block;
    bt.first_elem[i] = elem;
    block += (s.seg[i].n + cols - 1) / cols;
    elem += s.seg[i].m * s.seg[i].n;
  }
  bt.elems = elem;
  *blocks = block;
  return bt;
}

struct GemvPlan {
  int64_t col_blocks = 0, splits = 1, slice = 0;
};

// Column blocks (of all segments together: narrow projections fill the GPU together) x K slices:
// about four blocks per SM; a slice is a whole number of the block's 64-row rounds (8 warps x 8 rows).
GemvPlan PlanGemv(const Segments& s) {
  const MatmulInt8Params& p = s.shared();
  GemvPlan g;
  g.col_blocks = s.Blocks(int8mm::kGemvCols);
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t rounds = (p.k + 63) / 64;
  const int64_t want = std::max<int64_t>(1, std::min<int64_t>((4 * sms + g.col_blocks - 1) / g.col_blocks, rounds));
  g.slice = (rounds + want - 1) / want * 64;
  g.splits = (p.k + g.slice - 1) / g.slice;
  return g;
}

// K slices of the tensor-core kernel: enough 128 x 128 tiles (of all segments) for one per SM, each
// slice >= 8 K tiles.
int64_t TcSplits(const Segments& s) {
  using namespace matmul_tc;
  const MatmulInt8Params& p = s.shared();
  const int64_t sms = p.sm_count > 0 ? p.sm_count : 132;
  const int64_t tiles = s.Blocks(kBlockN) * ((p.m + kBlockM - 1) / kBlockM);
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
};

Int8Plan PlanInt8(const Segments& s) {
  const MatmulInt8Params& p = s.shared();
  Int8Plan pl;
  pl.gemv = p.m <= kGemvMaxM;
  if (pl.gemv) {
    pl.g = PlanGemv(s);
    pl.splits = pl.g.splits;
    pl.partial = pl.splits > 1;
  } else {
    pl.splits = TcSplits(s);
    pl.partial = pl.splits > 1;
    for (int i = 0; i < s.count; ++i) pl.partial = pl.partial || s.seg[i].out_scale || s.seg[i].bias;
  }
  return pl;
}

bool AlignedTo(const void* ptr, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(ptr) & (bytes - 1)) == 0; }

// 16-byte loads of A, scales and zero points and 8-byte loads of B (else element loads), for every
// segment or none (one kernel).
bool Vectorized(const Segments& s) {
  const MatmulInt8Params& p = s.shared();
  bool vec = p.k % 8 == 0 && AlignedTo(p.a, 16);
  for (int i = 0; i < s.count; ++i) {
    const MatmulInt8Params& q = s.seg[i];
    vec = vec && q.n % 8 == 0 && AlignedTo(q.b, 8) && AlignedTo(q.scales, 16) &&
          (!q.zero_points || AlignedTo(q.zero_points, 16));
  }
  return vec;
}

template <typename T, int MR, bool kVec>
cudaError_t LaunchGemv(const Segments& s, const GemvPlan& g, float* partial, cudaStream_t stream) {
  using namespace int8mm;
  int64_t blocks = 0;
  const Int8Batch bt = MakeBatch(s, kGemvCols, &blocks);
  const dim3 grid(unsigned(blocks), unsigned(g.splits), unsigned((s.shared().m + MR - 1) / MR));
  MatmulInt8GemvKernel<T, MR, kVec><<<grid, kGemvThreads, 0, stream>>>(bt, partial, g.slice);
  return cudaGetLastError();
}

template <typename T, bool kVec>
cudaError_t LaunchGemvRows(const Segments& s, const GemvPlan& g, float* partial, cudaStream_t stream) {
  const int64_t m = s.shared().m;
  if (m == 1) return LaunchGemv<T, 1, kVec>(s, g, partial, stream);
  if (m <= 4) return LaunchGemv<T, 4, kVec>(s, g, partial, stream);
  return LaunchGemv<T, 8, kVec>(s, g, partial, stream);
}

// Every segment's Y = the fixed-order sum of its `splits` partial results, rounded once.
template <typename T>
cudaError_t Combine(const Segments& s, const float* partial, int64_t splits, cudaStream_t stream) {
  const int64_t sms = s.shared().sm_count > 0 ? s.shared().sm_count : 132;
  int64_t blocks = 0;
  const int8mm::Int8Batch bt = MakeBatch(s, 1, &blocks);  // (first_block unused)
  blocks = std::min<int64_t>((bt.elems + 255) / 256, 8 * sms);
  int8mm::MatmulInt8CombineKernel<T><<<unsigned(blocks), 256, 0, stream>>>(bt, partial, int(splits));
  return cudaGetLastError();
}

// The tensor-core kernel with the batch as its B source: grid.x over every segment's 128-column
// blocks, the MatmulTcParams holding only what the segments share (Int8BatchSource::Block picks
// each block's segment, its n, Y and partial sums).
template <typename T, bool kVec>
cudaError_t LaunchTc(const Segments& s, int64_t splits, float* partial, cudaStream_t stream) {
  using namespace matmul_tc;
  const MatmulInt8Params& p = s.shared();
  if (p.m > int64_t(65535) * kBlockM) return cudaErrorInvalidConfiguration;
  MatmulTcParams tp;
  tp.a = p.a;
  tp.in_type = p.bf16 ? MatmulElem::kBF16 : MatmulElem::kF16;
  tp.out_type = p.out_f32 ? MatmulElem::kF32 : tp.in_type;
  tp.m = p.m;
  tp.k = p.k;
  tp.k_split = splits;
  tp.partial = partial;
  int64_t blocks = 0;
  const int8mm::Int8BatchSource src{MakeBatch(s, kBlockN, &blocks)};
  const dim3 grid(unsigned(blocks), unsigned((p.m + kBlockM - 1) / kBlockM), unsigned(splits));
  MatmulTcSyncKernel<T, false, kVec, int8mm::Int8BatchSource><<<grid, kThreads, 0, stream>>>(tp, src);
  return cudaGetLastError();
}

template <typename T>
cudaError_t Launch(const Segments& s, void* scratch, cudaStream_t stream) {
  const bool vec = Vectorized(s);
  const Int8Plan pl = PlanInt8(s);
  float* partial = pl.partial ? static_cast<float*>(scratch) : nullptr;
  if (pl.partial && !partial) return cudaErrorInvalidValue;
  cudaError_t err;
  if (pl.gemv)
    err = vec ? LaunchGemvRows<T, true>(s, pl.g, partial, stream) : LaunchGemvRows<T, false>(s, pl.g, partial, stream);
  else
    err = vec ? LaunchTc<T, true>(s, pl.splits, partial, stream) : LaunchTc<T, false>(s, pl.splits, partial, stream);
  if (err != cudaSuccess || !partial) return err;
  return Combine<T>(s, partial, pl.splits, stream);
}

}  // namespace

int64_t MatmulInt8ScratchBytes(const MatmulInt8Params* segs, int count) {
  if (count < 1 || count > kMaxInt8Segments) return 0;
  const Segments s = LiveSegments(segs, count);
  if (s.count == 0 || s.shared().m == 0 || s.shared().k == 0) return 0;
  const Int8Plan pl = PlanInt8(s);
  return pl.partial ? pl.splits * s.Elems() * int64_t(sizeof(float)) : 0;
}

int RunMatmulInt8(const MatmulInt8Params* segs, int count, void* scratch, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (count < 1 || count > kMaxInt8Segments) return cudaErrorInvalidValue;
  const Segments s = LiveSegments(segs, count);
  if (s.count == 0 || s.shared().m == 0) return cudaSuccess;
  const MatmulInt8Params& p = s.shared();
  if (p.k == 0 && !p.bias) {  // empty sum: Y = 0 (biases: all segments or none)
    const size_t elem = p.out_f32 ? 4 : 2;
    for (int i = 0; i < s.count; ++i)
      if (cudaError_t e = cudaMemsetAsync(s.seg[i].y, 0, static_cast<size_t>(p.m * s.seg[i].n) * elem, stream))
        return e;
    return cudaSuccess;
  }
  if (p.k == 0) {  // Y = bias: the GEMV's store with no K rows (one slice, no partial sums)
    const GemvPlan g{s.Blocks(int8mm::kGemvCols), 1, 0};
    return p.bf16 ? LaunchGemvRows<__nv_bfloat16, false>(s, g, nullptr, stream)
                  : LaunchGemvRows<__half, false>(s, g, nullptr, stream);
  }
  return p.bf16 ? Launch<__nv_bfloat16>(s, scratch, stream) : Launch<__half>(s, scratch, stream);
}

}  // namespace kaio
