// Host side: the 4-D TMA maps (head dim, rows, heads, batch) through which the Hopper attention
// kernels read Q, K, V and dO in place, in either layout. CUDA sources only.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "attention/attention_params.h"
#include "common/tensor_map.h"

namespace kaio {

// A map of one 16-bit operand of `cols` columns (the head dim), read in boxes of 64 columns (one
// 128-byte swizzled row) x `box_rows` rows of one head; rows past `rows` read as zeros (never the
// next head's). False where the driver refuses it (strides not multiples of 16 bytes, ...).
inline bool MakeHeadMap(CUtensorMap* map, AttentionElem type, const void* base, const AttentionStrides& str,
                        int64_t cols, int64_t rows, int64_t heads, int64_t batch, int box_rows) {
  const int64_t dims[4] = {cols, rows, heads, batch};
  const int64_t strides[3] = {str.row * 2, str.head * 2, str.batch * 2};
  const int box[4] = {64, box_rows, 1, 1};
  return MakeTensorMap4d(map, type == AttentionElem::kF16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                         base, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B);
}

}  // namespace kaio
