// Weight-only quantisation shared by MatmulInt4, MatmulInt8 and QkvProjectInt4/Int8: the
// contract checks of a quantized weight, its group scales and zero points, and the CPU kernels'
// decoding of INT4 words / INT8 bytes into a double weight w[k, n] = (q - zp[g, n]) * scale[g, n]
// (DESIGN.md, "Contract details"; INT4 layout in kaio-contracts.md).
#pragma once

#include <cstdint>
#include <vector>

#include "common/attrs.h"
#include "common/cpu_convert.h"
#include "common/status.h"
#include "common/tensor_info.h"

namespace kaio {

// ---- Validation (dims may be -1 at shape inference; a rule is checked once both sides are known).

// The activation A [..., M, K]. The weights have no batch dims, so everything before K flattens
// into the rows of one GEMM and Y is A's shape with K replaced by N.
struct ActivationDims {
  Shape lead;          // A's shape without K
  int64_t rows = 0;    // product of `lead`, -1 when a dim is unknown
  int64_t k = 0;       // -1 when unknown
  Shape OutShape(int64_t n) const;
};
OrtStatus* ResolveActivation(const ErrCtx& c, size_t index, const char* name, const TensorInfo& a,
                             ActivationDims* d);

// group_size attribute of the INT4 ops: 32, 64 or 128 (default 128, KAIO's only size).
OrtStatus* ReadInt4GroupSize(const AttrSource& s, const ErrCtx& c, int64_t* group_size);
// group_size attribute of MatmulInt8 W8A16: >= 0 (default 0: per channel, one group spanning K).
OrtStatus* ReadInt8GroupSize(const AttrSource& s, const ErrCtx& c, int64_t* group_size);
// Number of groups along K: K / group_size (group_size 0: 1, per channel); -1 when K is unknown.
int64_t GroupCount(int64_t k, int64_t group_size);
// K % group_size == 0, reported against the activation input that carries K.
OrtStatus* CheckGroupDivides(const ErrCtx& c, size_t index, const char* name, int64_t k, int64_t group_size);

// INT4 weight: uint32 [N, K/8] (KAIO's column-major [K/8, N] buffer). Sets *n.
OrtStatus* ResolveInt4Weight(const ErrCtx& c, size_t index, const char* name, const TensorInfo& w, int64_t k,
                             int64_t* n);
// INT8 weight: int8 [K, N] row-major. Sets *n.
OrtStatus* ResolveInt8Weight(const ErrCtx& c, size_t index, const char* name, const TensorInfo& w, int64_t k,
                             int64_t* n);

// Per-group parameters (scales, zero points): [groups, N]; `accept_vector` also takes [N] (one
// group, per channel). groups = -1 when K is unknown.
OrtStatus* CheckGroupParams(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t, int64_t groups,
                            int64_t n, bool accept_vector);
// Scales / zero points of a weight-only op: element type equal to the activation's (ref_type) and
// CheckGroupParams' shape rule.
OrtStatus* CheckGroupTensor(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t,
                            const char* ref_name, DType ref_type, int64_t groups, int64_t n, bool accept_vector);
// A tensor of one element: shape [] or [1]; `or_per_column` also accepts [N] (one per column).
OrtStatus* CheckOneElement(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t,
                           bool or_per_column = false, int64_t n = kUnknownDim);
// Element type equal to another input's (scales and zero points in A's type).
OrtStatus* CheckSameType(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t, const char* ref_name,
                         DType ref_type);
// What the CUDA launch-grid limit of the quantized ops counts (CheckLaunchLimit).
constexpr const char* kRowsFlattened = "M with the leading dims flattened";
// out_dtype of a weight-only op: float or A's type (W8A8 has its own rule).
OrtStatus* CheckOutDTypeFloatOr(const ErrCtx& c, DType out_dtype, const char* input_name, DType input_type);

// ---- CPU kernels (compute in double; see common/cpu_convert.h).

// Signed nibble i (bits 4i .. 4i+3) of a packed word: two's complement, [-8, 7].
inline int Int4Nibble(uint32_t word, int i) {
  return static_cast<int32_t>(word << (28 - 4 * i)) >> 28;
}

// Group parameters as doubles, one row of N per group. `values` empty means "none" (zero points);
// one element broadcasts over N (a per-tensor scale).
struct GroupParams {
  std::vector<double> values;
  int64_t rows_per_group = 1;   // K rows sharing one row of values
  double At(int64_t k, int64_t n_idx, int64_t n) const {
    if (values.empty()) return 0.0;
    if (values.size() == 1) return values[0];
    return values[(k / rows_per_group) * n + n_idx];
  }
};
// rows_per_group from a group_size attribute (0: one group spanning K, i.e. per channel).
int64_t RowsPerGroup(int64_t group_size, int64_t k);
// A scales / zero points input as GroupParams (an absent tensor gives empty values: none).
GroupParams ToGroupParams(const ConstTensor& t, int64_t rows_per_group);

// Dequantised weights [K, N] in double: w = (q - zero_point) * scale.
std::vector<double> DequantizeInt4(const ConstTensor& packed, int64_t k, int64_t n, const GroupParams& scales,
                                   const GroupParams& zero_points);
std::vector<double> DequantizeInt8(const ConstTensor& w, int64_t k, int64_t n, const GroupParams& scales,
                                   const GroupParams& zero_points);

// Y[rows, N] = A[rows, K] * W[K, N] + bias[N] (bias empty: none), in double.
std::vector<double> GemmDouble(const std::vector<double>& a, const std::vector<double>& w, int64_t rows, int64_t k,
                               int64_t n, const std::vector<double>& bias = {});

}  // namespace kaio
