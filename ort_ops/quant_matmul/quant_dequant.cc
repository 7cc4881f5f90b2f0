#include "quant_matmul/quant_dequant.h"

#include <algorithm>

namespace kaio {

Shape ActivationDims::OutShape(int64_t n) const {
  Shape s = lead;
  s.push_back(n);
  return s;
}

OrtStatus* ResolveActivation(const ErrCtx& c, size_t index, const char* name, const TensorInfo& a,
                             ActivationDims* d) {
  if (a.rank() < 2) return InputError(c, index, name, "rank must be at least 2 ([..., M, K]), got shape ", ShapeStr(a.shape));
  d->lead.assign(a.shape.begin(), a.shape.end() - 1);
  d->rows = NumElements(d->lead);
  d->k = a.dim(-1);
  return nullptr;
}

OrtStatus* ReadInt4GroupSize(const AttrSource& s, const ErrCtx& c, int64_t* group_size) {
  KAIO_RETURN_IF_ERROR(ReadInt(s, c, "group_size", 128, group_size));
  if (*group_size != 32 && *group_size != 64 && *group_size != 128)
    return AttrError(c, "group_size", "must be 32, 64 or 128, got ", *group_size);
  return nullptr;
}

OrtStatus* ReadInt8GroupSize(const AttrSource& s, const ErrCtx& c, int64_t* group_size) {
  KAIO_RETURN_IF_ERROR(ReadInt(s, c, "group_size", 0, group_size));
  if (*group_size < 0)
    return AttrError(c, "group_size", "must be >= 0 (0: per channel), got ", *group_size);
  return nullptr;
}

int64_t GroupCount(int64_t k, int64_t group_size) {
  if (group_size == 0) return 1;
  return k < 0 ? kUnknownDim : k / group_size;
}

OrtStatus* CheckGroupDivides(const ErrCtx& c, size_t index, const char* name, int64_t k, int64_t group_size) {
  if (k >= 0 && group_size > 0 && k % group_size != 0)
    return InputError(c, index, name, "K (", k, ") must be a multiple of group_size (", group_size, ")");
  return nullptr;
}

namespace {
std::string DimStr(int64_t d) { return d < 0 ? "?" : std::to_string(d); }
}  // namespace

OrtStatus* ResolveInt4Weight(const ErrCtx& c, size_t index, const char* name, const TensorInfo& w, int64_t k,
                             int64_t* n) {
  const int64_t words = k < 0 ? kUnknownDim : k / 8;
  if (w.rank() != 2 || !DimsMatch(w.dim(1), words))
    return InputError(c, index, name, "shape must be [N, K/8] = [N, ", DimStr(words), "] (8 INT4 values per word, K = ",
                      DimStr(k), "), got ", ShapeStr(w.shape));
  *n = w.dim(0);
  return nullptr;
}

OrtStatus* ResolveInt8Weight(const ErrCtx& c, size_t index, const char* name, const TensorInfo& w, int64_t k,
                             int64_t* n) {
  if (w.rank() != 2 || !DimsMatch(w.dim(0), k))
    return InputError(c, index, name, "shape must be [K, N] = [", DimStr(k), ", N], got ", ShapeStr(w.shape));
  *n = w.dim(1);
  return nullptr;
}

OrtStatus* CheckGroupParams(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t, int64_t groups,
                            int64_t n, bool accept_vector) {
  const bool matrix_ok = t.rank() == 2 && DimsMatch(t.dim(0), groups) && DimsMatch(t.dim(1), n);
  const bool vector_ok = accept_vector && t.rank() == 1 && DimsMatch(t.dim(0), n);
  if (matrix_ok || vector_ok) return nullptr;
  if (accept_vector)
    return InputError(c, index, name, "shape must be [1, N] or [N] (per channel, group_size 0) with N = ", DimStr(n),
                      ", got ", ShapeStr(t.shape));
  return InputError(c, index, name, "shape must be [K/group_size, N] = [", DimStr(groups), ", ", DimStr(n), "], got ",
                    ShapeStr(t.shape));
}

OrtStatus* CheckGroupTensor(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t,
                            const char* ref_name, DType ref_type, int64_t groups, int64_t n, bool accept_vector) {
  KAIO_RETURN_IF_ERROR(CheckSameType(c, index, name, t, ref_name, ref_type));
  return CheckGroupParams(c, index, name, t, groups, n, accept_vector);
}

OrtStatus* CheckOneElement(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t, bool or_per_column,
                           int64_t n) {
  const bool one = t.rank() == 0 || (t.rank() == 1 && DimsMatch(t.dim(0), 1));
  const bool per_column = or_per_column && t.rank() == 1 && DimsMatch(t.dim(0), n);
  if (one || per_column) return nullptr;
  if (or_per_column)
    return InputError(c, index, name, "must hold one element (shape [] or [1]) or one per output column (shape [N] = [",
                      DimStr(n), "]), got shape ", ShapeStr(t.shape));
  return InputError(c, index, name, "must hold one element (shape [] or [1]), got shape ", ShapeStr(t.shape));
}

OrtStatus* CheckSameType(const ErrCtx& c, size_t index, const char* name, const TensorInfo& t, const char* ref_name,
                         DType ref_type) {
  if (t.type != ref_type)
    return InputError(c, index, name, "element type must be ", ref_name, "'s type (", DTypeName(ref_type), "), got ",
                      DTypeName(t.type));
  return nullptr;
}

OrtStatus* CheckOutDTypeFloatOr(const ErrCtx& c, DType out_dtype, const char* input_name, DType input_type) {
  if (out_dtype != kF32 && out_dtype != input_type)
    return AttrError(c, "out_dtype", "must be 1 (float) or ", input_name, "'s type (", static_cast<int>(input_type), ", ",
                     DTypeName(input_type), "), got ", static_cast<int>(out_dtype), " (", DTypeName(out_dtype), ")");
  return nullptr;
}

int64_t RowsPerGroup(int64_t group_size, int64_t k) { return group_size > 0 ? group_size : std::max<int64_t>(k, 1); }

GroupParams ToGroupParams(const ConstTensor& t, int64_t rows_per_group) {
  GroupParams p;
  if (t.present) p.values = ToDouble(t);
  p.rows_per_group = rows_per_group;
  return p;
}

namespace {
template <class CodeAt>
std::vector<double> Dequantize(int64_t k, int64_t n, const GroupParams& scales, const GroupParams& zero_points,
                               CodeAt code) {
  std::vector<double> w(static_cast<size_t>(k * n));
  for (int64_t r = 0; r < k; ++r)
    for (int64_t j = 0; j < n; ++j)
      w[r * n + j] = (code(r, j) - zero_points.At(r, j, n)) * scales.At(r, j, n);
  return w;
}
}  // namespace

std::vector<double> DequantizeInt4(const ConstTensor& packed, int64_t k, int64_t n, const GroupParams& scales,
                                   const GroupParams& zero_points) {
  const uint32_t* words = packed.as<uint32_t>();
  const int64_t words_per_column = k / 8;
  return Dequantize(k, n, scales, zero_points, [&](int64_t r, int64_t j) {
    return Int4Nibble(words[j * words_per_column + r / 8], static_cast<int>(r % 8));
  });
}

std::vector<double> DequantizeInt8(const ConstTensor& w, int64_t k, int64_t n, const GroupParams& scales,
                                   const GroupParams& zero_points) {
  const int8_t* q = w.as<int8_t>();
  return Dequantize(k, n, scales, zero_points, [&](int64_t r, int64_t j) { return q[r * n + j]; });
}

std::vector<double> GemmDouble(const std::vector<double>& a, const std::vector<double>& w, int64_t rows, int64_t k,
                               int64_t n, const std::vector<double>& bias) {
  std::vector<double> y(static_cast<size_t>(rows * n), 0.0);
  for (int64_t i = 0; i < rows; ++i) {
    double* yrow = y.data() + i * n;
    if (!bias.empty()) std::copy(bias.begin(), bias.end(), yrow);
    for (int64_t p = 0; p < k; ++p) {
      const double av = a[i * k + p];
      if (av == 0.0) continue;
      const double* wrow = w.data() + p * n;
      for (int64_t j = 0; j < n; ++j) yrow[j] += av * wrow[j];
    }
  }
  return y;
}

}  // namespace kaio
