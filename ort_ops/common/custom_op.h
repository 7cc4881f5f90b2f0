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
// shape inference (dims may be unknown), at kernel creation on the graph's declared inputs (so a
// bad model fails when the session is created) and again on every Compute with the real shapes,
// before any output is allocated, so no kernel ever sees inputs that break the contract.
//
// Only API calls listed in ort_api.cc are made (all exist since API 17), and OrtCustomOp::version
// is the negotiated version, so the struct is read correctly by older runtimes.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>
#include <string>
#include <vector>

#include "common/attrs.h"
#include "common/status.h"
#include "common/tensor_info.h"

namespace kaio {

// The first C API version whose ShapeInferContext_SetOutputTypeShape sets the element type as well
// as the shape (ORT 1.20). Before it (ORT 1.17-1.19) the type of an untyped output comes from the
// model (graph output or value_info), since every registered variant has typed inputs.
constexpr uint32_t kApiWithOutputTypeInference = 20;

enum class Ep { kCpu, kCuda };
const char* EpName(Ep ep);

// One formal input or output: its name, the element types it accepts (an input with several is
// registered once per type: AddOpsToDomain), whether it may be absent (only trailing inputs may
// be; any optional output), and the smallest rank it may have (0: scalars allowed).
struct IoSpec {
  const char* name;
  std::vector<DType> types;
  bool optional = false;
  int min_rank = 1;
  // Outputs with several types: the input whose type the output has, or kTypeFromOutDType (the
  // op's out_dtype attribute). Lets shape inference type the outputs even when validation fails.
  int type_like_input = -1;
};
constexpr int kTypeFromOutDType = -1;

// The element type an output has without resolving shapes: its one declared type, the type of the
// input it follows, or the op's out_dtype (kUndefined when none applies).
template <class A, class = void>
struct HasOutDType : std::false_type {};
template <class A>
struct HasOutDType<A, std::void_t<decltype(std::declval<A>().out_dtype)>> : std::true_type {};

template <class Attrs>
DType OutputTypeOf(const IoSpec& s, const Attrs& attrs, const TensorInfos& in) {
  if (s.types.size() == 1) return s.types[0];
  if (s.type_like_input >= 0)
    return static_cast<size_t>(s.type_like_input) < in.size() ? in[s.type_like_input].type : kUndefined;
  if constexpr (HasOutDType<Attrs>::value) return attrs.out_dtype;
  return kUndefined;
}

using InputTensors = std::vector<ConstTensor>;
using OutputTensors = std::vector<MutTensor>;

// What a CUDA kernel gets besides its tensors: ORT's compute stream and device facts.
struct CudaLaunch {
  void* stream = nullptr;    // cudaStream_t of the session's CUDA EP
  int device = 0;
  int sm = 0;                // compute capability, major * 10 + minor
  int sm_count = 0;
  int smem_optin = 0;        // shared memory one block may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin)
  int smem_per_sm = 0;       // shared memory per SM (cudaDevAttrMaxSharedMemoryPerMultiprocessor)
  OrtKernelContext* ctx = nullptr;  // for CudaScratch
};

// Device scratch memory from the session's CUDA allocator for one Compute. It is released when
// Compute returns, after the kernels using it were queued on ORT's stream: ORT's allocator hands
// such memory only to work queued later on that stream (how ORT's own CUDA kernels use scratch).
class CudaScratch {
 public:
  CudaScratch() = default;
  CudaScratch(const CudaScratch&) = delete;
  CudaScratch& operator=(const CudaScratch&) = delete;
  ~CudaScratch();
  OrtStatus* Allocate(const CudaLaunch& launch, const ErrCtx& c, size_t bytes);  // bytes == 0: nothing
  void* data() const { return data_; }

 private:
  OrtAllocator* allocator_ = nullptr;
  void* data_ = nullptr;
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
  friend class TypedVariant;
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
// The same from the graph's declared types and shapes, at kernel creation (session load).
OrtStatus* ReadInputInfos(const OrtKernelInfo* info, const std::vector<IoSpec>& specs, TensorInfos* in,
                          bool* rank_unknown);
OrtStatus* SetOutputInfos(OrtShapeInferContext* ctx, const std::vector<IoSpec>& specs,
                          const TensorInfos& out);
// Sets the element type of every output whose type is known (shape left as rank 0).
OrtStatus* SetTypesOnly(OrtShapeInferContext* ctx, const TensorInfos& out);
OrtStatus* GatherInputs(OrtKernelContext* ctx, const std::vector<IoSpec>& specs, InputTensors* in);
// Also checks that each output ORT allocated has the element type the op resolved: runtimes whose
// shape inference cannot set an output's type (ORT 1.19) take it from the model's value_info or
// graph outputs, which may disagree with out_dtype; writing through a mismatched buffer would
// overflow it, so that is an error instead.
OrtStatus* AllocateOutputs(OrtKernelContext* ctx, const ErrCtx& c, const std::vector<IoSpec>& specs,
                           const TensorInfos& infos, OutputTensors* out);
OrtStatus* PrepareCuda(OrtKernelContext* ctx, const ErrCtx& c, CudaLaunch* launch);
OrtStatus* CheckCudaDeviceAtCreation(const ErrCtx& c);

// The inputs an op declares to ORT for one EP: Op::CudaInputs() where a CUDA kernel takes fewer
// types than the CPU one (ORT then places a node of another type on the CPU EP), else Op::Inputs().
template <class Op, class = void>
struct HasCudaInputs : std::false_type {};
template <class Op>
struct HasCudaInputs<Op, std::void_t<decltype(Op::CudaInputs())>> : std::true_type {};

template <class Op, Ep kEp>
std::vector<IoSpec> RegisteredInputs() {
  if constexpr (kEp == Ep::kCuda && HasCudaInputs<Op>::value) return Op::CudaInputs();
  else return Op::Inputs();
}

template <class Op, Ep kEp>
class OpKernel final : public KernelBase {
 public:
  OpKernel(ErrCtx err, typename Op::Attrs attrs) : err_(std::move(err)), attrs_(std::move(attrs)) {}

  OrtStatus* Compute(OrtKernelContext* ctx) override {
    InputTensors in;
    KAIO_RETURN_IF_ERROR(GatherInputs(ctx, RegisteredInputs<Op, kEp>(), &in));
    TensorInfos in_infos(in.begin(), in.end());
    KAIO_RETURN_IF_ERROR(CheckDeclaredTypes(err_, RegisteredInputs<Op, kEp>(), in_infos, true));
    TensorInfos out_infos(Op::Outputs().size());
    KAIO_RETURN_IF_ERROR(Op::Resolve(err_, attrs_, in_infos, &out_infos));
    OutputTensors out;
    KAIO_RETURN_IF_ERROR(AllocateOutputs(ctx, err_, Op::Outputs(), out_infos, &out));
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
  OpRegistration() : CustomOpBase(Op::kName, kEp, RegisteredInputs<Op, kEp>(), Op::Outputs()) {}

 protected:
  OrtStatus* NewKernel(const OrtKernelInfo* info, void** kernel) const override {
    ErrCtx err{Op::kName, ""};
    KAIO_RETURN_IF_ERROR(NodeName(info, &err.node));
    typename Op::Attrs attrs{};
    KAIO_RETURN_IF_ERROR(Op::ReadAttrs(KernelInfoAttrs(info), err, &attrs));
    // ORT discards the status of a custom op's shape inference, so the graph's declared inputs are
    // validated here too: a model that breaks a rule fails at session creation, naming the node.
    TensorInfos in;
    bool rank_unknown = false;
    KAIO_RETURN_IF_ERROR(ReadInputInfos(info, RegisteredInputs<Op, kEp>(), &in, &rank_unknown));
    if (!rank_unknown) {
      KAIO_RETURN_IF_ERROR(CheckDeclaredTypes(err, RegisteredInputs<Op, kEp>(), in, false));
      TensorInfos out(Op::Outputs().size());
      KAIO_RETURN_IF_ERROR(Op::Resolve(err, attrs, in, &out));
    }
    if constexpr (kEp == Ep::kCuda) KAIO_RETURN_IF_ERROR(CheckCudaDeviceAtCreation(err));
    *kernel = static_cast<KernelBase*>(new OpKernel<Op, kEp>(std::move(err), std::move(attrs)));
    return nullptr;
  }

  OrtStatus* Infer(OrtShapeInferContext* ctx) const override {
    ErrCtx err{Op::kName, ""};
    typename Op::Attrs attrs{};
    OrtStatus* st = Op::ReadAttrs(ShapeInferAttrs(ctx), err, &attrs);
    TensorInfos in;
    bool rank_unknown = false;
    if (OrtStatus* read = ReadInputInfos(ctx, Op::Inputs(), &in, &rank_unknown)) {
      if (st) Api().ReleaseStatus(st);
      return read;
    }
    if (rank_unknown) return st;  // a shapeless input: leave it to the run-time checks
    TensorInfos out(Op::Outputs().size());
    if (!st) st = CheckDeclaredTypes(err, Op::Inputs(), in, false);
    if (!st) st = Op::Resolve(err, attrs, in, &out);
    if (st) {
      // ORT (1.19 to 1.31 at least) discards this status; kernel creation repeats the checks and
      // reports them. Until then the outputs get their types (rank 0, shape unknown to us), so
      // ORT does not guess a type, fail its own type check and hide our message.
      // (Older runtimes set no type here and abort on a rank-0 output: they are left alone.)
      if (ApiVersion() >= kApiWithOutputTypeInference) {
        for (size_t i = 0; i < out.size(); ++i) out[i] = {true, OutputTypeOf(Op::Outputs()[i], attrs, in), {}};
        if (OrtStatus* set = SetTypesOnly(ctx, out)) Api().ReleaseStatus(set);
      }
      return st;
    }
    return SetOutputInfos(ctx, Op::Outputs(), out);
  }
};

// The library's op table, filled once by each family's Add*Ops function (register.cc).
using OpList = std::vector<std::unique_ptr<CustomOpBase>>;


// Adds `ops` to `domain` in the form the negotiated runtime needs. From API 20 on: each op once.
// Before: each op once per combination of its inputs' accepted types, every input then declared
// to ORT with one type, so ORT's guess has nothing to guess from and leaves an output typed by
// out_dtype (or by the inputs) untyped; ORT then takes its type from the model (graph output or
// value_info), and AllocateOutputs checks that type against what the op resolves. The variants
// share their op's kernel code and validation (kept alive for the process, like the domain).
OrtStatus* AddOpsToDomain(OrtCustomOpDomain* domain, const OpList& ops);

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
