// What the ORT glue (quant_matmul_op.cc, qkv_project_op.cc) hands to the INT4 CUDA code: pointers
// and sizes. No ORT or CUDA headers: plain data.
#pragma once

#include <cstdint>

#include "matmul_tc/matmul_tc_params.h"

namespace kaio {

// One INT4 projection: Y[M, N] = A[M, K] * W (+ bias),
// W[k, n] = (q[k, n] - zp[k / g, n]) * scale[k / g, n].
struct MatmulInt4Params {
  const void* a = nullptr;            // f16 / bf16 [M, K] (leading dims of A flattened into M)
  const uint32_t* b = nullptr;        // [N, K/8]: column n's K/8 words contiguous, nibble i = k 8*(k/8)+i
  const void* scales = nullptr;       // A's type [K/g, N]
  const void* zero_points = nullptr;  // A's type [K/g, N] or nullptr
  const void* bias = nullptr;         // A's type [N] or nullptr (added in f32 before Y's rounding)
  void* y = nullptr;                  // float or A's type [M, N]
  bool bf16 = false;                  // A's type: bf16 (else f16)
  bool out_f32 = true;                // Y float (else A's type)
  int64_t m = 0, n = 0, k = 0;
  int group_size = 128;               // 32, 64 or 128 (K % group_size == 0)
  int sm = 0, sm_count = 0;
};

// Up to three projections of the same A in one launch (QkvProjectInt4 / QkvProjectInt8: Q, K, V;
// MatmulInt4 / MatmulInt8: one): the kernels' column blocks run over the segments' columns in turn
// (quant_kernel_common.cuh, SegmentBatch).
constexpr int kMaxQuantSegments = 3;
// MatmulInt4's segments share A, m, k, group_size, the types and whether zero points are present;
// n, b, scales, zero_points, bias and y are their own.
// Rows the launch covers: 65535 row blocks (grid.y) of the GEMM kernel's 64 rows.
constexpr int64_t kMatmulInt4MaxRows = int64_t(65535) * 64;

// Device scratch the launch needs (one segment, M > 16, on the Hopper GEMM: its K slices' f32 sums,
// or from 1024 rows the dequantised weights); 0: none.
int64_t MatmulInt4ScratchBytes(const MatmulInt4Params* segments, int count);
inline int64_t MatmulInt4ScratchBytes(const MatmulInt4Params& p) { return MatmulInt4ScratchBytes(&p, 1); }
// Launches on `stream` (scratch: MatmulInt4ScratchBytes bytes; without it the Hopper regimes that
// need it are not taken); returns the CUDA error of the launch (never synchronises).
// kMisalignedOperands: A or a B_packed not 16-byte aligned (nothing launched).
// cudaErrorMisalignedAddress: this header is also compiled without CUDA's; RunMatmulInt4 asserts it.
constexpr int kMisalignedOperands = 716;
int RunMatmulInt4(const MatmulInt4Params* segments, int count, void* scratch, void* stream);
inline int RunMatmulInt4(const MatmulInt4Params& p, void* scratch, void* stream) {
  return RunMatmulInt4(&p, 1, scratch, stream);
}

}  // namespace kaio

namespace kaio {

// MatmulInt8 W8A16: Y[M, N] = A[M, K] * W, W[k, n] = (b[k, n] - zp[k / g, n]) * scale[k / g, n]
// (g = group_size; 0: one group spanning K, per channel).
// Rows the launch covers: 65535 row tiles (grid.y) of the tensor-core kernel's 128 rows (M > 16).
constexpr int64_t kMatmulInt8MaxRows = int64_t(65535) * 128;

struct MatmulInt8Params {
  const void* a = nullptr;            // f16 / bf16 [M, K]
  const int8_t* b = nullptr;          // [K, N] row-major
  const void* scales = nullptr;       // A's type [K/g, N] ([1, N] per channel)
  const void* zero_points = nullptr;  // A's type, scales' shape, or nullptr
  void* y = nullptr;                  // float or A's type [M, N]
  bool bf16 = false;
  bool out_f32 = true;
  int64_t m = 0, n = 0, k = 0;
  int64_t group_size = 0;             // > 0 with K % group_size == 0, or 0
  int sm = 0, sm_count = 0;
  // QkvProjectInt8's arithmetic: scales == nullptr (w = b exactly), and the f32 sum times
  // out_scale (one float, or [N] with out_scale_per_channel) plus bias ([N], A's type) before Y's
  // one rounding. MatmulInt8 leaves these unset.
  const float* out_scale = nullptr;
  bool out_scale_per_channel = false;
  const void* bias = nullptr;
};

// Up to kMaxQuantSegments projections of the same A (QkvProjectInt8): one launch where the decode
// kernel takes them all (M <= 16), else one segment after another. Every segment shares A, m, k,
// group_size and the types; n, b, scales, zero_points, y, out_scale and bias are its own.
// Device scratch the launches need (K slices' partial sums, or the Hopper GEMM's dequantised weights
// from 1024 rows; reused segment after segment); 0: none.
int64_t MatmulInt8ScratchBytes(const MatmulInt8Params* segments, int count);
inline int64_t MatmulInt8ScratchBytes(const MatmulInt8Params& p) { return MatmulInt8ScratchBytes(&p, 1); }
// Launches on `stream` (scratch: MatmulInt8ScratchBytes bytes); returns the CUDA error of the
// launch (never synchronises).
int RunMatmulInt8(const MatmulInt8Params* segments, int count, void* scratch, void* stream);
inline int RunMatmulInt8(const MatmulInt8Params& p, void* scratch, void* stream) {
  return RunMatmulInt8(&p, 1, scratch, stream);
}

// MatmulInt8 W8A8: Y[M, N] = float(double(sum_k int32(a[m, k]) * int32(b[k, n])) * scale), f32 or
// f16 (rounded from that float). The sums are s32 on the GPU: exact while K <= kMatmulW8A8MaxK
// (|a b| <= 2^14, and 131071 * 2^14 < 2^31); the glue refuses a larger K on CUDA by name.
constexpr int64_t kMatmulW8A8MaxK = (int64_t(1) << 17) - 1;
// Rows the launch covers: 65535 row tiles (grid.y) of the mma.sync kernel's 128 rows.
constexpr int64_t kMatmulW8A8MaxRows = int64_t(65535) * 128;

struct MatmulW8A8Params {
  const int8_t* a = nullptr;      // [M, K] (A's leading dims flattened into M)
  const int8_t* b = nullptr;      // [K, N] row-major
  const float* scale = nullptr;   // one float in device memory
  void* y = nullptr;              // float or float16 [M, N]
  bool out_f32 = true;
  int64_t m = 0, n = 0, k = 0;
  int sm = 0, sm_count = 0;
};

// Device scratch the launch needs: B transposed to [N, K] (both kernels read K-major operands).
int64_t MatmulW8A8ScratchBytes(const MatmulW8A8Params& p);
// Launches on `stream` (scratch: MatmulW8A8ScratchBytes bytes, 16-byte aligned); returns the CUDA
// error of the launch (never synchronises). cudaErrorInvalidValue: K past kMatmulW8A8MaxK, or no scratch.
int RunMatmulW8A8(const MatmulW8A8Params& p, void* scratch, void* stream);

// The dense-GEMM view of a quantized product (MatmulInt4Params or MatmulInt8Params): A, Y, the types,
// the sizes and the device, for the MatmulTc kernels that run it with a quantized B.
template <class Quant>
MatmulTcParams DenseGemmOf(const Quant& q) {
  MatmulTcParams tp;
  tp.a = q.a;
  tp.y = q.y;
  tp.in_type = q.bf16 ? MatmulElem::kBF16 : MatmulElem::kF16;
  tp.out_type = q.out_f32 ? MatmulElem::kF32 : tp.in_type;
  tp.m = q.m;
  tp.n = q.n;
  tp.k = q.k;
  tp.sm = q.sm;
  tp.sm_count = q.sm_count;
  return tp;
}

}  // namespace kaio
