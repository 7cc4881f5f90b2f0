#include "common/attrs.h"

#include <vector>

namespace kaio {
namespace {
// Statuses returned by probing calls are expected failures: release and report absence.
bool Ok(OrtStatus* st) {
  if (st == nullptr) return true;
  Api().ReleaseStatus(st);
  return false;
}
}  // namespace

AttrSource::Kind AttrSource::KindOf(const char* name) const {
  int64_t i;
  float f;
  std::string s;
  if (GetInt(name, &i)) return Kind::kInt;
  if (GetFloat(name, &f)) return Kind::kFloat;
  if (GetString(name, &s)) return Kind::kString;
  return Kind::kMissing;
}

bool KernelInfoAttrs::GetInt(const char* name, int64_t* v) const {
  return Ok(Api().KernelInfoGetAttribute_int64(info_, name, v));
}
bool KernelInfoAttrs::GetFloat(const char* name, float* v) const {
  return Ok(Api().KernelInfoGetAttribute_float(info_, name, v));
}
bool KernelInfoAttrs::GetString(const char* name, std::string* v) const {
  size_t size = 0;
  if (!Ok(Api().KernelInfoGetAttribute_string(info_, name, nullptr, &size))) return false;
  std::vector<char> buf(size + 1, '\0');
  if (!Ok(Api().KernelInfoGetAttribute_string(info_, name, buf.data(), &size))) return false;
  v->assign(buf.data());
  return true;
}

bool ShapeInferAttrs::GetInt(const char* name, int64_t* v) const {
  const OrtOpAttr* attr = nullptr;
  if (!Ok(Api().ShapeInferContext_GetAttribute(ctx_, name, &attr)) || attr == nullptr) return false;
  size_t out = 0;
  return Ok(Api().ReadOpAttr(attr, ORT_OP_ATTR_INT, v, sizeof(*v), &out));
}
bool ShapeInferAttrs::GetFloat(const char* name, float* v) const {
  const OrtOpAttr* attr = nullptr;
  if (!Ok(Api().ShapeInferContext_GetAttribute(ctx_, name, &attr)) || attr == nullptr) return false;
  size_t out = 0;
  return Ok(Api().ReadOpAttr(attr, ORT_OP_ATTR_FLOAT, v, sizeof(*v), &out));
}
bool ShapeInferAttrs::GetString(const char* name, std::string* v) const {
  const OrtOpAttr* attr = nullptr;
  if (!Ok(Api().ShapeInferContext_GetAttribute(ctx_, name, &attr)) || attr == nullptr) return false;
  size_t needed = 0;
  // First call sizes the buffer (fails with the needed length), second reads.
  OrtStatus* st = Api().ReadOpAttr(attr, ORT_OP_ATTR_STRING, nullptr, 0, &needed);
  if (st) Api().ReleaseStatus(st);
  if (needed == 0) {
    v->clear();
    return st == nullptr;
  }
  std::vector<char> buf(needed + 1, '\0');
  size_t got = 0;
  if (!Ok(Api().ReadOpAttr(attr, ORT_OP_ATTR_STRING, buf.data(), needed, &got))) return false;
  v->assign(buf.data(), got);
  return true;
}

namespace {
const char* KindName(AttrSource::Kind k) {
  switch (k) {
    case AttrSource::Kind::kInt: return "int";
    case AttrSource::Kind::kFloat: return "float";
    case AttrSource::Kind::kString: return "string";
    default: return "missing";
  }
}
OrtStatus* WrongType(const AttrSource& s, const ErrCtx& c, const char* name, const char* want) {
  return AttrError(c, name, "must be of type ", want, ", got ", KindName(s.KindOf(name)));
}
}  // namespace

OrtStatus* ReadInt(const AttrSource& s, const ErrCtx& c, const char* name, int64_t dflt, int64_t* v) {
  if (s.GetInt(name, v)) return nullptr;
  if (s.KindOf(name) != AttrSource::Kind::kMissing) return WrongType(s, c, name, "int");
  *v = dflt;
  return nullptr;
}

OrtStatus* ReadFloat(const AttrSource& s, const ErrCtx& c, const char* name, float dflt, float* v) {
  if (s.GetFloat(name, v)) return nullptr;
  if (s.KindOf(name) != AttrSource::Kind::kMissing) return WrongType(s, c, name, "float");
  *v = dflt;
  return nullptr;
}

OrtStatus* ReadString(const AttrSource& s, const ErrCtx& c, const char* name, const char* dflt,
                      std::string* v) {
  if (s.GetString(name, v)) return nullptr;
  if (s.KindOf(name) != AttrSource::Kind::kMissing) return WrongType(s, c, name, "string");
  *v = dflt;
  return nullptr;
}

OrtStatus* ReadBool(const AttrSource& s, const ErrCtx& c, const char* name, bool dflt, bool* v) {
  int64_t i = 0;
  KAIO_RETURN_IF_ERROR(ReadInt(s, c, name, dflt ? 1 : 0, &i));
  if (i != 0 && i != 1) return AttrError(c, name, "must be 0 or 1, got ", i);
  *v = i == 1;
  return nullptr;
}

OrtStatus* ReadOutDType(const AttrSource& s, const ErrCtx& c, std::initializer_list<DType> allowed,
                        DType* v) {
  int64_t t = 0;
  KAIO_RETURN_IF_ERROR(ReadInt(s, c, "out_dtype", kF32, &t));
  std::string names;
  for (DType a : allowed) {
    if (t == a) {
      *v = a;
      return nullptr;
    }
    names += Cat(names.empty() ? "" : ", ", static_cast<int>(a), " (", DTypeName(a), ")");
  }
  return AttrError(c, "out_dtype", "must be one of ", names, ", got ", t);
}

}  // namespace kaio
