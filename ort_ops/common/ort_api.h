// The ORT C API table this library talks to, negotiated at registration.
//
// The library is compiled against ORT_API_VERSION (23, Debian's 1.23.2 headers) but runs in
// runtimes down to onnxruntime-training 1.19 (API 19). RegisterCustomOps asks the runtime for
// the highest version both sides know and keeps that table; every call the library makes must
// exist in kMinOrtApiVersion (see the list in ort_api.cc), so nothing reads past the end of an
// older runtime's OrtApi struct.
#pragma once

#include <onnxruntime_c_api.h>

namespace kaio {

// 17 = ORT 1.17: InferOutputShapeFn, ShapeInferContext_*, ReadOpAttr, Get{Start,End}Version.
constexpr uint32_t kMinOrtApiVersion = 17;

// Negotiates the API with the runtime; returns an error status (or nullptr on success).
// When even kMinOrtApiVersion is unavailable, *too_old is set and the status is created with
// the oldest table the runtime offers.
OrtStatus* NegotiateOrtApi(const OrtApiBase* base);

const OrtApi& Api();          // valid after NegotiateOrtApi succeeded
uint32_t ApiVersion();        // the negotiated version (<= ORT_API_VERSION)

}  // namespace kaio
