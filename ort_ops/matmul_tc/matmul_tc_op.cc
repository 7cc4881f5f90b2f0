// com.kaio MatmulTc, MatmulTcBf16, MatmulTcAsync, MatmulTcBf16Async and MatmulTcGrad.
//
// Contract (DESIGN.md): Y[..., M, N] = A[..., M, K] * B, B [K, N] or [..., K, N] (trans_b=1:
// [..., N, K] and Y = A * B^T), batch dims broadcast like ONNX MatMul, f32 accumulation,
// out_dtype 1 (float, default) or the input type. Any M, N, K >= 0.
// MatmulTcGrad(dY, A, B) -> dA = dY * op(B)^T, dB = sum over broadcast batch of A^T * dY
// (trans_b: dB = dY^T * A), each in its operand's type and shape.
#include <algorithm>

#include "common/cpu_convert.h"
#include "common/custom_op.h"
#include "matmul_tc/matmul_geometry.h"
#include "matmul_tc/matmul_tc_params.h"
#include "op_families.h"

namespace kaio {
namespace {

// C[M, N] += A[M, K] * op(B) over doubles; trans_b: B is [N, K].
void GemmAcc(const double* a, const double* b, double* c, int64_t m, int64_t n, int64_t k, bool trans_b) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < k; ++p) {
      double av = a[i * k + p];
      if (av == 0.0) continue;
      if (trans_b) {
        for (int64_t j = 0; j < n; ++j) c[i * n + j] += av * b[j * k + p];
      } else {
        const double* brow = b + p * n;
        for (int64_t j = 0; j < n; ++j) c[i * n + j] += av * brow[j];
      }
    }
  }
}

#ifdef KAIO_WITH_CUDA
// The CUDA kernels' batch rule (MatmulTcParams holds kMatmulMaxBatchRank batch dims), named after
// input `index` ("A" of MatmulTc, MatmulTcGrad).
OrtStatus* CheckCudaBatchRank(const ErrCtx& c, size_t index, const MatmulGeometry& g) {
  if (static_cast<int>(g.out_batch.size()) > kMatmulMaxBatchRank)
    return InputError(c, index, "A", "at most ", kMatmulMaxBatchRank, " batch dims are supported on CUDA, got ",
                      g.out_batch.size());
  return nullptr;
}

// One MatmulTc product on ORT's stream: where a single batch's output tiles would leave most SMs
// idle (MatmulTcKSplit), K slices summed from ORT scratch; else one launch.
OrtStatus* RunProduct(const ErrCtx& c, const CudaLaunch& launch, MatmulTcParams p) {
  p.sm = launch.sm;
  p.sm_count = launch.sm_count;
  CudaScratch partial;
  p.k_split = MatmulTcKSplit(p);
  if (p.k_split > 1) {
    KAIO_RETURN_IF_ERROR(partial.Allocate(launch, c, static_cast<size_t>(p.k_split * p.m * p.n) * sizeof(float)));
    p.partial = static_cast<float*>(partial.data());
  }
  if (int e = RunMatmulTc(p, launch.stream)) return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
  return nullptr;
}

// The output batch of a product as MatmulTcParams' batch fields.
void SetBatch(const Shape& out_batch, MatmulTcParams* p) {
  p->batch_rank = static_cast<int>(out_batch.size());
  p->batch_count = NumElements(out_batch);
  for (int i = 0; i < p->batch_rank; ++i) p->batch_dims[i] = out_batch[i];
}
#endif

template <DType kT, bool kAsync>
struct MatmulTcOp {
  static constexpr const char* kName = kT == kF16 ? (kAsync ? "MatmulTcAsync" : "MatmulTc")
                                                  : (kAsync ? "MatmulTcBf16Async" : "MatmulTcBf16");
  struct Attrs {
    DType out_dtype = kF32;
    bool trans_b = false;
  };
  static std::vector<IoSpec> Inputs() { return {{"A", {kT}, false, 2}, {"B", {kT}, false, 2}}; }
  static std::vector<IoSpec> Outputs() { return {{"Y", {kF32, kT}}}; }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    KAIO_RETURN_IF_ERROR(ReadOutDType(s, c, {kF32, kT}, &a->out_dtype));
    return ReadBool(s, c, "trans_b", false, &a->trans_b);
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    MatmulGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveMatmul(c, in[0], in[1], at.trans_b, "A", "B", &g));
    (*out)[0].type = at.out_dtype;
    (*out)[0].shape = g.y_shape;
    return nullptr;
  }

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    MatmulGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveMatmul(c, in[0], in[1], at.trans_b, "A", "B", &g));
    std::vector<double> a = ToDouble(in[0]), b = ToDouble(in[1]);
    const int64_t batches = NumElements(g.out_batch), mk = g.m * g.k, kn = g.k * g.n, mn = g.m * g.n;
    BatchIndexer ai(g.a_batch, g.out_batch), bi(g.b_batch, g.out_batch);
    std::vector<double> y(static_cast<size_t>(batches * mn), 0.0);
    for (int64_t t = 0; t < batches; ++t)
      GemmAcc(a.data() + ai(t) * mk, b.data() + bi(t) * kn, y.data() + t * mn, g.m, g.n, g.k, at.trans_b);
    StoreDouble(y.data(), static_cast<int64_t>(y.size()), out[0]);
    return nullptr;
  }

#ifdef KAIO_WITH_CUDA
  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    MatmulGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveMatmul(c, in[0], in[1], at.trans_b, "A", "B", &g));
    KAIO_RETURN_IF_ERROR(CheckCudaBatchRank(c, 0, g));
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, 0, "A", "M per batch", g.m, kMatmulTcMaxRows));
    MatmulTcParams p;
    p.a = in[0].data;
    p.b = in[1].data;
    p.y = out[0].data;
    p.in_type = kT == kF16 ? MatmulElem::kF16 : MatmulElem::kBF16;
    p.out_type = at.out_dtype == kF32 ? MatmulElem::kF32 : p.in_type;
    p.trans_b = at.trans_b;
    p.use_async = kAsync;
    p.m = g.m;
    p.n = g.n;
    p.k = g.k;
    SetBatch(g.out_batch, &p);
    BatchStrides(g.a_batch, g.out_batch, g.m * g.k, p.a_batch_stride);
    BatchStrides(g.b_batch, g.out_batch, g.k * g.n, p.b_batch_stride);
    return RunProduct(c, launch, p);
  }
#endif
};

struct MatmulTcGradOp {
  static constexpr const char* kName = "MatmulTcGrad";
  struct Attrs {
    bool trans_b = false;
  };
  static std::vector<IoSpec> Inputs() {
    return {{"dY", {kF32, kF16, kBF16}, false, 2}, {"A", {kF16, kBF16}, false, 2}, {"B", {kF16, kBF16}, false, 2}};
  }
  // Either gradient may be left out of the node (ORT training omits those nobody needs).
  static std::vector<IoSpec> Outputs() { return {{"dA", {kF16, kBF16}, true, 1, 1}, {"dB", {kF16, kBF16}, true, 1, 2}}; }

  static OrtStatus* ReadAttrs(const AttrSource& s, const ErrCtx& c, Attrs* a) {
    return ReadBool(s, c, "trans_b", false, &a->trans_b);
  }

  static OrtStatus* Resolve(const ErrCtx& c, const Attrs& at, const TensorInfos& in, TensorInfos* out) {
    if (in[1].type != in[2].type)
      return InputError(c, 2, "B", "element type must equal A's (", DTypeName(in[1].type), "), got ",
                        DTypeName(in[2].type));
    if (in[0].type != kF32 && in[0].type != in[1].type)
      return InputError(c, 0, "dY", "element type must be float or A's type (", DTypeName(in[1].type), "), got ",
                        DTypeName(in[0].type));
    MatmulGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveMatmul(c, in[1], in[2], at.trans_b, "A", "B", &g));
    const TensorInfo& dy = in[0];
    bool same_rank = dy.rank() == static_cast<int64_t>(g.y_shape.size());
    for (size_t i = 0; same_rank && i < g.y_shape.size(); ++i) same_rank = DimsMatch(dy.shape[i], g.y_shape[i]);
    if (!same_rank)
      return InputError(c, 0, "dY", "shape must be the forward output's ", ShapeStr(g.y_shape), ", got ",
                        ShapeStr(dy.shape));
    (*out)[0] = {true, in[1].type, in[1].shape};
    (*out)[1] = {true, in[2].type, in[2].shape};
    return nullptr;
  }

  static OrtStatus* ComputeCpu(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out) {
    MatmulGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveMatmul(c, in[1], in[2], at.trans_b, "A", "B", &g));
    std::vector<double> dy = ToDouble(in[0]), a = ToDouble(in[1]), b = ToDouble(in[2]);
    const int64_t m = g.m, n = g.n, k = g.k, batches = NumElements(g.out_batch);
    std::vector<double> da(a.size(), 0.0), db(b.size(), 0.0);
    BatchIndexer ai(g.a_batch, g.out_batch), bi(g.b_batch, g.out_batch);
    for (int64_t t = 0; t < batches; ++t) {
      const double* dyt = dy.data() + t * m * n;
      const double* at_ = a.data() + ai(t) * m * k;
      const double* bt = b.data() + bi(t) * k * n;
      double* dat = da.data() + ai(t) * m * k;
      double* dbt = db.data() + bi(t) * k * n;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double d = dyt[i * n + j];
          if (d == 0.0) continue;
          for (int64_t p = 0; p < k; ++p) {
            // op(B)[p, j] = B[p, j] (B is K x N) or B[j, p] (trans_b, B is N x K)
            size_t bidx = at.trans_b ? j * k + p : p * n + j;
            dat[i * k + p] += d * bt[bidx];
            dbt[bidx] += d * at_[i * k + p];
          }
        }
    }
    StoreDouble(da.data(), static_cast<int64_t>(da.size()), out[0]);
    StoreDouble(db.data(), static_cast<int64_t>(db.size()), out[1]);
    return nullptr;
  }

#ifdef KAIO_WITH_CUDA
  // Both gradients through MatmulTc's kernels (the Async path: TMA + wgmma on sm_90), operands read
  // in place: dA = dY * op(B)^T is a product with B's transpose flag flipped; dB reads A (or dY)
  // transposed (trans_a). A float dY is rounded to A's type first (the tensor cores take 16-bit
  // operands). An operand that broadcasts over batch dims gets the sum over them: B broadcast over
  // every batch dim (a weight) folds the batch into the reduction (one product, K = batch * M); any
  // other broadcast goes through f32 per-batch products summed in a fixed order.
  static OrtStatus* ComputeCuda(const ErrCtx& c, const Attrs& at, const InputTensors& in, const OutputTensors& out,
                                const CudaLaunch& launch) {
    MatmulGeometry g;
    KAIO_RETURN_IF_ERROR(ResolveMatmul(c, in[1], in[2], at.trans_b, "A", "B", &g));
    KAIO_RETURN_IF_ERROR(CheckCudaBatchRank(c, 1, g));
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, 1, "A", "M", g.m, kMatmulTcMaxRows));
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, 2, "B", "K", g.k, kMatmulTcMaxRows));
    KAIO_RETURN_IF_ERROR(CheckLaunchLimit(c, 2, "B", "N", g.n, kMatmulTcMaxRows));
    if (!out[0].present && !out[1].present) return nullptr;
    const MatmulElem type = in[1].type == kF16 ? MatmulElem::kF16 : MatmulElem::kBF16;
    const int64_t batches = NumElements(g.out_batch), m = g.m, n = g.n, k = g.k;
    const void* dy = in[0].data;
    CudaScratch dy_rounded;
    if (in[0].type == kF32) {
      KAIO_RETURN_IF_ERROR(dy_rounded.Allocate(launch, c, static_cast<size_t>(batches * m * n) * 2));
      if (int e = RunMatmulTcRound(static_cast<const float*>(dy), dy_rounded.data(), type, batches * m * n,
                                   launch.sm_count, launch.stream))
        return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
      dy = dy_rounded.data();
    }
    MatmulTcParams base;
    base.in_type = type;
    base.out_type = type;
    base.use_async = true;
    SetBatch(g.out_batch, &base);
    const bool a_full = NumElements(g.a_batch) == batches, b_full = NumElements(g.b_batch) == batches;
    if (out[0].present) {  // dA [M, K] = dY [M, N] * op(B)^T
      MatmulTcParams p = base;
      p.a = dy;
      p.b = in[2].data;
      p.trans_b = !at.trans_b;
      p.m = m;
      p.n = k;
      p.k = n;
      BatchStrides(g.out_batch, g.out_batch, m * n, p.a_batch_stride);
      BatchStrides(g.b_batch, g.out_batch, k * n, p.b_batch_stride);
      KAIO_RETURN_IF_ERROR(RunOperandGrad(c, launch, p, g.a_batch, g.out_batch, a_full, out[0].data));
    }
    if (out[1].present) {  // dB: [K, N] = A^T [K, M] * dY [M, N], or (trans_b) [N, K] = dY^T * A
      MatmulTcParams p = base;
      p.trans_a = true;
      p.a = at.trans_b ? dy : in[1].data;
      p.b = at.trans_b ? in[1].data : dy;
      p.m = at.trans_b ? n : k;
      p.n = at.trans_b ? k : n;
      p.k = m;
      BatchStrides(at.trans_b ? g.out_batch : g.a_batch, g.out_batch, m * p.m, p.a_batch_stride);
      BatchStrides(at.trans_b ? g.a_batch : g.out_batch, g.out_batch, m * p.n, p.b_batch_stride);
      if (NumElements(g.b_batch) == 1 && a_full) {  // a weight: the batch joins the reduction
        p.y = out[1].data;
        p.k = batches * m;
        SetBatch({}, &p);
        return RunProduct(c, launch, p);
      }
      KAIO_RETURN_IF_ERROR(RunOperandGrad(c, launch, p, g.b_batch, g.out_batch, b_full, out[1].data));
    }
    return nullptr;
  }

  // The gradient x of one operand from the per-output-batch products p: written directly where x has
  // the output's batch (x_full), else summed over the batch dims x broadcasts over.
  static OrtStatus* RunOperandGrad(const ErrCtx& c, const CudaLaunch& launch, MatmulTcParams p, const Shape& x_batch,
                                   const Shape& out_batch, bool x_full, void* x) {
    if (x_full) {
      p.y = x;
      return RunProduct(c, launch, p);
    }
    const int64_t matrix = p.m * p.n;
    CudaScratch products;
    KAIO_RETURN_IF_ERROR(products.Allocate(launch, c, static_cast<size_t>(p.batch_count * matrix) * sizeof(float)));
    const MatmulElem x_type = p.out_type;
    p.out_type = MatmulElem::kF32;
    p.y = products.data();
    KAIO_RETURN_IF_ERROR(RunProduct(c, launch, p));
    MatmulTcBatchSum s;
    s.products = static_cast<const float*>(products.data());
    s.x = x;
    s.x_type = x_type;
    s.matrix = matrix;
    s.x_count = NumElements(x_batch);
    s.batch_rank = p.batch_rank;
    s.batch_count = p.batch_count;
    for (int i = 0; i < p.batch_rank; ++i) s.batch_dims[i] = p.batch_dims[i];
    BatchStrides(x_batch, out_batch, matrix, s.x_batch_stride);
    if (int e = RunMatmulTcBatchSum(s, launch.sm_count, launch.stream))
      return OpError(ORT_FAIL, c, "CUDA launch failed: error ", e);
    return nullptr;
  }
#endif
};

}  // namespace

void AddMatmulTcOps(OpList& list) {
  AddCpuOp<MatmulTcOp<kF16, false>>(list);
  AddCpuOp<MatmulTcOp<kBF16, false>>(list);
  AddCpuOp<MatmulTcOp<kF16, true>>(list);
  AddCpuOp<MatmulTcOp<kBF16, true>>(list);
  AddCpuOp<MatmulTcGradOp>(list);
#ifdef KAIO_WITH_CUDA
  AddCudaOp<MatmulTcOp<kF16, false>>(list);
  AddCudaOp<MatmulTcOp<kBF16, false>>(list);
  AddCudaOp<MatmulTcOp<kF16, true>>(list);   // Hopper: TMA + wgmma (matmul_tc_sm90.cu); else the mma.sync kernel
  AddCudaOp<MatmulTcOp<kBF16, true>>(list);
  AddCudaOp<MatmulTcGradOp>(list);  // the forward's kernels, operands read transposed in place
#endif
}

}  // namespace kaio
