#include "common/custom_op.h"

#include <climits>
#include <cstdlib>
#include <mutex>

#ifdef KAIO_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kaio {

const char* EpName(Ep ep) { return ep == Ep::kCuda ? "CUDAExecutionProvider" : "CPUExecutionProvider"; }

// Static trampolines: ORT calls these with the OrtCustomOp* it was given.
struct CustomOpCallbacks {
  static const CustomOpBase* Self(const OrtCustomOp* op) { return static_cast<const CustomOpBase*>(op); }

  static const char* ORT_API_CALL GetName(const OrtCustomOp* op) { return Self(op)->name_; }
  static const char* ORT_API_CALL GetEp(const OrtCustomOp* op) { return EpName(Self(op)->ep_); }

  static DType OrtTypeOf(const IoSpec& s) { return s.types.size() == 1 ? s.types[0] : kUndefined; }
  static DType ORT_API_CALL GetInputType(const OrtCustomOp* op, size_t i) { return OrtTypeOf(Self(op)->inputs_[i]); }
  static size_t ORT_API_CALL GetInputTypeCount(const OrtCustomOp* op) { return Self(op)->inputs_.size(); }
  static DType ORT_API_CALL GetOutputType(const OrtCustomOp* op, size_t i) { return OrtTypeOf(Self(op)->outputs_[i]); }
  static size_t ORT_API_CALL GetOutputTypeCount(const OrtCustomOp* op) { return Self(op)->outputs_.size(); }

  static OrtCustomOpInputOutputCharacteristic Characteristic(const IoSpec& s) {
    return s.optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  static OrtCustomOpInputOutputCharacteristic ORT_API_CALL GetInputCharacteristic(const OrtCustomOp* op, size_t i) {
    return Characteristic(Self(op)->inputs_[i]);
  }
  // An output whose type depends on attributes (out_dtype) is declared to ORT with no fixed type.
  // ORT 1.19's schema builder refuses such a *required* output unless exactly one input is also
  // untyped, so these outputs are declared optional to ORT; AllocateOutputs still insists on them.
  static OrtCustomOpInputOutputCharacteristic ORT_API_CALL GetOutputCharacteristic(const OrtCustomOp* op, size_t i) {
    const IoSpec& s = Self(op)->outputs_[i];
    return OrtTypeOf(s) == kUndefined ? INPUT_OUTPUT_OPTIONAL : Characteristic(s);
  }
  static OrtMemType ORT_API_CALL GetInputMemoryType(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
  static int ORT_API_CALL VariadicMinArity(const OrtCustomOp*) { return 1; }
  static int ORT_API_CALL VariadicHomogeneity(const OrtCustomOp*) { return 0; }

  static void* ORT_API_CALL CreateKernelV1(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*) {
    return nullptr;  // never used: CreateKernelV2 exists since API 16
  }
  static OrtStatus* ORT_API_CALL CreateKernelV2(const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo* info,
                                                void** kernel) {
    return Self(op)->NewKernel(info, kernel);
  }
  static void ORT_API_CALL ComputeV1(void*, OrtKernelContext*) {}
  static OrtStatus* ORT_API_CALL ComputeV2(void* kernel, OrtKernelContext* ctx) {
    return static_cast<KernelBase*>(kernel)->Compute(ctx);
  }
  static void ORT_API_CALL Destroy(void* kernel) { delete static_cast<KernelBase*>(kernel); }
  static OrtStatus* ORT_API_CALL InferShape(const OrtCustomOp* op, OrtShapeInferContext* ctx) {
    return Self(op)->Infer(ctx);
  }
  static int ORT_API_CALL StartVersion(const OrtCustomOp*) { return 1; }
  static int ORT_API_CALL EndVersion(const OrtCustomOp*) { return INT_MAX; }
  static size_t ORT_API_CALL NoInplace(int** in, int** out) {
    *in = nullptr;
    *out = nullptr;
    return 0;
  }
  static void ORT_API_CALL ReleaseNothing(int*, int*) {}
};

CustomOpBase::CustomOpBase(const char* name, Ep ep, std::vector<IoSpec> inputs, std::vector<IoSpec> outputs)
    : OrtCustomOp{}, name_(name), ep_(ep), inputs_(std::move(inputs)), outputs_(std::move(outputs)) {
  using C = CustomOpCallbacks;
  // The runtime reads the fields that exist in this version of the struct and no further.
  version = ApiVersion();
  CreateKernel = C::CreateKernelV1;
  GetName = C::GetName;
  GetExecutionProviderType = C::GetEp;
  GetInputType = C::GetInputType;
  GetInputTypeCount = C::GetInputTypeCount;
  GetOutputType = C::GetOutputType;
  GetOutputTypeCount = C::GetOutputTypeCount;
  KernelCompute = C::ComputeV1;
  KernelDestroy = C::Destroy;
  GetInputCharacteristic = C::GetInputCharacteristic;
  GetOutputCharacteristic = C::GetOutputCharacteristic;
  GetInputMemoryType = C::GetInputMemoryType;
  GetVariadicInputMinArity = C::VariadicMinArity;
  GetVariadicInputHomogeneity = C::VariadicHomogeneity;
  GetVariadicOutputMinArity = C::VariadicMinArity;
  GetVariadicOutputHomogeneity = C::VariadicHomogeneity;
  CreateKernelV2 = C::CreateKernelV2;
  KernelComputeV2 = C::ComputeV2;
  InferOutputShapeFn = C::InferShape;
  GetStartVersion = C::StartVersion;
  GetEndVersion = C::EndVersion;
  GetMayInplace = C::NoInplace;
  ReleaseMayInplace = C::ReleaseNothing;
  GetAliasMap = C::NoInplace;
  ReleaseAliasMap = C::ReleaseNothing;
}

// One input-type combination of an op, for runtimes before kApiWithOutputTypeInference.
class TypedVariant final : public CustomOpBase {
 public:
  TypedVariant(const CustomOpBase& base, std::vector<IoSpec> inputs)
      : CustomOpBase(base.name(), base.ep(), std::move(inputs), base.outputs()), base_(base) {}

 protected:
  OrtStatus* NewKernel(const OrtKernelInfo* info, void** kernel) const override { return base_.NewKernel(info, kernel); }
  OrtStatus* Infer(OrtShapeInferContext* ctx) const override { return base_.Infer(ctx); }

 private:
  const CustomOpBase& base_;
};

namespace {
// Every combination of single input types of `op` (inputs with one type stay as they are).
void AddVariants(const CustomOpBase& op, OpList* out) {
  std::vector<IoSpec> in = op.inputs();
  std::vector<size_t> pick(in.size(), 0);
  while (true) {
    std::vector<IoSpec> v = op.inputs();
    for (size_t i = 0; i < v.size(); ++i) v[i].types = {op.inputs()[i].types[pick[i]]};
    out->push_back(std::make_unique<TypedVariant>(op, std::move(v)));
    size_t i = 0;
    for (; i < in.size(); ++i) {
      if (++pick[i] < in[i].types.size()) break;
      pick[i] = 0;
    }
    if (i == in.size()) return;
  }
}
}  // namespace

OrtStatus* AddOpsToDomain(OrtCustomOpDomain* domain, const OpList& ops) {
  const OrtApi& api = Api();
  // The version is stamped here, not only at construction: KaioOrtDescribe may build the op table
  // before any runtime was negotiated (version 0 would make ORT skip the optional-output query).
  for (const auto& op : ops) op->version = ApiVersion();
  // Built once per process (a process has one runtime, so one negotiated version).
  static const OpList variants = [&ops] {
    OpList list;
    for (const auto& op : ops) AddVariants(*op, &list);
    return list;
  }();
  for (const auto& op : variants) {
    op->version = ApiVersion();
    KAIO_RETURN_IF_ERROR(api.CustomOpDomain_Add(domain, op.get()));
  }
  return nullptr;
}

OrtStatus* CheckDeclaredTypes(const ErrCtx& c, const std::vector<IoSpec>& specs, const TensorInfos& in,
                              bool shapes_final) {
  for (size_t i = 0; i < specs.size(); ++i) {
    const IoSpec& s = specs[i];
    if (i >= in.size() || !in[i].present) {
      if (!s.optional) return InputError(c, i, s.name, "is required but missing");
      continue;
    }
    bool ok = false;
    std::string names;
    for (DType t : s.types) {
      ok |= in[i].type == t;
      names += Cat(names.empty() ? "" : ", ", DTypeName(t));
    }
    if (!ok) return InputError(c, i, s.name, "element type must be ", names, ", got ", DTypeName(in[i].type));
    if (shapes_final && in[i].rank() < s.min_rank)
      return InputError(c, i, s.name, "rank must be at least ", s.min_rank, ", got shape ", ShapeStr(in[i].shape));
  }
  return nullptr;
}

OrtStatus* NodeName(const OrtKernelInfo* info, std::string* name) {
  size_t size = 0;
  KAIO_RETURN_IF_ERROR(Api().KernelInfo_GetNodeName(info, nullptr, &size));
  std::vector<char> buf(size + 1, '\0');
  KAIO_RETURN_IF_ERROR(Api().KernelInfo_GetNodeName(info, buf.data(), &size));
  name->assign(buf.data());
  return nullptr;
}

namespace {
// Reads type and dims of an OrtTensorTypeAndShapeInfo; releases it if we own it (the ones of
// ShapeInferContext_GetInputTypeShape belong to the context).
OrtStatus* ReadTypeShape(OrtTensorTypeAndShapeInfo* info, bool owned, TensorInfo* t) {
  const OrtApi& api = Api();
  OrtStatus* st = nullptr;
  size_t rank = 0;
  if ((st = api.GetTensorElementType(info, &t->type)) == nullptr &&
      (st = api.GetDimensionsCount(info, &rank)) == nullptr) {
    t->shape.assign(rank, 0);
    st = api.GetDimensions(info, t->shape.data(), rank);
  }
  if (owned) api.ReleaseTensorTypeAndShapeInfo(info);
  t->present = st == nullptr;
  return st;
}
}  // namespace

OrtStatus* ReadInputInfos(OrtShapeInferContext* ctx, const std::vector<IoSpec>& specs, TensorInfos* in,
                          bool* rank_unknown) {
  size_t count = 0;
  KAIO_RETURN_IF_ERROR(Api().ShapeInferContext_GetInputCount(ctx, &count));
  in->assign(specs.size(), TensorInfo{});
  for (size_t i = 0; i < count && i < specs.size(); ++i) {
    OrtTensorTypeAndShapeInfo* info = nullptr;
    KAIO_RETURN_IF_ERROR(Api().ShapeInferContext_GetInputTypeShape(ctx, i, &info));
    if (info == nullptr) continue;
    KAIO_RETURN_IF_ERROR(ReadTypeShape(info, false, &(*in)[i]));
    // ORT reports an input without shape information as rank 0: it is unknown, not a scalar.
    if ((*in)[i].rank() == 0 && specs[i].min_rank > 0) *rank_unknown = true;
  }
  return nullptr;
}

OrtStatus* ReadInputInfos(const OrtKernelInfo* info, const std::vector<IoSpec>& specs, TensorInfos* in,
                          bool* rank_unknown) {
  const OrtApi& api = Api();
  size_t count = 0;
  KAIO_RETURN_IF_ERROR(api.KernelInfo_GetInputCount(info, &count));
  in->assign(specs.size(), TensorInfo{});
  for (size_t i = 0; i < count && i < specs.size(); ++i) {
    OrtTypeInfo* type_info = nullptr;
    if (OrtStatus* st = api.KernelInfo_GetInputTypeInfo(info, i, &type_info)) {
      api.ReleaseStatus(st);  // an absent optional input ("") has no type information
      continue;
    }
    if (type_info == nullptr) continue;
    const OrtTensorTypeAndShapeInfo* tensor = nullptr;
    OrtStatus* st = api.CastTypeInfoToTensorInfo(type_info, &tensor);
    if (st == nullptr && tensor != nullptr) {
      st = ReadTypeShape(const_cast<OrtTensorTypeAndShapeInfo*>(tensor), false, &(*in)[i]);
      // No shape information reads as rank 0: unknown, not a scalar (as in shape inference).
      if (st == nullptr && (*in)[i].rank() == 0 && specs[i].min_rank > 0) *rank_unknown = true;
    }
    api.ReleaseTypeInfo(type_info);
    KAIO_RETURN_IF_ERROR(st);
  }
  return nullptr;
}

OrtStatus* SetOutputInfos(OrtShapeInferContext* ctx, const std::vector<IoSpec>& specs, const TensorInfos& out) {
  const OrtApi& api = Api();
  for (size_t i = 0; i < out.size(); ++i) {
    OrtTensorTypeAndShapeInfo* info = nullptr;
    KAIO_RETURN_IF_ERROR(api.CreateTensorTypeAndShapeInfo(&info));
    OrtStatus* st = api.SetTensorElementType(info, out[i].type);
    if (!st) st = api.SetDimensions(info, out[i].shape.data(), out[i].shape.size());
    if (!st) st = api.ShapeInferContext_SetOutputTypeShape(ctx, i, info);
    api.ReleaseTensorTypeAndShapeInfo(info);
    if (st) {
      if (!specs[i].optional) return st;
      api.ReleaseStatus(st);  // an optional output the node does not have
    }
  }
  return nullptr;
}

OrtStatus* SetTypesOnly(OrtShapeInferContext* ctx, const TensorInfos& out) {
  const OrtApi& api = Api();
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].type == kUndefined) continue;
    OrtTensorTypeAndShapeInfo* info = nullptr;
    KAIO_RETURN_IF_ERROR(api.CreateTensorTypeAndShapeInfo(&info));
    OrtStatus* st = api.SetTensorElementType(info, out[i].type);
    if (!st) st = api.ShapeInferContext_SetOutputTypeShape(ctx, i, info);
    api.ReleaseTensorTypeAndShapeInfo(info);
    if (st) api.ReleaseStatus(st);  // e.g. an optional output the node does not have
  }
  return nullptr;
}

OrtStatus* GatherInputs(OrtKernelContext* ctx, const std::vector<IoSpec>& specs, InputTensors* in) {
  const OrtApi& api = Api();
  size_t count = 0;
  KAIO_RETURN_IF_ERROR(api.KernelContext_GetInputCount(ctx, &count));
  in->assign(specs.size(), ConstTensor{});
  for (size_t i = 0; i < count && i < specs.size(); ++i) {
    const OrtValue* v = nullptr;
    KAIO_RETURN_IF_ERROR(api.KernelContext_GetInput(ctx, i, &v));
    if (v == nullptr) continue;
    OrtTensorTypeAndShapeInfo* info = nullptr;
    KAIO_RETURN_IF_ERROR(api.GetTensorTypeAndShape(v, &info));
    KAIO_RETURN_IF_ERROR(ReadTypeShape(info, true, &(*in)[i]));
    void* data = nullptr;
    KAIO_RETURN_IF_ERROR(api.GetTensorMutableData(const_cast<OrtValue*>(v), &data));
    (*in)[i].data = data;
  }
  return nullptr;
}

OrtStatus* AllocateOutputs(OrtKernelContext* ctx, const ErrCtx& c, const std::vector<IoSpec>& specs,
                           const TensorInfos& infos, OutputTensors* out) {
  const OrtApi& api = Api();
  size_t count = 0;
  KAIO_RETURN_IF_ERROR(api.KernelContext_GetOutputCount(ctx, &count));
  out->assign(specs.size(), MutTensor{});
  for (size_t i = count; i < specs.size(); ++i)
    if (!specs[i].optional) return OutputError(c, i, specs[i].name, "is required but the node does not produce it");
  for (size_t i = 0; i < count && i < specs.size(); ++i) {
    OrtValue* v = nullptr;
    KAIO_RETURN_IF_ERROR(api.KernelContext_GetOutput(ctx, i, infos[i].shape.data(), infos[i].shape.size(), &v));
    if (v == nullptr) {
      if (!specs[i].optional) return OutputError(c, i, specs[i].name, "is required but the node does not produce it");
      continue;  // an optional output the node does not produce
    }
    OrtTensorTypeAndShapeInfo* allocated = nullptr;
    KAIO_RETURN_IF_ERROR(api.GetTensorTypeAndShape(v, &allocated));
    DType got = kUndefined;
    OrtStatus* st = api.GetTensorElementType(allocated, &got);
    api.ReleaseTensorTypeAndShapeInfo(allocated);
    KAIO_RETURN_IF_ERROR(st);
    if (got != infos[i].type)
      return OutputError(c, i, specs[i].name, "the graph declares element type ", DTypeName(got), " but the op produces ",
                         DTypeName(infos[i].type), " (check out_dtype against the model's value_info / graph outputs)");
    MutTensor& t = (*out)[i];
    static_cast<TensorInfo&>(t) = infos[i];
    t.present = true;
    KAIO_RETURN_IF_ERROR(api.GetTensorMutableData(v, &t.data));
  }
  return nullptr;
}

#ifdef KAIO_WITH_CUDA
namespace {
struct DeviceFacts {
  int sm = 0, sm_count = 0, smem_optin = 0, smem_per_sm = 0;
};
// Per-device facts, read once per device (sessions may run on several GPUs).
OrtStatus* FactsOf(int device, const ErrCtx& c, DeviceFacts* f) {
  static std::mutex mu;
  static std::vector<DeviceFacts> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (device < static_cast<int>(cache.size()) && cache[device].sm != 0) {
    *f = cache[device];
    return nullptr;
  }
  int major = 0, minor = 0, count = 0, optin = 0, per_sm = 0;
  cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  if (e != cudaSuccess) return OpError(ORT_FAIL, c, "CUDA error reading device ", device, ": ", cudaGetErrorString(e));
  if (static_cast<int>(cache.size()) <= device) cache.resize(device + 1);
  cache[device] = {major * 10 + minor, count, optin, per_sm};
  *f = cache[device];
  return nullptr;
}
}  // namespace

OrtStatus* CheckCudaDeviceAtCreation(const ErrCtx& c) {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return OpError(ORT_FAIL, c, "no usable CUDA device: ", cudaGetErrorString(e));
  DeviceFacts f;
  KAIO_RETURN_IF_ERROR(FactsOf(device, c, &f));
  int sm = f.sm;
  // KAIO_ORT_ASSUME_SM=75 (tests only) makes this check see another compute capability, so the
  // refusal of pre-Ampere GPUs is tested on the GPUs we have; kernel choice still reads the device.
  if (const char* assumed = std::getenv("KAIO_ORT_ASSUME_SM")) sm = std::atoi(assumed);
  if (sm < 80)
    return OpError(ORT_NOT_IMPLEMENTED, c, "CUDA kernels need compute capability 8.0 or newer; device ", device,
                   " has ", sm / 10, ".", sm % 10, " (run the op on the CPU execution provider instead)");
  return nullptr;
}

CudaScratch::~CudaScratch() {
  if (data_) {
    if (OrtStatus* st = Api().AllocatorFree(allocator_, data_)) Api().ReleaseStatus(st);
  }
  if (allocator_) Api().ReleaseAllocator(allocator_);
}

OrtStatus* CudaScratch::Allocate(const CudaLaunch& launch, const ErrCtx& c, size_t bytes) {
  if (bytes == 0) return nullptr;
  const OrtApi& api = Api();
  OrtMemoryInfo* info = nullptr;
  OrtStatus* st = api.CreateMemoryInfo("Cuda", OrtArenaAllocator, launch.device, OrtMemTypeDefault, &info);
  if (!st) {
    st = api.KernelContext_GetAllocator(launch.ctx, info, &allocator_);
    api.ReleaseMemoryInfo(info);
  }
  if (!st) st = api.AllocatorAlloc(allocator_, bytes, &data_);
  if (st) {
    OrtStatus* err = OpError(ORT_FAIL, c, "could not get ", bytes, " bytes of CUDA scratch memory from ORT: ",
                             api.GetErrorMessage(st));
    api.ReleaseStatus(st);
    return err;
  }
  return nullptr;
}

OrtStatus* PrepareCuda(OrtKernelContext* ctx, const ErrCtx& c, CudaLaunch* launch) {
  launch->ctx = ctx;
  KAIO_RETURN_IF_ERROR(Api().KernelContext_GetGPUComputeStream(ctx, &launch->stream));
  // ORT's CUDA EP makes the session's device current on the thread that runs the kernel.
  cudaError_t e = cudaGetDevice(&launch->device);
  if (e != cudaSuccess) return OpError(ORT_FAIL, c, "cudaGetDevice: ", cudaGetErrorString(e));
  DeviceFacts f;
  KAIO_RETURN_IF_ERROR(FactsOf(launch->device, c, &f));
  launch->sm = f.sm;
  launch->sm_count = f.sm_count;
  launch->smem_optin = f.smem_optin;
  launch->smem_per_sm = f.smem_per_sm;
  return nullptr;
}
#else
OrtStatus* CheckCudaDeviceAtCreation(const ErrCtx& c) {
  return OpError(ORT_NOT_IMPLEMENTED, c, "this build of kaio_ort has no CUDA kernels");
}
OrtStatus* PrepareCuda(OrtKernelContext*, const ErrCtx& c, CudaLaunch*) { return CheckCudaDeviceAtCreation(c); }
#endif

}  // namespace kaio
