#include "common/tensor_info.h"

#include "common/status.h"

namespace kaio {

const char* DTypeName(DType t) {
  switch (t) {
    case kF32: return "float";
    case kF16: return "float16";
    case kBF16: return "bfloat16";
    case kI8: return "int8";
    case kU8: return "uint8";
    case kU32: return "uint32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "double";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return "int16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    case kUndefined: return "undefined";
    default: return "unsupported type";
  }
}

size_t DTypeSize(DType t) {
  switch (t) {
    case kF32: case kU32: case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return 4;
    case kF16: case kBF16: case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return 2;
    case kI8: case kU8: case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return 1;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return 8;
    default: return 0;
  }
}

std::string ShapeStr(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += s[i] < 0 ? "?" : std::to_string(s[i]);
  }
  return r + "]";
}

int64_t NumElements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return -1;
    n *= d;
  }
  return n;
}

bool BroadcastShapes(const Shape& a, const Shape& b, Shape* out) {
  size_t r = std::max(a.size(), b.size());
  out->assign(r, 1);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) (*out)[i] = da;
    else if (da == 1) (*out)[i] = db;
    else if (da < 0 || db < 0) (*out)[i] = kUnknownDim;
    else return false;
  }
  return true;
}

BatchIndexer::BatchIndexer(const Shape& operand_batch, const Shape& out_batch)
    : out_dims_(out_batch), strides_(out_batch.size(), 0) {
  int64_t stride = 1;
  size_t off = out_batch.size() - operand_batch.size();
  for (size_t i = operand_batch.size(); i-- > 0;) {
    strides_[i + off] = operand_batch[i] == 1 ? 0 : stride;
    stride *= operand_batch[i];
  }
}

int64_t BatchIndexer::operator()(int64_t out_index) const {
  int64_t result = 0;
  for (size_t i = out_dims_.size(); i-- > 0;) {
    result += (out_index % out_dims_[i]) * strides_[i];
    out_index /= out_dims_[i];
  }
  return result;
}

}  // namespace kaio
