// What the ORT glue (matmul_tc_op.cc) hands to the CUDA code: pointers, sizes and batch strides.
// No ORT or CUDA headers: plain data.
#pragma once

#include <cstdint>

namespace kaio {

constexpr int kMatmulMaxBatchRank = 6;
// Rows per batch the CUDA launch covers: 65535 row tiles (grid.y) of the kernel's 128 rows.
constexpr int64_t kMatmulTcMaxRows = int64_t(65535) * 128;

enum class MatmulElem : int { kF16 = 0, kBF16 = 1, kF32 = 2, kI8 = 3 };  // kI8: MatmulInt8 W8A8's A and B only

struct MatmulTcParams {
  // Y[b] = op(A[b]) * op(B[b]); op(A) = A (M x K, row-major) or, with trans_a, A^T (A is K x M);
  // op(B) = B (K x N) or, with trans_b, B^T (B is N x K). trans_a (MatmulTcGrad's dB) only with
  // trans_b false.
  const void* a = nullptr;
  const void* b = nullptr;
  void* y = nullptr;
  MatmulElem in_type = MatmulElem::kF16;   // A and B
  MatmulElem out_type = MatmulElem::kF32;  // Y
  bool trans_a = false;
  bool trans_b = false;
  bool use_async = false;                  // MatmulTcAsync / MatmulTcBf16Async pipeline
  int64_t m = 0, n = 0, k = 0;

  // Broadcast batch: the output batch has batch_rank dims; a_batch_stride[i] / b_batch_stride[i]
  // are the operand's element strides per output batch dim (0 where the operand broadcasts).
  int batch_rank = 0;
  int64_t batch_dims[kMatmulMaxBatchRank] = {};
  int64_t a_batch_stride[kMatmulMaxBatchRank] = {};
  int64_t b_batch_stride[kMatmulMaxBatchRank] = {};
  int64_t batch_count = 1;                 // product of batch_dims

  int sm = 0, sm_count = 0;                // device facts for the tile choice
  // Hopper GEMM epilogue: lanes gather 8 columns through a quad transpose for 16-byte stores (else
  // each lane stores its column pairs). The dense launcher picks it per tile shape (matmul_tc_sm90.cu,
  // QuadStores); the quantized and W8A8 GEMMs keep the default, the setting they were measured with.
  bool quad_stores = true;

  // With partial (batch_count 1 only): block z of grid.z = k_split sums K tiles [z T / k_split,
  // (z + 1) T / k_split) of the T tiles and writes float partial[z][M][N] instead of Y (the caller
  // combines).
  int64_t k_split = 1;
  float* partial = nullptr;
  // Hopper GEMM only (set by its launcher, matmul_tc_sm90.cu): the k_split slices of a tile run as
  // the CTAs of one thread-block cluster and slice 0 adds the others' sums from their shared memory
  // before the epilogue writes Y (partial unused, no second kernel).
  bool slice_cluster = false;
  // Hopper GEMM only (its launcher): with partial, the CTA that finishes a tile's last slice adds the
  // slices into Y itself, counting them on tile_counters[tile] (zero before, returned to zero by that
  // CTA; common/stream_counters.h): no second kernel.
  int* tile_counters = nullptr;

  // in_type kI8 (MatmulInt8 W8A8, RunMatmulS8Wgmma): Y = float(double(s32 sum) * *acc_scale), the
  // scale one float in device memory (read by the kernel: no host synchronisation).
  const float* acc_scale = nullptr;
};

// MatmulTcGrad's sum of per-batch products into an operand that broadcasts over some batch dims:
// x[j] = sum over output batches t whose operand matrix is j (in t order) of products[t], rounded
// once to x's type (f16 / bf16).
struct MatmulTcBatchSum {
  const float* products = nullptr;   // [batch_count][matrix]
  void* x = nullptr;                 // [x_count][matrix]
  MatmulElem x_type = MatmulElem::kF16;
  int64_t matrix = 0, x_count = 0;
  int batch_rank = 0;
  int64_t batch_dims[kMatmulMaxBatchRank] = {};
  int64_t x_batch_stride[kMatmulMaxBatchRank] = {};  // elements, 0 where x broadcasts
  int64_t batch_count = 0;
};

// How many K slices a MatmulTc op runs side by side (1: none): where a single batch's 128 x 128
// output tiles would leave most SMs idle (decode-sized M), each slice of at least 512 k gets its own
// blocks. The caller then sets k_split and points `partial` at k_split * M * N floats of scratch.
int64_t MatmulTcKSplit(const MatmulTcParams& p);

// Launches on `stream`; returns the CUDA error of the launch (never synchronises). With partial
// (k_split > 1, batch_count 1) the slices go to `partial` and a second kernel adds them into Y in a
// fixed order (deterministic), rounding once.
int RunMatmulTc(const MatmulTcParams& p, void* stream);

// Y = the fixed-order sum of p.k_split f32 slices in p.partial (batch_count 1), rounded once to Y's
// type: RunMatmulTc's second kernel, also run after the quantized GEMMs' slices.
int RunMatmulTcCombine(const MatmulTcParams& p, void* stream);

// y[i] = x[i] rounded to `type` (f16 / bf16), count elements, on `stream`.
int RunMatmulTcRound(const float* x, void* y, MatmulElem type, int64_t count, int sm_count, void* stream);

// MatmulTcBatchSum on `stream` (writes every element of x, zeros where no batch maps to it).
int RunMatmulTcBatchSum(const MatmulTcBatchSum& s, int sm_count, void* stream);

}  // namespace kaio
