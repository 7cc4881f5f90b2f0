// Shapes of a batched, broadcast matmul Y[..., M, N] = A[..., M, K] * op(B): shared by the
// forward ops, the gradient op, their CPU kernels and the CUDA params.
#pragma once

#include "common/status.h"
#include "common/tensor_info.h"

namespace kaio {

struct MatmulGeometry {
  int64_t m = 0, n = 0, k = 0;
  Shape a_batch, b_batch, out_batch;   // batch dims (everything before the last two)
  Shape y_shape;                        // out_batch + [M, N]
};

// Checks A [..., M, K] against B [..., K, N] (or [..., N, K] with trans_b); dims may be unknown
// (-1) at shape inference. Errors name the input and the rule.
OrtStatus* ResolveMatmul(const ErrCtx& c, const TensorInfo& a, const TensorInfo& b, bool trans_b,
                         const char* a_name, const char* b_name, MatmulGeometry* g);

// Element strides of an operand's batch per output batch dim (0 where it broadcasts).
void BatchStrides(const Shape& operand_batch, const Shape& out_batch, int64_t matrix_size, int64_t* strides);

}  // namespace kaio
