// Host side of TMA (sm_90): 3-D tensor maps over row-major matrices, encoded through the driver's
// cuTensorMapEncodeTiled, which the runtime finds once (no link to libcuda). CUDA sources only.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kaio {

inline PFN_cuTensorMapEncodeTiled_v12000 TensorMapEncoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A map over `count` row-major matrices of rows x cols elements of `elem_bytes` each (cols
// contiguous), read in boxes of box_rows x box_cols; elements past the edges read as zero.
// False where the driver refuses it (or has no encoder).
inline bool MakeTensorMap(CUtensorMap* map, CUtensorMapDataType type, int elem_bytes, const void* base, int64_t rows,
                          int64_t cols, int64_t count, int box_rows, int box_cols, CUtensorMapSwizzle swizzle) {
  PFN_cuTensorMapEncodeTiled_v12000 encode = TensorMapEncoder();
  if (!encode) return false;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows),
                              static_cast<cuuint64_t>(count)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(cols * elem_bytes),
                                 static_cast<cuuint64_t>(rows * cols * elem_bytes)};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows), 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  return encode(map, type, 3, const_cast<void*>(base), dims, strides, box, element_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// A map over a 16-bit tensor of dims[0..3] elements (dims[0] contiguous) with byte strides
// strides[0..2] of dims 1..3 (any order: both attention layouts are read in place), read in boxes of
// box[0..3] elements. False where the driver refuses it (strides not multiples of 16 bytes, ...).
inline bool MakeTensorMap4d(CUtensorMap* map, CUtensorMapDataType type, const void* base, const int64_t (&dims)[4],
                            const int64_t (&strides)[3], const int (&box)[4], CUtensorMapSwizzle swizzle) {
  PFN_cuTensorMapEncodeTiled_v12000 encode = TensorMapEncoder();
  if (!encode) return false;
  cuuint64_t d[4], s[3];
  cuuint32_t b[4];
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  for (int i = 0; i < 4; ++i) {
    d[i] = static_cast<cuuint64_t>(dims[i]);
    b[i] = static_cast<cuuint32_t>(box[i]);
  }
  for (int i = 0; i < 3; ++i) s[i] = static_cast<cuuint64_t>(strides[i]);
  return encode(map, type, 4, const_cast<void*>(base), d, s, b, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace kaio
