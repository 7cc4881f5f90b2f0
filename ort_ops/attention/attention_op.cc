// com.kaio AttentionTc, AttentionTcCausal, AttentionFlash, AttentionFlashCausal and AttentionFlashGrad.
//
// Contract (DESIGN.md, "Contract details"): per query head h, O = softmax(scale * Q K^T) V over
// kv head h / (Hq / Hkv), the causal mask aligned bottom-right; LSE is the natural-log logsumexp of
// each row's scaled, masked scores, -inf (and a zero output row) where a query sees no key.
// AttentionFlashGrad(dO, Q, K, V, O, LSE) recomputes P = exp(S - LSE) and returns the exact
// gradient, dK and dV summed over the query heads that share a kv head.
#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/attention_geometry.h"
#include "attention/attention_params.h"
#include "common/cpu_convert.h"
#include "common/custom_op.h"
#include "common/shape_match.h"
#include "op_families.h"

namespace kaio {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double Dot(const double* a, const double* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += alpha * x
void Axpy(double alpha, const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// scores[j] = scale * q . K[b, kvh, j] for the n keys the query sees; returns their max.
double ScoreRow(const AttentionGeometry& g, const double* q_row, const double* k, int64_t b, int64_t kvh, int64_t n,
                double scale, double* scores) {
  double m = kNegInf;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = scale * Dot(q_row, k + g.k_rows(b, kvh, j), g.d);
    m = std::max(m, scores[j]);
  }
  return m;
}

// O (zero-initialised, O's layout) and, when lse is non-null, LSE [..., Hq, Sq]. Keeps one row
// of Sk scores at a time.
void AttentionCpu(const AttentionGeometry& g, double scale, bool causal, const double* q, const double* k,
                  const double* v, double* o, double* lse) {
  std::vector<double> p(static_cast<size_t>(g.sk));
  for (int64_t b = 0; b < g.batch_count(); ++b)
    for (int64_t h = 0; h < g.hq; ++h) {
      const int64_t kvh = h / g.group();
      for (int64_t i = 0; i < g.sq; ++i) {
        const int64_t n = VisibleKeys(causal, i, g.sq, g.sk);
        double row_lse = kNegInf;
        if (n > 0) {
          const double m = ScoreRow(g, q + g.q_rows(b, h, i), k, b, kvh, n, scale, p.data());
          double sum = 0.0;
          for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - m));
          double* o_row = o + g.o_rows(b, h, i);
          for (int64_t j = 0; j < n; ++j) Axpy(p[j] / sum, v + g.v_rows(b, kvh, j), o_row, g.dv);
          row_lse = m + std::log(sum);
        }
        if (lse) lse[g.lse_index(b, h, i)] = row_lse;
      }
    }
}

struct GradInputs {
  const double *d_o, *q, *k, *v, *o, *lse;
};
struct GradOutputs {
  double *dq, *dk, *dv;  // zero-initialised, in Q's, K's and V's layout
};

// FlashAttention-2's backward, row by row: P = exp(S - LSE), D_i = dO_i . O_i,
// dS = P * (dO V^T - D_i), dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO.
void AttentionGradCpu(const AttentionGeometry& g, double scale, bool causal, const GradInputs& in,
                      const GradOutputs& out) {
  std::vector<double> p(static_cast<size_t>(g.sk));
  for (int64_t b = 0; b < g.batch_count(); ++b)
    for (int64_t h = 0; h < g.hq; ++h) {
      const int64_t kvh = h / g.group();
      for (int64_t i = 0; i < g.sq; ++i) {
        const int64_t n = VisibleKeys(causal, i, g.sq, g.sk);
        if (n == 0) continue;  // the row is constant zero: no gradient flows
        const double* q_row = in.q + g.q_rows(b, h, i);
        const double* do_row = in.d_o + g.o_rows(b, h, i);
        double* dq_row = out.dq + g.q_rows(b, h, i);
        ScoreRow(g, q_row, in.k, b, kvh, n, scale, p.data());
        const double row_lse = in.lse[g.lse_index(b, h, i)];
        const double d_i = Dot(do_row, in.o + g.o_rows(b, h, i), g.dv);
        for (int64_t j = 0; j < n; ++j) {
          const double p_ij = std::exp(p[j] - row_lse);
          const int64_t kj = g.k_rows(b, kvh, j), vj = g.v_rows(b, kvh, j);
          const double ds = p_ij * (Dot(do_row, in.v + vj, g.dv) - d_i);
          Axpy(scale * ds, in.k + kj, dq_row, g.d);
          Axpy(scale * ds, q_row, out.dk + kj, g.d);
          Axpy(p_ij, do_row, out.dv + vj, g.dv);
        }
      }
    }
}

// Q, K, V and O, dO: float16 and bfloat16 everywhere; float32 for the Flash ops.
std::vector<DType> AttentionTypes(bool with_f32) {
  return with_f32 ? std::vector<DType>{kF16, kBF16, kF32} : std::vector<DType>{kF16, kBF16};
}

#ifdef KAIO_WITH_CUDA
// Sizes, element strides and the effective scale of the CUDA params (AttentionFlashParams,
// AttentionFlashGradParams) from the resolved geometry.
template <class Params>
void SetGeometry(const AttentionGeometry& g, const AttentionAttrs& at, Params* p) {
  p->batch = g.batch_count();
  p->hq = g.hq;
  p->hkv = g.hkv;
  p->sq = g.sq;
  p->sk = g.sk;
  p->d = g.d;
  p->dv = g.dv;
  auto strides = [](const RowIndexer& r) { return AttentionStrides{r.batch_stride, r.head_stride, r.row_stride}; };
  p->q_str = strides(g.q_rows);
  p->k_str = strides(g.k_rows);
  p->v_str = strides(g.v_rows);
  p->o_str = strides(g.o_rows);
  p->scale = static_cast<float>(EffectiveScale(at, g.d));
}
#endif

enum class AttentionKernel { kTc, kFlash };

template <AttentionKernel kKernel, bool kCausal>
struct AttentionOp {
  static constexpr bool kFlash = kKernel == AttentionKernel::kFlash;
  static constexpr const char* kName = kFlash ? (kCausal ? "AttentionFlashCausal" : "AttentionFlash")
                                              : (kCausal ? "AttentionTcCausal" : "AttentionTc");
  using Attrs = AttentionAttrs;

  static std::vector<IoSpec> Inputs() {
    const std::vector<DType> t = AttentionTypes(kFlash);
    return {{"Q", t, false, 2}, {"K", t, false, 2}, {"V", t, false, 2}};
  }
  static std::vector<IoSpec> Outputs() {
    std::vector<IoSpec> out{{"O", {kF32, kF16, kBF16}}};
    if (kFlash) out.push_back({"LSE", {kF32}, true});
    return out;
  }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    a->causal = kCausal;
    KAIO_RETURN_IF_ERROR(ReadScaleAndLayout(s, c, a));
    // The input type is not known yet: Resolve narrows this to {float, Q's type}.
    return ReadOutDType(s, c, {kF32, kF16, kBF16}, &a->out_dtype);
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    AttentionGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveAttention(c, in[0], in[1], in[2], 0, at.layout, kFlash, &g));
    if (at.out_dtype != kF32 && at.out_dtype != in[0].type)
      return AttrError(c, "out_dtype", "must be 1 (float) or Q's element type (", static_cast<int>(in[0].type), ", ",
                       DTypeName(in[0].type), "), got ", static_cast<int>(at.out_dtype), " (",
                       DTypeName(at.out_dtype), ")");
    (*out)[0] = {true, at.out_dtype, g.o_shape};
    if (kFlash) (*out)[1] = {true, kF32, g.lse_shape};
    return nullptr;
  }

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    AttentionGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveAttention(c, in[0], in[1], in[2], 0, at.layout, kFlash, &g));
    const std::vector<double> q = ToDouble(in[0]), k = ToDouble(in[1]), v = ToDouble(in[2]);
    std::vector<double> o(static_cast<size_t>(NumElements(g.o_shape)), 0.0);
    const bool want_lse = out.size() > 1 && out[1].present;
    std::vector<double> lse(want_lse ? static_cast<size_t>(NumElements(g.lse_shape)) : 0);
    AttentionCpu(g, EffectiveScale(at, g.d), kCausal, q.data(), k.data(), v.data(), o.data(),
                 want_lse ? lse.data() : nullptr);
    StoreDouble(o.data(), static_cast<int64_t>(o.size()), out[0]);
    if (want_lse) StoreDouble(lse.data(), static_cast<int64_t>(lse.size()), out[1]);
    return nullptr;
  }

#ifdef KAIO_WITH_CUDA
  // The CUDA kernels take float16 and bfloat16; a float32 node (AttentionFlash*) stays on the CPU EP.
  static std::vector<IoSpec> CudaInputs() {
    std::vector<IoSpec> in = Inputs();
    for (IoSpec& s : in) s.types = {kF16, kBF16};
    return in;
  }

  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    AttentionGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveAttention(c, in[0], in[1], in[2], 0, at.layout, kFlash, &g));
    AttentionFlashParams p;
    p.q = in[0].data;
    p.k = in[1].data;
    p.v = in[2].data;
    p.o = out[0].data;
    p.lse = out.size() > 1 && out[1].present ? static_cast<float*>(out[1].data) : nullptr;
    p.in_type = in[0].type == kF16 ? AttentionElem::kF16 : AttentionElem::kBF16;
    p.out_f32 = at.out_dtype == kF32;
    p.causal = kCausal;
    SetGeometry(g, at, &p);
    p.sm_count = launch.sm_count;
    p.sm = launch.sm;
    int e = 0;
    if constexpr (kFlash) {
      CudaScratch workspace;
      KAIO_RETURN_IF_ERROR(workspace.Allocate(launch, c, AttentionFlashWorkspaceBytes(p)));
      e = RunAttentionFlash(p, workspace.data(), launch.stream);
    } else {
      // The scores of a query tile against every key live in shared memory: Sk is capped by the device.
      const int64_t max_sk = AttentionTcMaxSk(p.d, p.dv, launch.smem_optin);
      if (p.sk > max_sk && p.batch * p.hq * p.sq > 0)  // (an empty O needs no scores: as on the CPU)
        return InputError(c, 1, "K", "Sk (", p.sk, ") must be at most ", max_sk, " for ", kName,
                          " on this GPU (D = ", p.d, ", Dv = ", p.dv, "): a query tile's scores against every key are "
                          "kept in the block's shared memory (", launch.smem_optin,
                          " bytes on this device); use AttentionFlash", kCausal ? "Causal" : "",
                          " for longer key sequences");
      e = RunAttentionTc(p, launch.smem_optin, launch.smem_per_sm, 0, launch.stream);
      if (e == -2) return OpError(ORT_FAIL, c, "no AttentionTc tile fits Sk = ", p.sk, " (internal error)");
    }
    if (e == -1)
      return InputError(c, 0, "Q", "batch (", p.batch, ") and head count (", p.hq,
                        ") must each be at most 65535 on CUDA (the launch grid's limit)");
    if (e) return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    return nullptr;
  }
#endif
};

struct AttentionFlashGradOp {
  static constexpr const char* kName = "AttentionFlashGrad";
  using Attrs = AttentionAttrs;
  enum : size_t { kDO, kQ, kK, kV, kO, kLse };

  static std::vector<IoSpec> Inputs() {
    const std::vector<DType> t = AttentionTypes(true);
    return {{"dO", t, false, 2}, {"Q", t, false, 2}, {"K", t, false, 2},
            {"V", t, false, 2},  {"O", t, false, 2}, {"LSE", {kF32}, false, 1}};
  }
  static std::vector<IoSpec> Outputs() {
    const std::vector<DType> t = AttentionTypes(true);
    return {{"dQ", t, true, 1, kQ}, {"dK", t, true, 1, kQ}, {"dV", t, true, 1, kQ}};  // any may be left out
  }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    KAIO_RETURN_IF_ERROR(ReadScaleAndLayout(s, c, a));
    KAIO_RETURN_IF_ERROR(ReadBool(s, c, "causal", false, &a->causal));
    return ReadBool(s, c, "deterministic", false, &a->deterministic);  // the CPU kernel always is
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    AttentionGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveAttention(c, in[kQ], in[kK], in[kV], kQ, at.layout, true, &g));
    const DType qt = in[kQ].type;
    for (auto [index, name] : {std::pair<size_t, const char*>{kDO, "dO"}, {kO, "O"}}) {
      if (in[index].type != kF32 && in[index].type != qt)
        return InputError(c, index, name, "element type must be float or Q's (", DTypeName(qt), "), got ",
                          DTypeName(in[index].type));
      if (!ShapesMatch(in[index].shape, g.o_shape))
        return InputError(c, index, name, "shape must be the forward output's ", ShapeStr(g.o_shape), ", got ",
                          ShapeStr(in[index].shape));
    }
    if (!ShapesMatch(in[kLse].shape, g.lse_shape))
      return InputError(c, kLse, "LSE", "shape must be the forward's LSE shape ", ShapeStr(g.lse_shape),
                        " ([..., Hq, Sq]), got ", ShapeStr(in[kLse].shape));
    for (size_t i = 0; i < 3; ++i) (*out)[i] = {true, qt, in[kQ + i].shape};
    return nullptr;
  }

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    AttentionGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveAttention(c, in[kQ], in[kK], in[kV], kQ, at.layout, true, &g));
    const std::vector<double> d_o = ToDouble(in[kDO]), q = ToDouble(in[kQ]), k = ToDouble(in[kK]),
                              v = ToDouble(in[kV]), o = ToDouble(in[kO]), lse = ToDouble(in[kLse]);
    std::vector<double> dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
    AttentionGradCpu(g, EffectiveScale(at, g.d), at.causal,
                     {d_o.data(), q.data(), k.data(), v.data(), o.data(), lse.data()},
                     {dq.data(), dk.data(), dv.data()});
    StoreDouble(dq.data(), static_cast<int64_t>(dq.size()), out[0]);
    StoreDouble(dk.data(), static_cast<int64_t>(dk.size()), out[1]);
    StoreDouble(dv.data(), static_cast<int64_t>(dv.size()), out[2]);
    return nullptr;
  }

#ifdef KAIO_WITH_CUDA
  // Q, K, V float16 or bfloat16 (a float32 node stays on the CPU EP); dO and O float or Q's type.
  static std::vector<IoSpec> CudaInputs() {
    std::vector<IoSpec> in = Inputs();
    for (size_t i : {kQ, kK, kV}) in[i].types = {kF16, kBF16};
    for (size_t i : {kDO, kO}) in[i].types = {kF32, kF16, kBF16};
    return in;
  }

  // attention_flash_grad_sm80.cu: a prep pass (Dvec, dO rounded when float), one block per K/V
  // tile and kv head accumulating dK, dV over the group's query heads (on sm_90 the wgmma kernel of
  // attention_flash_grad_sm90.cu where it fits), dQ by f32 atomics (or, with deterministic = 1, a
  // second kernel per query tile).
  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    AttentionGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveAttention(c, in[kQ], in[kK], in[kV], kQ, at.layout, true, &g));
    AttentionFlashGradParams p;
    p.d_o = in[kDO].data;
    p.q = in[kQ].data;
    p.k = in[kK].data;
    p.v = in[kV].data;
    p.o = in[kO].data;
    p.lse = static_cast<const float*>(in[kLse].data);
    p.dq_out = out[0].present ? out[0].data : nullptr;
    p.dk_out = out[1].present ? out[1].data : nullptr;
    p.dv_out = out[2].present ? out[2].data : nullptr;
    p.in_type = in[kQ].type == kF16 ? AttentionElem::kF16 : AttentionElem::kBF16;
    p.do_f32 = in[kDO].type == kF32;
    p.o_f32 = in[kO].type == kF32;
    p.causal = at.causal;
    p.deterministic = at.deterministic;
    p.sm = launch.sm;
    SetGeometry(g, at, &p);
    CudaScratch workspace;
    KAIO_RETURN_IF_ERROR(workspace.Allocate(launch, c, AttentionFlashGradWorkspaceBytes(p)));
    const int e = RunAttentionFlashGrad(p, workspace.data(), launch.stream);
    if (e == -1)
      return InputError(c, kQ, "Q", "batch (", p.batch, ") and head count (", p.hq,
                        ") must each be at most 65535 on CUDA (the launch grid's limit)");
    if (e) return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    return nullptr;
  }
#endif
};

}  // namespace

void AddAttentionOps(OpList& list) {
  AddCpuOp<AttentionOp<AttentionKernel::kTc, false>>(list);
  AddCpuOp<AttentionOp<AttentionKernel::kTc, true>>(list);
  AddCpuOp<AttentionOp<AttentionKernel::kFlash, false>>(list);
  AddCpuOp<AttentionOp<AttentionKernel::kFlash, true>>(list);
  AddCpuOp<AttentionFlashGradOp>(list);
#ifdef KAIO_WITH_CUDA
  AddCudaOp<AttentionOp<AttentionKernel::kTc, false>>(list);
  AddCudaOp<AttentionOp<AttentionKernel::kTc, true>>(list);
  AddCudaOp<AttentionOp<AttentionKernel::kFlash, false>>(list);
  AddCudaOp<AttentionOp<AttentionKernel::kFlash, true>>(list);
  AddCudaOp<AttentionFlashGradOp>(list);
#endif
}

}  // namespace kaio
