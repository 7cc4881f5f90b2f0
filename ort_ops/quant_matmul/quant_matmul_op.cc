// com.kaio MatmulInt4 and MatmulInt8 (CPU kernels; both also on CUDA: matmul_int4_kernel.cuh,
// matmul_int8_kernel.cuh (W8A16), matmul_w8a8_sm80.cu (W8A8)).
//
// Contract (DESIGN.md, "Contract details"):
// MatmulInt4(A, B_packed, scales, zero_points?) -> Y: A float16/bfloat16 [..., M, K]; B_packed uint32
//   [N, K/8] (KAIO's INT4 layout); scales and zero_points [K/group_size, N] in A's type;
//   w[k, n] = (q[k, n] - zp[k/g, n]) * scale[k/g, n]; group_size in {32, 64, 128}; out_dtype 1 or A's type.
// MatmulInt8(A, B, scales, zero_points?) -> Y, B int8 [K, N]:
//   W8A8 (A int8): scales float32 with one element, no zero points, Y = float(sum int32(a) int32(b)) * scale
//   (exact integer accumulation), out_dtype 1 or 10.
//   W8A16 (A float16/bfloat16): scales (and zero_points) in A's type, [K/group_size, N] (group_size > 0)
//   or [1, N] / [N] (group_size 0, per channel); out_dtype 1 or A's type.
// The weights have no batch dims: A's leading dims flatten into the rows of one GEMM.
#include "common/cpu_convert.h"
#include "common/custom_op.h"
#include "op_families.h"
#include "quant_matmul/quant_dequant.h"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {
namespace {

enum : size_t { kA = 0, kB = 1, kScales = 2, kZeroPoints = 3 };

// What both kernels need once the inputs are validated.
struct QuantGeometry {
  ActivationDims a;
  int64_t n = 0;
};

// The weight-only modes' group parameters (scales, optional zero points, both in A's type) and
// out_dtype (float or A's type), shared by MatmulInt4 and MatmulInt8 W8A16.
OrtStatus* CheckGroupParamsAndOut(const ErrCtx& c, const TensorInfos& in, int64_t groups, int64_t n, bool per_channel,
                                  DType out_dtype) {
  KAIO_RETURN_IF_ERROR(
      CheckGroupTensor(c, kScales, "scales", in[kScales], "A", in[kA].type, groups, n, per_channel));
  if (in[kZeroPoints].present)
    KAIO_RETURN_IF_ERROR(
        CheckGroupTensor(c, kZeroPoints, "zero_points", in[kZeroPoints], "A", in[kA].type, groups, n, per_channel));
  return CheckOutDTypeFloatOr(c, out_dtype, "A", in[kA].type);
}

// Y's type and shape once an op's Geometry accepted the inputs.
template <class Op>
OrtStatus* ResolveQuantMatmul(const ErrCtx& c, const typename Op::Attrs& at, const TensorInfos& in, TensorInfos* out) {
  QuantGeometry g;
  KAIO_RETURN_IF_ERROR(Op::Geometry(c, at, in, &g));
  (*out)[0] = {true, at.out_dtype, g.a.OutShape(g.n)};
  return nullptr;
}

struct MatmulInt4Op {
  static constexpr const char* kName = "MatmulInt4";
  struct Attrs {
    int64_t group_size = 128;
    DType out_dtype = kF32;
  };
  static std::vector<IoSpec> Inputs() {
    return {{"A", {kF16, kBF16}, false, 1},
            {"B_packed", {kU32}, false, 1},
            {"scales", {kF16, kBF16}, false, 1},
            {"zero_points", {kF16, kBF16}, true, 1}};
  }
  static std::vector<IoSpec> Outputs() { return {{"Y", {kF32, kF16, kBF16}}}; }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    KAIO_RETURN_IF_ERROR(ReadInt4GroupSize(s, c, &a->group_size));
    // A's type is not known yet: Resolve narrows this to {float, A's type}.
    return ReadOutDType(s, c, {kF32, kF16, kBF16}, &a->out_dtype);
  }

  static OrtStatus* Geometry(const ErrCtx& c, const Attrs& at, const TensorInfos& in, QuantGeometry* g) {
    KAIO_RETURN_IF_ERROR(ResolveActivation(c, kA, "A", in[kA], &g->a));
    KAIO_RETURN_IF_ERROR(CheckGroupDivides(c, kA, "A", g->a.k, at.group_size));
    KAIO_RETURN_IF_ERROR(ResolveInt4Weight(c, kB, "B_packed", in[kB], g->a.k, &g->n));
    return CheckGroupParamsAndOut(c, in, GroupCount(g->a.k, at.group_size), g->n, false, at.out_dtype);
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    return ResolveQuantMatmul<MatmulInt4Op>(c, at, in, out);
  }

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    QuantGeometry g;
    KAIO_RETURN_IF_ERROR(Geometry(c, at, TensorInfos(in.begin(), in.end()), &g));
    const int64_t k = g.a.k, rows_per_group = RowsPerGroup(at.group_size, k);
    const std::vector<double> w = DequantizeInt4(in[kB], k, g.n, ToGroupParams(in[kScales], rows_per_group),
                                                 ToGroupParams(in[kZeroPoints], rows_per_group));
    const std::vector<double> y = GemmDouble(ToDouble(in[kA]), w, g.a.rows, k, g.n);
    StoreDouble(y.data(), static_cast<int64_t>(y.size()), out[0]);
    return nullptr;
  }

#ifdef KAIO_WITH_CUDA
  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    QuantGeometry g;
    KAIO_RETURN_IF_ERROR(Geometry(c, at, TensorInfos(in.begin(), in.end()), &g));
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, kA, "A", kRowsFlattened, g.a.rows, kMatmulInt4MaxRows));
    MatmulInt4Params p;
    p.a = in[kA].data;
    p.b = static_cast<const uint32_t*>(in[kB].data);
    p.scales = in[kScales].data;
    p.zero_points = in[kZeroPoints].present ? in[kZeroPoints].data : nullptr;
    p.y = out[0].data;
    p.bf16 = in[kA].type == kBF16;
    p.out_f32 = at.out_dtype == kF32;
    p.m = g.a.rows;
    p.n = g.n;
    p.k = g.a.k;
    p.group_size = static_cast<int>(at.group_size);
    p.sm = launch.sm;
    p.sm_count = launch.sm_count;
    CudaScratch partial;  // the Hopper GEMM's K slices' sums, or its dequantised weights
    KAIO_RETURN_IF_ERROR(partial.Allocate(launch, c, static_cast<size_t>(MatmulInt4ScratchBytes(p))));
    if (int e = RunMatmulInt4(p, partial.data(), launch.stream)) {
      if (e == kMisalignedOperands)
        return OpError(ORT_FAIL, c, "inputs 'A' and 'B_packed' must be 16-byte aligned on CUDA");
      return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    }
    return nullptr;
  }
#endif
};

struct MatmulInt8Op {
  static constexpr const char* kName = "MatmulInt8";
  struct Attrs {
    int64_t group_size = 0;
    DType out_dtype = kF32;
  };
  static std::vector<IoSpec> Inputs() {
    return {{"A", {kI8, kF16, kBF16}, false, 1},
            {"B", {kI8}, false, 1},
            {"scales", {kF32, kF16, kBF16}, false, 0},  // W8A8: shape [] allowed
            {"zero_points", {kF16, kBF16}, true, 1}};
  }
  static std::vector<IoSpec> Outputs() { return {{"Y", {kF32, kF16, kBF16}}}; }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    KAIO_RETURN_IF_ERROR(ReadInt8GroupSize(s, c, &a->group_size));
    // The mode (A's type) is not known yet: Resolve narrows this.
    return ReadOutDType(s, c, {kF32, kF16, kBF16}, &a->out_dtype);
  }

  static bool IsW8A8(const TensorInfos& in) { return in[kA].type == kI8; }

  static OrtStatus* Geometry(const ErrCtx& c, const Attrs& at, const TensorInfos& in, QuantGeometry* g) {
    KAIO_RETURN_IF_ERROR(ResolveActivation(c, kA, "A", in[kA], &g->a));
    if (IsW8A8(in)) {
      if (at.group_size != 0)
        return AttrError(c, "group_size", "must be 0 for W8A8 (A int8: one per-tensor scale), got ", at.group_size);
      KAIO_RETURN_IF_ERROR(ResolveInt8Weight(c, kB, "B", in[kB], g->a.k, &g->n));
      if (in[kScales].type != kF32)
        return InputError(c, kScales, "scales", "element type must be float for W8A8 (A int8), got ",
                          DTypeName(in[kScales].type));
      KAIO_RETURN_IF_ERROR(CheckOneElement(c, kScales, "scales", in[kScales]));
      if (in[kZeroPoints].present)
        return InputError(c, kZeroPoints, "zero_points", "must be absent for W8A8 (A int8: symmetric)");
      if (at.out_dtype != kF32 && at.out_dtype != kF16)
        return AttrError(c, "out_dtype", "must be 1 (float) or 10 (float16) for W8A8 (A int8), got ",
                         static_cast<int>(at.out_dtype), " (", DTypeName(at.out_dtype), ")");
      return nullptr;
    }
    KAIO_RETURN_IF_ERROR(CheckGroupDivides(c, kA, "A", g->a.k, at.group_size));
    KAIO_RETURN_IF_ERROR(ResolveInt8Weight(c, kB, "B", in[kB], g->a.k, &g->n));
    return CheckGroupParamsAndOut(c, in, GroupCount(g->a.k, at.group_size), g->n, at.group_size == 0,
                                  at.out_dtype);
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    return ResolveQuantMatmul<MatmulInt8Op>(c, at, in, out);
  }

  // W8A8: exact int64 sums of int8 products, then one multiplication by the scale in double.
  static std::vector<double> W8A8(const ConstTensor& a, const ConstTensor& b, double scale, int64_t rows, int64_t k,
                                  int64_t n) {
    const int8_t* av = a.as<int8_t>();
    const int8_t* bv = b.as<int8_t>();
    std::vector<double> y(static_cast<size_t>(rows * n));
    std::vector<int64_t> acc(static_cast<size_t>(n));
    for (int64_t i = 0; i < rows; ++i) {
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t p = 0; p < k; ++p) {
        const int64_t x = av[i * k + p];
        if (x == 0) continue;
        const int8_t* brow = bv + p * n;
        for (int64_t j = 0; j < n; ++j) acc[j] += x * brow[j];
      }
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = static_cast<double>(acc[j]) * scale;
    }
    return y;
  }

#ifdef KAIO_WITH_CUDA
  // Both modes run on CUDA (the same inputs as the CPU kernel): W8A16 in matmul_int8_*.cu, W8A8 in
  // matmul_w8a8_sm80.cu (and the int8 instance of the Hopper GEMM).
  static OrtStatus* ComputeCudaW8A8(const ErrCtx& c, const Attrs& at, const InputTensors& in,
                                    const OutputTensors& out, const CudaLaunch& launch, const QuantGeometry& g) {
    // s32 sums are exact while K * 2^14 < 2^31; the CPU kernel (int64 sums) has no such limit.
    if (g.a.k > kMatmulW8A8MaxK)
      return InputError(c, kA, "A", "K = ", g.a.k, " exceeds the CUDA W8A8 limit of ", kMatmulW8A8MaxK,
                        " (int32 accumulation of int8 products is exact only below 2^17 terms); run this node on "
                        "the CPU EP or split K");
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, kA, "A", kRowsFlattened, g.a.rows, kMatmulW8A8MaxRows));
    MatmulW8A8Params p;
    p.a = static_cast<const int8_t*>(in[kA].data);
    p.b = static_cast<const int8_t*>(in[kB].data);
    p.scale = static_cast<const float*>(in[kScales].data);
    p.y = out[0].data;
    p.out_f32 = at.out_dtype == kF32;
    p.m = g.a.rows;
    p.n = g.n;
    p.k = g.a.k;
    p.sm = launch.sm;
    p.sm_count = launch.sm_count;
    CudaScratch bt;  // B transposed to [N, K]
    KAIO_RETURN_IF_ERROR(bt.Allocate(launch, c, static_cast<size_t>(MatmulW8A8ScratchBytes(p))));
    if (int e = RunMatmulW8A8(p, bt.data(), launch.stream)) return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    return nullptr;
  }

  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    const TensorInfos infos(in.begin(), in.end());
    QuantGeometry g;
    KAIO_RETURN_IF_ERROR(Geometry(c, at, infos, &g));
    if (IsW8A8(infos)) return ComputeCudaW8A8(c, at, in, out, launch, g);
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, kA, "A", kRowsFlattened, g.a.rows, kMatmulInt8MaxRows));
    MatmulInt8Params p;
    p.a = in[kA].data;
    p.b = static_cast<const int8_t*>(in[kB].data);
    p.scales = in[kScales].data;
    p.zero_points = in[kZeroPoints].present ? in[kZeroPoints].data : nullptr;
    p.y = out[0].data;
    p.bf16 = in[kA].type == kBF16;
    p.out_f32 = at.out_dtype == kF32;
    p.m = g.a.rows;
    p.n = g.n;
    p.k = g.a.k;
    p.group_size = at.group_size;
    p.sm = launch.sm;
    p.sm_count = launch.sm_count;
    CudaScratch partial;  // split-K partial sums of the GEMV regime
    KAIO_RETURN_IF_ERROR(partial.Allocate(launch, c, static_cast<size_t>(MatmulInt8ScratchBytes(p))));
    if (int e = RunMatmulInt8(p, partial.data(), launch.stream))
      return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    return nullptr;
  }
#endif

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    const TensorInfos infos(in.begin(), in.end());
    QuantGeometry g;
    KAIO_RETURN_IF_ERROR(Geometry(c, at, infos, &g));
    const int64_t k = g.a.k;
    std::vector<double> y;
    if (IsW8A8(infos)) {
      y = W8A8(in[kA], in[kB], static_cast<double>(in[kScales].as<float>()[0]), g.a.rows, k, g.n);
    } else {
      const int64_t rows_per_group = RowsPerGroup(at.group_size, k);
      const std::vector<double> w = DequantizeInt8(in[kB], k, g.n, ToGroupParams(in[kScales], rows_per_group),
                                                   ToGroupParams(in[kZeroPoints], rows_per_group));
      y = GemmDouble(ToDouble(in[kA]), w, g.a.rows, k, g.n);
    }
    StoreDouble(y.data(), static_cast<int64_t>(y.size()), out[0]);
    return nullptr;
  }
};

}  // namespace

void AddQuantMatmulOps(OpList& list) {
  AddCpuOp<MatmulInt4Op>(list);
  AddCpuOp<MatmulInt8Op>(list);
#ifdef KAIO_WITH_CUDA
  AddCudaOp<MatmulInt4Op>(list);
  AddCudaOp<MatmulInt8Op>(list);
#endif
}

}  // namespace kaio
