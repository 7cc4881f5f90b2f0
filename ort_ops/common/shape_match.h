// Shape equality that tolerates dims unknown at shape inference (-1 matches anything).
#pragma once

#include "common/tensor_info.h"

namespace kaio {

inline bool ShapesMatch(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!DimsMatch(a[i], b[i])) return false;
  return true;
}

}  // namespace kaio
