#include "common/ort_api.h"

#include <cstdio>
#include <string>

namespace kaio {
namespace {
const OrtApi* g_api = nullptr;
uint32_t g_version = 0;
}  // namespace

// Calls made by the library, all present since API 17 (verified against onnxruntime_c_api.h's
// "\since" notes): CreateStatus, GetErrorCode, GetErrorMessage, ReleaseStatus,
// CreateCustomOpDomain, CustomOpDomain_Add, AddCustomOpDomain, KernelInfoGetAttribute_{int64,
// float,string}, KernelInfo_GetNodeName (15), KernelContext_{GetInputCount,GetOutputCount,
// GetInput,GetOutput,GetGPUComputeStream,GetAllocator (15)}, GetTensorTypeAndShape,
// GetTensorElementType, GetDimensionsCount, GetDimensions, GetTensorMutableData,
// ReleaseTensorTypeAndShapeInfo, CreateTensorTypeAndShapeInfo, SetTensorElementType,
// SetDimensions, ShapeInferContext_* (17), ReadOpAttr (17), AllocatorAlloc, AllocatorFree,
// ReleaseAllocator, KernelInfo_GetInputCount (14), KernelInfo_GetInputTypeInfo (14),
// CastTypeInfoToTensorInfo, ReleaseTypeInfo, CreateMemoryInfo (1), ReleaseMemoryInfo (1).
OrtStatus* NegotiateOrtApi(const OrtApiBase* base) {
  // ORT 1.x offers C API versions 1..x (and logs every refused GetApi), so start at the
  // runtime's minor version when its version string says "1.<minor>...".
  uint32_t start = ORT_API_VERSION;
  const char* ver = base->GetVersionString();
  unsigned major = 0, minor = 0;
  if (ver && std::sscanf(ver, "%u.%u", &major, &minor) == 2 && major == 1 && minor < start) start = minor;
  for (uint32_t v = start; v >= kMinOrtApiVersion; --v) {
    if (const OrtApi* api = base->GetApi(v)) {
      g_api = api;
      g_version = v;
      return nullptr;
    }
  }
  // Too old: use whatever table exists to report it (CreateStatus is entry 1 of every version).
  for (uint32_t v = kMinOrtApiVersion - 1; v >= 1; --v) {
    if (const OrtApi* api = base->GetApi(v)) {
      std::string msg = "com.kaio: onnxruntime " + std::string(base->GetVersionString()) +
                        " offers C API version " + std::to_string(v) + "; kaio_ort needs " +
                        std::to_string(kMinOrtApiVersion) + " (onnxruntime 1.17) or newer";
      return api->CreateStatus(ORT_FAIL, msg.c_str());
    }
  }
  return nullptr;  // unreachable in practice: every runtime offers version 1
}

const OrtApi& Api() { return *g_api; }
uint32_t ApiVersion() { return g_version; }

}  // namespace kaio
