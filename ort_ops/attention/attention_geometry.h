// Attributes, shape rules and memory layout shared by the attention ops (AttentionTc*,
// AttentionFlash*, AttentionFlashGrad), their CPU kernels and, later, their CUDA params.
#pragma once

#include <cstdint>

#include "common/attrs.h"
#include "common/status.h"
#include "common/tensor_info.h"

namespace kaio {

enum class AttentionLayout { kBhsd, kBshd };

// The upper bound of D and Dv (KAIO's kernels keep a head's row in registers).
constexpr int64_t kMaxHeadDim = 256;

struct AttentionAttrs {
  float scale = 0.0f;  // 0: 1/sqrt(D)
  AttentionLayout layout = AttentionLayout::kBhsd;
  bool causal = false;        // AttentionFlashGrad's attribute; the forward ops fix it by name
  DType out_dtype = kF32;     // forward ops
  bool deterministic = false; // AttentionFlashGrad (CUDA: no float atomics)
};

// scale (finite, >= 0) and layout ("bhsd" / "bshd"), read the same way by every attention op.
OrtStatus* ReadScaleAndLayout(const AttrSource& s, const ErrCtx& c, AttentionAttrs* a);

double EffectiveScale(const AttentionAttrs& a, int64_t d);

// Element offset of row s of head h in batch b of a tensor in one layout; the last dim is
// contiguous, so both layouts are read in place.
struct RowIndexer {
  int64_t batch_stride = 0, head_stride = 0, row_stride = 0;
  int64_t operator()(int64_t b, int64_t h, int64_t s) const {
    return b * batch_stride + h * head_stride + s * row_stride;
  }
};

struct AttentionGeometry {
  AttentionLayout layout = AttentionLayout::kBhsd;
  Shape batch;                          // leading dims (bhsd: before H; bshd: [B])
  int64_t hq = 0, hkv = 0, sq = 0, sk = 0, d = 0, dv = 0;  // -1 where unknown (shape inference)
  Shape o_shape;                        // Q's shape with D replaced by Dv
  Shape lse_shape;                      // batch + [Hq, Sq] (rank-2 bhsd Q: [Sq])
  RowIndexer q_rows, k_rows, v_rows, o_rows;  // valid once every dim is known

  int64_t batch_count() const { return NumElements(batch); }
  int64_t group() const { return hkv > 0 ? hq / hkv : 1; }  // query heads per kv head
  // Offset of (b, h, s) in the [..., Hq, Sq] LSE tensor (the same for both layouts).
  int64_t lse_index(int64_t b, int64_t h, int64_t s) const { return (b * hq + h) * sq + s; }
};

// Checks Q, K, V (the op's inputs #first, #first + 1, #first + 2) against the
// contract: same element type, ranks and batch dims, D and Dv in 1..kMaxHeadDim, K's D equal to
// Q's, Sk and Hkv equal for K and V, and Hq % Hkv == 0 (grouped_heads) or Hkv == Hq. Dims may be
// unknown at shape inference. Errors name the input and the rule.
OrtStatus* ResolveAttention(const ErrCtx& c, const TensorInfo& q, const TensorInfo& k, const TensorInfo& v,
                            size_t first, AttentionLayout layout, bool grouped_heads, AttentionGeometry* g);

// Causal masks align bottom-right: query i sees keys j <= i + (Sk - Sq). Returns how many keys
// (a prefix) query i sees.
inline int64_t VisibleKeys(bool causal, int64_t i, int64_t sq, int64_t sk) {
  if (!causal) return sk;
  int64_t n = i + (sk - sq) + 1;
  return n < 0 ? 0 : (n > sk ? sk : n);
}

}  // namespace kaio
