// What the ORT glue (attention_op.cc) hands to the CUDA attention code: pointers, sizes and
// element strides. No ORT or CUDA headers: plain data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/aligned.h"

namespace kaio {

enum class AttentionElem : int { kF16 = 0, kBF16 = 1 };

// Element strides of one tensor: (batch, head, row); the head dim is contiguous.
struct AttentionStrides {
  int64_t batch = 0, head = 0, row = 0;
};

// Whether a tensor's rows can be read with 16-byte loads: a 16-byte aligned base and every stride a
// multiple of 8 (16-bit) elements.
inline bool RowsAligned16(const void* base, const AttentionStrides& s) {
  return Aligned16(base) && s.batch % 8 == 0 && s.head % 8 == 0 && s.row % 8 == 0;
}

struct AttentionFlashParams {
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // [batch, Hq, Sq], optional
  AttentionElem in_type = AttentionElem::kF16;
  bool out_f32 = true;   // O in float, else in the input type
  bool causal = false;   // bottom-right aligned: query i sees keys j <= i + Sk - Sq
  int64_t batch = 0, hq = 0, hkv = 0, sq = 0, sk = 0, d = 0, dv = 0;
  AttentionStrides q_str, k_str, v_str, o_str;
  float scale = 0.f;     // applied to Q K^T
  int sm_count = 0;      // the split-KV decision
  int sm = 0;            // compute capability (major * 10 + minor): 90 may take the Hopper kernel
};

// Whether every row of Q, K and V can be read with 16-byte cp.async (the mma.sync kernels' fast
// path): D, Dv and every stride multiples of 8 elements, and 16-byte aligned bases.
inline bool AttentionVectorLoads(const AttentionFlashParams& p) {
  return p.d % 8 == 0 && p.dv % 8 == 0 && RowsAligned16(p.q, p.q_str) && RowsAligned16(p.k, p.k_str) &&
         RowsAligned16(p.v, p.v_str);
}

// Bytes of device scratch a launch with `p` needs (0: none; split-KV decode needs some).
size_t AttentionFlashWorkspaceBytes(const AttentionFlashParams& p);

// Launches on `stream` (never synchronises); `workspace` holds AttentionFlashWorkspaceBytes(p)
// bytes. Returns a CUDA error code (0: launched), or -1 when the batch or head count exceeds the
// launch grid's 65535 (the only limit a tensor that fits in memory can reach).
int RunAttentionFlash(const AttentionFlashParams& p, void* workspace, void* stream);

// AttentionTc / AttentionTcCausal (attention_tc_sm80.cu): the same params (lse and sm_count unused;
// Hq % Hkv == 0 is honoured although the op asks Hkv == Hq). A block keeps the f32 scores of its
// query tile against every key in shared memory, so Sk is capped by the device's opt-in shared memory
// per block (cudaDevAttrMaxSharedMemoryPerBlockOptin). The longest Sk that fits for head dims D, Dv:
int64_t AttentionTcMaxSk(int64_t d, int64_t dv, int smem_optin);

// Launches on `stream` (never synchronises, no scratch). smem_per_sm (cudaDevAttrMaxSharedMemoryPer-
// Multiprocessor) steers the query-tile height; block_m 16, 32 or 64 forces one (tests), 0 chooses.
// Returns a CUDA error code (0: launched), -1 past the launch grid (as RunAttentionFlash), -2 when
// Sk > AttentionTcMaxSk (or a forced block_m does not fit).
int RunAttentionTc(const AttentionFlashParams& p, int smem_optin, int smem_per_sm, int block_m, void* stream);

// AttentionFlashGrad: dO, Q, K, V, O, LSE -> dQ, dK, dV (any of the three may be nullptr: not computed).
struct AttentionFlashGradParams {
  const void *d_o = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  const float* lse = nullptr;  // [batch, Hq, Sq], natural log, -inf: the row sees no key
  void *dq_out = nullptr, *dk_out = nullptr, *dv_out = nullptr;  // Q's, K's, V's type, shape and strides
  AttentionElem in_type = AttentionElem::kF16;  // Q, K, V
  bool do_f32 = false, o_f32 = false;           // dO, O in float, else in the input type
  bool causal = false;         // bottom-right aligned, as the forward
  bool deterministic = false;  // no float atomics: dQ from a second pass over the keys
  int64_t batch = 0, hq = 0, hkv = 0, sq = 0, sk = 0, d = 0, dv = 0;
  AttentionStrides q_str, k_str, v_str, o_str;  // dO has O's strides
  float scale = 0.f;
  int sm = 0;  // compute capability (major * 10 + minor): 90 may take the Hopper K/V kernel
};

// Bytes of device scratch a launch with `p` needs: Dvec (f32 per query row), dO rounded to the input
// type when dO is float, and (dQ requested, not deterministic) the f32 dQ accumulator.
size_t AttentionFlashGradWorkspaceBytes(const AttentionFlashGradParams& p);

// Launches on `stream` (never synchronises); `workspace` holds AttentionFlashGradWorkspaceBytes(p)
// bytes. Returns a CUDA error code (0: launched), or -1 when the batch or a head count exceeds the
// launch grid's 65535.
int RunAttentionFlashGrad(const AttentionFlashGradParams& p, void* workspace, void* stream);

}  // namespace kaio
