#include "matmul_tc/matmul_geometry.h"

namespace kaio {

OrtStatus* ResolveMatmul(const ErrCtx& c, const TensorInfo& a, const TensorInfo& b, bool trans_b,
                         const char* a_name, const char* b_name, MatmulGeometry* g) {
  if (a.rank() < 2) return InputError(c, 0, a_name, "rank must be at least 2 ([..., M, K]), got shape ", ShapeStr(a.shape));
  if (b.rank() < 2)
    return InputError(c, 1, b_name, "rank must be at least 2 (", trans_b ? "[..., N, K]" : "[..., K, N]",
                      "), got shape ", ShapeStr(b.shape));
  g->m = a.dim(-2);
  g->k = a.dim(-1);
  int64_t bk = trans_b ? b.dim(-1) : b.dim(-2);
  g->n = trans_b ? b.dim(-2) : b.dim(-1);
  if (!DimsMatch(g->k, bk))
    return InputError(c, 1, b_name, "K of ", b_name, " (", bk, ") must equal K of ", a_name, " (", g->k, "); shapes ",
                      ShapeStr(a.shape), " and ", ShapeStr(b.shape), trans_b ? " with trans_b=1" : "");
  if (g->k < 0) g->k = bk;
  g->a_batch.assign(a.shape.begin(), a.shape.end() - 2);
  g->b_batch.assign(b.shape.begin(), b.shape.end() - 2);
  if (!BroadcastShapes(g->a_batch, g->b_batch, &g->out_batch))
    return InputError(c, 1, b_name, "batch dims ", ShapeStr(g->b_batch), " do not broadcast with ", a_name, "'s ",
                      ShapeStr(g->a_batch));
  g->y_shape = g->out_batch;
  g->y_shape.push_back(g->m);
  g->y_shape.push_back(g->n);
  return nullptr;
}

void BatchStrides(const Shape& operand_batch, const Shape& out_batch, int64_t matrix_size, int64_t* strides) {
  size_t off = out_batch.size() - operand_batch.size();
  int64_t stride = matrix_size;
  for (size_t i = out_batch.size(); i-- > 0;) {
    if (i < off) {
      strides[i] = 0;
      continue;
    }
    int64_t d = operand_batch[i - off];
    strides[i] = d == 1 ? 0 : stride;
    stride *= d;
  }
}

}  // namespace kaio
