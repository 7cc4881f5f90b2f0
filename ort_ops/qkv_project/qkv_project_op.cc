// com.kaio QkvProjectInt8 and QkvProjectInt4 (CPU kernels; on CUDA QkvProjectInt4 through the
// MatmulInt4 kernels, the three projections in one launch, QkvProjectInt8 through MatmulInt8's
// W8A16 kernels, one launch per projection).
//
// Contract (DESIGN.md, "Contract details"): three weight-only quantized projections of one input,
// (Q, K, V) = (X Wq * sq + bq, X Wk * sk + bk, X Wv * sv + bv), written in X's type.
// X float16/bfloat16 [..., M, K]; Nq, Nk, Nv may differ (GQA); biases optional, X's type, [N*],
// all three or none.
//   Int8: W* int8 [K, N*]; s* float32 with one element ([] or [1]) or [N*] (per channel).
//   Int4: W* uint32 [N*, K/8] (MatmulInt4's layout); s* X's type [K/group_size, N*]; group_size in
//         {32, 64, 128} (default 128); no zero points.
// The two ops differ only by the weight format (the traits below).
#include <algorithm>

#include "common/cpu_convert.h"
#include "common/custom_op.h"
#include "op_families.h"
#include "quant_matmul/quant_dequant.h"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
namespace {

enum : size_t { kX = 0, kW = 1, kS = 4, kBias = 7 };
constexpr const char* kWNames[3] = {"Wq", "Wk", "Wv"};
constexpr const char* kSNames[3] = {"sq", "sk", "sv"};
constexpr const char* kBNames[3] = {"bq", "bk", "bv"};

struct Int8Weights {
  static constexpr const char* kName = "QkvProjectInt8";
  static constexpr int64_t kCudaMaxRows = kMatmulInt8MaxRows;
  static constexpr DType kWeightType = kI8;
  static std::vector<DType> ScaleTypes() { return {kF32}; }
  static constexpr int kScaleMinRank = 0;  // shape [] allowed
  struct Attrs {};
  static OrtStatus* ReadAttrs(const AttrSource&, const ErrCtx&, Attrs*) { return nullptr; }
  static OrtStatus* CheckK(const ErrCtx&, const Attrs&, int64_t) { return nullptr; }
  static OrtStatus* ResolveWeight(const ErrCtx& c, size_t index, const char* name, const TensorInfo& w, int64_t k,
                                  int64_t* n) {
    return ResolveInt8Weight(c, index, name, w, k, n);
  }
  // One element (per tensor) or [N] (per channel); float32 by the IoSpec.
  static OrtStatus* CheckScales(const ErrCtx& c, const Attrs&, size_t index, const char* name, const TensorInfo& s,
                                DType, int64_t, int64_t n) {
    return CheckOneElement(c, index, name, s, true, n);
  }
  static std::vector<double> Dequantize(const Attrs&, const ConstTensor& w, const ConstTensor& s, int64_t k,
                                        int64_t n) {
    // A [N] scale is one group spanning K; one element broadcasts (GroupParams).
    return DequantizeInt8(w, k, n, ToGroupParams(s, RowsPerGroup(0, k)), GroupParams{});
  }
#ifdef KAIO_WITH_CUDA
  // MatmulInt8's W8A16 kernels with the integer weights exact in X's type, the f32 sums times the
  // float scale (one or per channel) plus the bias, rounded once: one launch over the three
  // projections at M <= 16 (the decode kernel), else three.
  static OrtStatus* RunCuda(const ErrCtx& c, const Attrs&, int64_t rows, int64_t k, const int64_t* n, bool bias,
                            const InputTensors& in, const OutputTensors& out, const CudaLaunch& launch) {
    MatmulInt8Params seg[3];
    for (int i = 0; i < 3; ++i) {
      MatmulInt8Params& p = seg[i];
      p.a = in[kX].data;
      p.b = static_cast<const int8_t*>(in[kW + i].data);
      p.out_scale = static_cast<const float*>(in[kS + i].data);
      p.out_scale_per_channel = in[kS + i].rank() == 1 && in[kS + i].dim(0) > 1;  // else one element
      p.bias = bias ? in[kBias + i].data : nullptr;
      p.y = out[i].data;
      p.bf16 = in[kX].type == kBF16;
      p.out_f32 = false;
      p.m = rows;
      p.n = n[i];
      p.k = k;
      p.sm = launch.sm;
      p.sm_count = launch.sm_count;
    }
    CudaScratch partial;  // reused by the three launches where there are three: in order on ORT's stream
    KAIO_RETURN_IF_ERROR(partial.Allocate(launch, c, static_cast<size_t>(MatmulInt8ScratchBytes(seg, 3))));
    if (int e = RunMatmulInt8(seg, 3, partial.data(), launch.stream))
      return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    return nullptr;
  }
#endif
};

struct Int4Weights {
  static constexpr const char* kName = "QkvProjectInt4";
  static constexpr int64_t kCudaMaxRows = kMatmulInt4MaxRows;
  static constexpr DType kWeightType = kU32;
  static std::vector<DType> ScaleTypes() { return {kF16, kBF16}; }
  static constexpr int kScaleMinRank = 1;
  struct Attrs {
    int64_t group_size = 128;
  };
  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    return ReadInt4GroupSize(s, c, &a->group_size);
  }
  static OrtStatus* CheckK(const ErrCtx& c, const Attrs& at, int64_t k) {
    return CheckGroupDivides(c, kX, "X", k, at.group_size);
  }
  static OrtStatus* ResolveWeight(const ErrCtx& c, size_t index, const char* name, const TensorInfo& w, int64_t k,
                                  int64_t* n) {
    return ResolveInt4Weight(c, index, name, w, k, n);
  }
  static OrtStatus* CheckScales(const ErrCtx& c, const Attrs& at, size_t index, const char* name,
                                const TensorInfo& s, DType x_type, int64_t k, int64_t n) {
    return CheckGroupTensor(c, index, name, s, "X", x_type, GroupCount(k, at.group_size), n, false);
  }
  static std::vector<double> Dequantize(const Attrs& at, const ConstTensor& w, const ConstTensor& s, int64_t k,
                                        int64_t n) {
    return DequantizeInt4(w, k, n, ToGroupParams(s, RowsPerGroup(at.group_size, k)), GroupParams{});
  }
#ifdef KAIO_WITH_CUDA
  // The three projections as segments of one MatmulInt4 launch (matmul_int4_kernel.cuh): the
  // kernels' column blocks run over Q's, K's and V's columns in turn, so each column is computed
  // exactly as a MatmulInt4 with out_dtype = X's type would compute it (plus the bias in f32).
  static OrtStatus* RunCuda(const ErrCtx& c, const Attrs& at, int64_t rows, int64_t k, const int64_t* n, bool bias,
                            const InputTensors& in, const OutputTensors& out, const CudaLaunch& launch) {
    MatmulInt4Params seg[3];
    for (int i = 0; i < 3; ++i) {
      MatmulInt4Params& p = seg[i];
      p.a = in[kX].data;
      p.b = static_cast<const uint32_t*>(in[kW + i].data);
      p.scales = in[kS + i].data;
      p.bias = bias ? in[kBias + i].data : nullptr;
      p.y = out[i].data;
      p.bf16 = in[kX].type == kBF16;
      p.out_f32 = false;
      p.m = rows;
      p.n = n[i];
      p.k = k;
      p.group_size = static_cast<int>(at.group_size);
      p.sm = launch.sm;
      p.sm_count = launch.sm_count;
    }
    CudaScratch partial;  // only where one projection alone has columns and takes the Hopper GEMM's regimes
    KAIO_RETURN_IF_ERROR(partial.Allocate(launch, c, static_cast<size_t>(MatmulInt4ScratchBytes(seg, 3))));
    if (int e = RunMatmulInt4(seg, 3, partial.data(), launch.stream)) {
      if (e == kMisalignedOperands)
        return OpError(ORT_FAIL, c, "inputs 'X', 'Wq', 'Wk' and 'Wv' must be 16-byte aligned on CUDA");
      return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    }
    return nullptr;
  }
#endif
};

template <class Fmt>
struct QkvProjectOp {
  static constexpr const char* kName = Fmt::kName;
  using Attrs = typename Fmt::Attrs;

  static std::vector<IoSpec> Inputs() {
    std::vector<IoSpec> in{{"X", {kF16, kBF16}, false, 1}};
    for (const char* w : kWNames) in.push_back({w, {Fmt::kWeightType}, false, 1});
    for (const char* s : kSNames) in.push_back({s, Fmt::ScaleTypes(), false, Fmt::kScaleMinRank});
    for (const char* b : kBNames) in.push_back({b, {kF16, kBF16}, true, 1});
    return in;
  }
  static std::vector<IoSpec> Outputs() { return {{"Q", {kF16, kBF16}, false, 1, 0}, {"K", {kF16, kBF16}, false, 1, 0}, {"V", {kF16, kBF16}, false, 1, 0}}; }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) { return Fmt::ReadAttrs(s, c, a); }

  struct Geometry {
    ActivationDims x;
    int64_t n[3] = {0, 0, 0};
    bool bias = false;
  };

  static OrtStatus* ResolveGeometry(const ErrCtx& c, const Attrs& at, const TensorInfos& in, Geometry* g) {
    KAIO_RETURN_IF_ERROR(ResolveActivation(c, kX, "X", in[kX], &g->x));
    KAIO_RETURN_IF_ERROR(Fmt::CheckK(c, at, g->x.k));
    const DType xt = in[kX].type;
    for (size_t i = 0; i < 3; ++i) {
      KAIO_RETURN_IF_ERROR(Fmt::ResolveWeight(c, kW + i, kWNames[i], in[kW + i], g->x.k, &g->n[i]));
      KAIO_RETURN_IF_ERROR(Fmt::CheckScales(c, at, kS + i, kSNames[i], in[kS + i], xt, g->x.k, g->n[i]));
    }
    int given = 0;
    for (size_t i = 0; i < 3; ++i) given += in[kBias + i].present ? 1 : 0;
    g->bias = given == 3;
    if (given != 0 && given != 3) {
      const size_t missing = !in[kBias].present ? 0 : !in[kBias + 1].present ? 1 : 2;
      return InputError(c, kBias + missing, kBNames[missing],
                        "is missing: biases must be given all three (bq, bk, bv) or none");
    }
    for (size_t i = 0; g->bias && i < 3; ++i) {
      const TensorInfo& b = in[kBias + i];
      KAIO_RETURN_IF_ERROR(CheckSameType(c, kBias + i, kBNames[i], b, "X", xt));
      if (b.rank() != 1 || !DimsMatch(b.dim(0), g->n[i]))
        return InputError(c, kBias + i, kBNames[i], "shape must be [N] = [", g->n[i] < 0 ? "?" : std::to_string(g->n[i]),
                          "] (", kWNames[i], "'s output columns), got ", ShapeStr(b.shape));
    }
    return nullptr;
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    Geometry g;
    KAIO_RETURN_IF_ERROR(ResolveGeometry(c, at, in, &g));
    for (size_t i = 0; i < 3; ++i) (*out)[i] = {true, in[kX].type, g.x.OutShape(g.n[i])};
    return nullptr;
  }

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    Geometry g;
    KAIO_RETURN_IF_ERROR(ResolveGeometry(c, at, TensorInfos(in.begin(), in.end()), &g));
    const std::vector<double> x = ToDouble(in[kX]);
    for (size_t i = 0; i < 3; ++i) {
      const std::vector<double> w = Fmt::Dequantize(at, in[kW + i], in[kS + i], g.x.k, g.n[i]);
      const std::vector<double> bias = g.bias ? ToDouble(in[kBias + i]) : std::vector<double>{};
      const std::vector<double> y = GemmDouble(x, w, g.x.rows, g.x.k, g.n[i], bias);
      StoreDouble(y.data(), static_cast<int64_t>(y.size()), out[i]);
    }
    return nullptr;
  }

#ifdef KAIO_WITH_CUDA
  // Instantiated only for formats with a CUDA kernel (Fmt::RunCuda; QkvProjectInt4).
  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    Geometry g;
    KAIO_RETURN_IF_ERROR(ResolveGeometry(c, at, TensorInfos(in.begin(), in.end()), &g));
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, kX, "X", kRowsFlattened, g.x.rows, Fmt::kCudaMaxRows));
    return Fmt::RunCuda(c, at, g.x.rows, g.x.k, g.n, g.bias, in, out, launch);
  }
#endif
};

}  // namespace

void AddQkvProjectOps(OpList& list) {
  AddCpuOp<QkvProjectOp<Int8Weights>>(list);
  AddCpuOp<QkvProjectOp<Int4Weights>>(list);
#ifdef KAIO_WITH_CUDA
  AddCudaOp<QkvProjectOp<Int8Weights>>(list);
  AddCudaOp<QkvProjectOp<Int4Weights>>(list);
#endif
}

}  // namespace kaio
