// Errors as OrtStatus. Every validation failure names the op, the node, the input and the rule:
//   [com.kaio.MatmulTc] node 'mm0': input 'B' (#1): K of B (32) must equal K of A (33)
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include "common/ort_api.h"

namespace kaio {

template <typename... Args>
std::string Cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// Where an error happened: the op, and the node once the kernel exists (shape inference has
// no node name; ORT prefixes its own node description to those errors).
struct ErrCtx {
  const char* op = "";
  std::string node;

  std::string Prefix() const {
    std::string p = Cat("[com.kaio.", op, "]");
    if (!node.empty()) p += Cat(" node '", node, "'");
    return p;
  }
};

inline OrtStatus* MakeStatus(OrtErrorCode code, const std::string& msg) {
  return Api().CreateStatus(code, msg.c_str());
}

template <typename... Args>
OrtStatus* InputError(const ErrCtx& c, size_t index, const char* name, Args&&... rule) {
  return MakeStatus(ORT_INVALID_ARGUMENT, Cat(c.Prefix(), ": input '", name, "' (#", index, "): ",
                                              std::forward<Args>(rule)...));
}

template <typename... Args>
OrtStatus* OutputError(const ErrCtx& c, size_t index, const char* name, Args&&... rule) {
  return MakeStatus(ORT_INVALID_ARGUMENT, Cat(c.Prefix(), ": output '", name, "' (#", index, "): ",
                                              std::forward<Args>(rule)...));
}

template <typename... Args>
OrtStatus* AttrError(const ErrCtx& c, const char* attr, Args&&... rule) {
  return MakeStatus(ORT_INVALID_ARGUMENT, Cat(c.Prefix(), ": attribute '", attr, "': ",
                                              std::forward<Args>(rule)...));
}

template <typename... Args>
OrtStatus* OpError(OrtErrorCode code, const ErrCtx& c, Args&&... what) {
  return MakeStatus(code, Cat(c.Prefix(), ": ", std::forward<Args>(what)...));
}

// A size past what a kernel's CUDA launch grid covers: refused as a rule of the input it comes from.
inline OrtStatus* CheckLaunchLimit(const ErrCtx& c, size_t index, const char* name, const char* what,
                                   int64_t value, int64_t limit) {
  if (value <= limit) return nullptr;
  return InputError(c, index, name, what, " (", value, ") must be at most ", limit,
                    " on CUDA (the launch grid's limit)");
}

#define KAIO_RETURN_IF_ERROR(expr)            \
  do {                                        \
    if (OrtStatus* _kaio_st = (expr)) return _kaio_st; \
  } while (0)

}  // namespace kaio
