// CPU kernels compute in double: inputs are widened once, results rounded once to the output
// type (round to nearest even), so the CPU kernels are the reference semantics of each op.
#pragma once

#include <vector>

#include "common/tensor_info.h"

namespace kaio {

// float, float16, bfloat16, int8, uint8, uint32 -> double.
std::vector<double> ToDouble(const ConstTensor& t);
// double -> float, float16 or bfloat16, n elements into t.data (nothing when t is absent).
void StoreDouble(const double* src, int64_t n, const MutTensor& t);

}  // namespace kaio
