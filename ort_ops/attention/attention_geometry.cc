#include "attention/attention_geometry.h"

#include <cmath>
#include <string>
#include <tuple>

#include "common/shape_match.h"

namespace kaio {
namespace {

const char* LayoutName(AttentionLayout l) { return l == AttentionLayout::kBhsd ? "bhsd" : "bshd"; }

// A Q/K/V tensor's dims, named: bhsd [..., H, S, D] (rank 2: one head), bshd [B, S, H, D].
struct HeadDims {
  Shape batch;
  int64_t heads = 1, seq = 0, dim = 0;
};

HeadDims DimsOf(const TensorInfo& t, AttentionLayout layout) {
  HeadDims d;
  if (layout == AttentionLayout::kBshd) {
    d.batch = {t.dim(0)};
    d.seq = t.dim(1);
    d.heads = t.dim(2);
  } else {
    if (t.rank() >= 3) {
      d.batch.assign(t.shape.begin(), t.shape.end() - 3);
      d.heads = t.dim(-3);
    }
    d.seq = t.dim(-2);
  }
  d.dim = t.dim(-1);
  return d;
}

RowIndexer RowsOf(AttentionLayout layout, const HeadDims& d) {
  if (layout == AttentionLayout::kBhsd) return {d.heads * d.seq * d.dim, d.seq * d.dim, d.dim};
  return {d.seq * d.heads * d.dim, d.dim, d.heads * d.dim};
}

OrtStatus* CheckHeadDim(const ErrCtx& c, size_t index, const char* name, const char* what, int64_t d) {
  if (d >= 0 && (d < 1 || d > kMaxHeadDim))
    return InputError(c, index, name, "head dim ", what, " must be in 1..", kMaxHeadDim, ", got ", d);
  return nullptr;
}

}  // namespace

OrtStatus* ReadScaleAndLayout(const AttrSource& s, const ErrCtx& c, AttentionAttrs* a) {
  KAIO_RETURN_IF_ERROR(ReadFloat(s, c, "scale", 0.0f, &a->scale));
  if (!(std::isfinite(a->scale) && a->scale >= 0.0f))
    return AttrError(c, "scale", "must be finite and >= 0 (0 means 1/sqrt(D)), got ", a->scale);
  std::string layout;
  KAIO_RETURN_IF_ERROR(ReadString(s, c, "layout", "bhsd", &layout));
  if (layout == "bhsd") a->layout = AttentionLayout::kBhsd;
  else if (layout == "bshd") a->layout = AttentionLayout::kBshd;
  else return AttrError(c, "layout", "must be \"bhsd\" or \"bshd\", got \"", layout, "\"");
  return nullptr;
}

double EffectiveScale(const AttentionAttrs& a, int64_t d) {
  return a.scale > 0.0f ? static_cast<double>(a.scale) : 1.0 / std::sqrt(static_cast<double>(d));
}

OrtStatus* ResolveAttention(const ErrCtx& c, const TensorInfo& q, const TensorInfo& k, const TensorInfo& v,
                            size_t first, AttentionLayout layout, bool grouped_heads, AttentionGeometry* g) {
  const size_t iq = first, ik = first + 1, iv = first + 2;
  if (layout == AttentionLayout::kBshd && q.rank() != 4)
    return InputError(c, iq, "Q", "layout \"bshd\" needs rank 4 [B, S, H, D], got shape ", ShapeStr(q.shape));
  if (q.rank() < 2)
    return InputError(c, iq, "Q", "rank must be at least 2 ([..., H, S, D] or [S, D]), got shape ",
                      ShapeStr(q.shape));
  for (auto [t, index, name] : {std::tuple{&k, ik, "K"}, std::tuple{&v, iv, "V"}}) {
    if (t->type != q.type)
      return InputError(c, index, name, "element type must equal Q's (", DTypeName(q.type), "), got ",
                        DTypeName(t->type));
    if (t->rank() != q.rank())
      return InputError(c, index, name, "rank must equal Q's (", q.rank(), ", layout \"", LayoutName(layout),
                        "\"), got shape ", ShapeStr(t->shape));
  }
  const HeadDims qd = DimsOf(q, layout), kd = DimsOf(k, layout), vd = DimsOf(v, layout);
  if (!ShapesMatch(kd.batch, qd.batch))
    return InputError(c, ik, "K", "batch dims ", ShapeStr(kd.batch), " must equal Q's ", ShapeStr(qd.batch));
  if (!ShapesMatch(vd.batch, qd.batch))
    return InputError(c, iv, "V", "batch dims ", ShapeStr(vd.batch), " must equal Q's ", ShapeStr(qd.batch));
  KAIO_RETURN_IF_ERROR(CheckHeadDim(c, iq, "Q", "D", qd.dim));
  if (!DimsMatch(kd.dim, qd.dim))
    return InputError(c, ik, "K", "head dim D (", kd.dim, ") must equal Q's (", qd.dim, ")");
  KAIO_RETURN_IF_ERROR(CheckHeadDim(c, iv, "V", "Dv", vd.dim));
  if (!DimsMatch(vd.seq, kd.seq))
    return InputError(c, iv, "V", "sequence length (", vd.seq, ") must equal K's Sk (", kd.seq, ")");
  if (!DimsMatch(vd.heads, kd.heads))
    return InputError(c, iv, "V", "head count (", vd.heads, ") must equal K's (", kd.heads, ")");
  if (qd.heads >= 0 && kd.heads >= 0) {
    if (grouped_heads && (kd.heads == 0 ? qd.heads != 0 : qd.heads % kd.heads != 0))
      return InputError(c, ik, "K", "head count Hkv (", kd.heads, ") must divide Q's head count Hq (", qd.heads,
                        ") (GQA/MQA)");
    if (!grouped_heads && kd.heads != qd.heads)
      return InputError(c, ik, "K", "head count (", kd.heads, ") must equal Q's (", qd.heads,
                        "): grouped K/V heads (GQA/MQA) need AttentionFlash");
  }

  g->layout = layout;
  g->batch = qd.batch;
  for (size_t i = 0; i < g->batch.size(); ++i)  // a dim unknown in Q may be known in K or V
    if (g->batch[i] < 0) g->batch[i] = kd.batch[i] >= 0 ? kd.batch[i] : vd.batch[i];
  g->hq = qd.heads;
  g->hkv = kd.heads >= 0 ? kd.heads : vd.heads;
  g->sq = qd.seq;
  g->sk = kd.seq >= 0 ? kd.seq : vd.seq;
  g->d = qd.dim >= 0 ? qd.dim : kd.dim;
  g->dv = vd.dim;
  g->o_shape = q.shape;
  g->o_shape.back() = g->dv;
  if (layout == AttentionLayout::kBhsd) {
    g->lse_shape.assign(q.shape.begin(), q.shape.end() - 1);
  } else {
    g->lse_shape = {g->batch[0], g->hq, g->sq};
  }
  g->q_rows = RowsOf(layout, {qd.batch, g->hq, g->sq, g->d});
  g->k_rows = RowsOf(layout, {kd.batch, g->hkv, g->sk, g->d});
  g->v_rows = RowsOf(layout, {vd.batch, g->hkv, g->sk, g->dv});
  g->o_rows = RowsOf(layout, {qd.batch, g->hq, g->sq, g->dv});
  return nullptr;
}

}  // namespace kaio
