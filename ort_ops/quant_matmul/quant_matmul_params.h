// What the ORT glue (quant_matmul_op.cc) hands to the MatmulInt4 CUDA code: pointers and sizes.
// No ORT or CUDA headers: plain data.
#pragma once

#include <cstdint>

namespace kaio {

struct MatmulInt4Params {
  // Y[M, N] = A[M, K] * W, W[k, n] = (q[k, n] - zp[k / g, n]) * scale[k / g, n].
  const void* a = nullptr;            // f16 / bf16 [M, K] (leading dims of A flattened into M)
  const uint32_t* b = nullptr;        // [N, K/8]: column n's K/8 words contiguous, nibble i = k 8*(k/8)+i
  const void* scales = nullptr;       // A's type [K/g, N]
  const void* zero_points = nullptr;  // A's type [K/g, N] or nullptr
  void* y = nullptr;                  // float or A's type [M, N]
  bool bf16 = false;                  // A's type: bf16 (else f16)
  bool out_f32 = true;                // Y float (else A's type)
  int64_t m = 0, n = 0, k = 0;
  int group_size = 128;               // 32, 64 or 128 (K % group_size == 0)
  int sm = 0, sm_count = 0;
};

// Launches on `stream`; returns the CUDA error of the launch (never synchronises).
// cudaErrorMisalignedAddress (74): A or B_packed not 16-byte aligned.
int RunMatmulInt4(const MatmulInt4Params& p, void* stream);

}  // namespace kaio
