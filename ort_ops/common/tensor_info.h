// Element types, shapes and batch broadcasting shared by every op's validation and CPU kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ort_api.h"

namespace kaio {

using DType = ONNXTensorElementDataType;
constexpr DType kUndefined = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
constexpr DType kF32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr DType kF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
constexpr DType kBF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
constexpr DType kI8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
constexpr DType kU8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
constexpr DType kU32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32;

const char* DTypeName(DType t);
size_t DTypeSize(DType t);

using Shape = std::vector<int64_t>;   // -1: a dimension unknown at shape-inference time
constexpr int64_t kUnknownDim = -1;

std::string ShapeStr(const Shape& s);
int64_t NumElements(const Shape& s);  // -1 if any dimension is unknown

// What validation sees of a tensor: at shape inference (dims may be -1) and at run time.
struct TensorInfo {
  bool present = false;
  DType type = kUndefined;
  Shape shape;
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t dim(int64_t i) const { return shape[i < 0 ? shape.size() + i : i]; }  // i < 0: from the end
};
using TensorInfos = std::vector<TensorInfo>;

struct ConstTensor : TensorInfo {
  const void* data = nullptr;
  template <typename T> const T* as() const { return static_cast<const T*>(data); }
};
struct MutTensor : TensorInfo {
  void* data = nullptr;
  template <typename T> T* as() const { return static_cast<T*>(data); }
};

// Two dims are compatible when equal, or either is unknown.
inline bool DimsMatch(int64_t a, int64_t b) { return a == b || a < 0 || b < 0; }

// numpy broadcasting of two batch shapes (both without the trailing matrix dims).
// Returns false if incompatible.
bool BroadcastShapes(const Shape& a, const Shape& b, Shape* out);

// Maps a linear index over a broadcast output batch to the linear batch index of an operand
// whose batch shape was broadcast into it (dims of 1 repeat).
class BatchIndexer {
 public:
  BatchIndexer(const Shape& operand_batch, const Shape& out_batch);
  int64_t operator()(int64_t out_index) const;

 private:
  std::vector<int64_t> out_dims_, strides_;   // strides_ is 0 where the operand broadcasts
};

}  // namespace kaio
