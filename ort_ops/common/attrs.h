// Attributes read the same way at shape inference (OrtShapeInferContext) and at kernel
// creation (OrtKernelInfo), so each op parses and validates them in one function.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/tensor_info.h"

namespace kaio {

class AttrSource {
 public:
  enum class Kind { kMissing, kInt, kFloat, kString };
  virtual ~AttrSource() = default;
  // Each returns false when the attribute is absent or has another type.
  virtual bool GetInt(const char* name, int64_t* v) const = 0;
  virtual bool GetFloat(const char* name, float* v) const = 0;
  virtual bool GetString(const char* name, std::string* v) const = 0;
  Kind KindOf(const char* name) const;
};

class KernelInfoAttrs final : public AttrSource {
 public:
  explicit KernelInfoAttrs(const OrtKernelInfo* info) : info_(info) {}
  bool GetInt(const char* name, int64_t* v) const override;
  bool GetFloat(const char* name, float* v) const override;
  bool GetString(const char* name, std::string* v) const override;

 private:
  const OrtKernelInfo* info_;
};

class ShapeInferAttrs final : public AttrSource {
 public:
  explicit ShapeInferAttrs(OrtShapeInferContext* ctx) : ctx_(ctx) {}
  bool GetInt(const char* name, int64_t* v) const override;
  bool GetFloat(const char* name, float* v) const override;
  bool GetString(const char* name, std::string* v) const override;

 private:
  OrtShapeInferContext* ctx_;
};

// Typed readers with defaults; an attribute present with the wrong type is an error.
OrtStatus* ReadInt(const AttrSource& s, const ErrCtx& c, const char* name, int64_t dflt, int64_t* v);
OrtStatus* ReadFloat(const AttrSource& s, const ErrCtx& c, const char* name, float dflt, float* v);
OrtStatus* ReadString(const AttrSource& s, const ErrCtx& c, const char* name, const char* dflt,
                      std::string* v);
// A 0/1 flag.
OrtStatus* ReadBool(const AttrSource& s, const ErrCtx& c, const char* name, bool dflt, bool* v);

// out_dtype: an ONNX TensorProto element type (1 float, 10 float16, 16 bfloat16), default 1.
// `allowed` lists the element types the op can write.
OrtStatus* ReadOutDType(const AttrSource& s, const ErrCtx& c, std::initializer_list<DType> allowed,
                        DType* v);

}  // namespace kaio
