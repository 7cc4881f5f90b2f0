// The glue between one com.kaio op definition and ORT's OrtCustomOp C struct.
//
// An op is a plain struct `Op` (see ort_ops/README.md) with:
//   static constexpr const char* kName;
//   static std::vector<IoSpec> Inputs(), Outputs();
//   struct Attrs;  static OrtStatus* ReadAttrs(const AttrSource&, const ErrCtx&, Attrs*);
//   static OrtStatus* Resolve(const ErrCtx&, const Attrs&, const TensorInfos& in, TensorInfos* out);
//   static OrtStatus* ComputeCpu(const ErrCtx&, const Attrs&, const InputTensors&, const OutputTensors&);
//   static OrtStatus* ComputeCuda(..., const CudaLaunch&);           (ops with a CUDA kernel)
// Resolve is the single place where shapes, types and cross-input rules are checked; it runs at
// shape inference (dims may be unknown) and again on every Compute with the real shapes, before
// any output is allocated, so no kernel ever sees inputs that break the contract.
//
// Only API calls listed in ort_api.cc are made (all exist since API 17), and OrtCustomOp::version
// is the negotiated version, so the struct is read correctly by older runtimes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/attrs.h"
#include "common/status.h"
#include "common/tensor_info.h"

namespace kaio {

enum class Ep { kCpu, kCuda };
const char* EpName(Ep ep);

// One formal input or output: its name, the element types it accepts (several -> ORT sees an
// unconstrained type and our validation checks membership), whether it may be absent (only
// trailing inputs/outputs may be), and the smallest rank it may have (0: scalars allowed).
struct IoSpec {
  const char* name;
  std::vector<DType> types;
  bool optional = false;
  int min_rank = 1;
};

using InputTensors = std::vector<ConstTensor>;
using OutputTensors = std::vector<MutTensor>;

// What a CUDA kernel gets besides its tensors: ORT's compute stream and device facts.
struct CudaLaunch {
  void* stream = nullptr;    // cudaStream_t of the session's CUDA EP
  int device = 0;
  int sm = 0;                // compute capability, major * 10 + minor
  int sm_count = 0;
};

// Validation shared by all ops: dtypes in IoSpec::types, required inputs present, ranks.
OrtStatus* CheckDeclaredTypes(const ErrCtx& c, const std::vector<IoSpec>& specs,
                              const TensorInfos& in, bool shapes_final);

class CustomOpBase : public OrtCustomOp {
 public:
  CustomOpBase(const char* name, Ep ep, std::vector<IoSpec> inputs, std::vector<IoSpec> outputs);
  virtual ~CustomOpBase() = default;

  const char* name() const { return name_; }
  Ep ep() const { return ep_; }
  const std::vector<IoSpec>& inputs() const { return inputs_; }
  const std::vector<IoSpec>& outputs() const { return outputs_; }

 protected:
  virtual OrtStatus* NewKernel(const OrtKernelInfo* info, void** kernel) const = 0;
  virtual OrtStatus* Infer(OrtShapeInferContext* ctx) const = 0;

 private:
  const char* name_;
  Ep ep_;
  std::vector<IoSpec> inputs_, outputs_;
  friend struct CustomOpCallbacks;
};

class KernelBase {
 public:
  virtual ~KernelBase() = default;
  virtual OrtStatus* Compute(OrtKernelContext* ctx) = 0;
};

// Helpers used by the templates below (custom_op.cc).
OrtStatus* NodeName(const OrtKernelInfo* info, std::string* name);
OrtStatus* ReadInputInfos(OrtShapeInferContext* ctx, const std::vector<IoSpec>& specs,
                          TensorInfos* in, bool* rank_unknown);
OrtStatus* SetOutputInfos(OrtShapeInferContext* ctx, const std::vector<IoSpec>& specs,
                          const TensorInfos& out);
OrtStatus* GatherInputs(OrtKernelContext* ctx, const std::vector<IoSpec>& specs, InputTensors* in);
OrtStatus* AllocateOutputs(OrtKernelContext* ctx, const std::vector<IoSpec>& specs,
                           const TensorInfos& infos, OutputTensors* out);
OrtStatus* PrepareCuda(OrtKernelContext* ctx, const ErrCtx& c, CudaLaunch* launch);
OrtStatus* CheckCudaDeviceAtCreation(const ErrCtx& c);

template <class Op, Ep kEp>
class OpKernel final : public KernelBase {
 public:
  OpKernel(ErrCtx err, typename Op::Attrs attrs) : err_(std::move(err)), attrs_(std::move(attrs)) {}

  OrtStatus* Compute(OrtKernelContext* ctx) override {
    InputTensors in;
    KAIO_RETURN_IF_ERROR(GatherInputs(ctx, Op::Inputs(), &in));
    TensorInfos in_infos(in.begin(), in.end());
    KAIO_RETURN_IF_ERROR(CheckDeclaredTypes(err_, Op::Inputs(), in_infos, true));
    TensorInfos out_infos(Op::Outputs().size());
    KAIO_RETURN_IF_ERROR(Op::Resolve(err_, attrs_, in_infos, &out_infos));
    OutputTensors out;
    KAIO_RETURN_IF_ERROR(AllocateOutputs(ctx, Op::Outputs(), out_infos, &out));
    if constexpr (kEp == Ep::kCuda) {
      CudaLaunch launch;
      KAIO_RETURN_IF_ERROR(PrepareCuda(ctx, err_, &launch));
      return Op::ComputeCuda(err_, attrs_, in, out, launch);
    } else {
      return Op::ComputeCpu(err_, attrs_, in, out);
    }
  }

 private:
  ErrCtx err_;
  typename Op::Attrs attrs_;
};

template <class Op, Ep kEp>
class OpRegistration final : public CustomOpBase {
 public:
  OpRegistration() : CustomOpBase(Op::kName, kEp, Op::Inputs(), Op::Outputs()) {}

 protected:
  OrtStatus* NewKernel(const OrtKernelInfo* info, void** kernel) const override {
    ErrCtx err{Op::kName, ""};
    KAIO_RETURN_IF_ERROR(NodeName(info, &err.node));
    typename Op::Attrs attrs{};
    KAIO_RETURN_IF_ERROR(Op::ReadAttrs(KernelInfoAttrs(info), err, &attrs));
    if constexpr (kEp == Ep::kCuda) KAIO_RETURN_IF_ERROR(CheckCudaDeviceAtCreation(err));
    *kernel = static_cast<KernelBase*>(new OpKernel<Op, kEp>(std::move(err), std::move(attrs)));
    return nullptr;
  }

  OrtStatus* Infer(OrtShapeInferContext* ctx) const override {
    ErrCtx err{Op::kName, ""};
    typename Op::Attrs attrs{};
    KAIO_RETURN_IF_ERROR(Op::ReadAttrs(ShapeInferAttrs(ctx), err, &attrs));
    TensorInfos in;
    bool rank_unknown = false;
    KAIO_RETURN_IF_ERROR(ReadInputInfos(ctx, Op::Inputs(), &in, &rank_unknown));
    if (rank_unknown) return nullptr;  // a shapeless input: leave it to the run-time checks
    KAIO_RETURN_IF_ERROR(CheckDeclaredTypes(err, Op::Inputs(), in, false));
    TensorInfos out(Op::Outputs().size());
    KAIO_RETURN_IF_ERROR(Op::Resolve(err, attrs, in, &out));
    return SetOutputInfos(ctx, Op::Outputs(), out);
  }
};

// The library's op table, filled once by each family's Add*Ops function (register.cc).
using OpList = std::vector<std::unique_ptr<CustomOpBase>>;

template <class Op>
void AddCpuOp(OpList& list) {
  list.push_back(std::make_unique<OpRegistration<Op, Ep::kCpu>>());
}

#ifdef KAIO_WITH_CUDA
template <class Op>
void AddCudaOp(OpList& list) {
  list.push_back(std::make_unique<OpRegistration<Op, Ep::kCuda>>());
}
#endif

}  // namespace kaio
