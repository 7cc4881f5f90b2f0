// The library's two exported symbols: RegisterCustomOps (what ORT's RegisterCustomOpsLibrary and
// SessionOptions.register_custom_ops_library call) and KaioOrtDescribe (the registered op table as
// JSON, read by kaio_ort.ops() and checked by the tests against the Python catalogue).
#include <mutex>
#include <string>

#include "common/custom_op.h"
#include "op_families.h"

namespace kaio {
namespace {

const OpList& AllOps() {
  static const OpList ops = [] {
    OpList list;
    AddMatmulTcOps(list);
    AddQuantMatmulOps(list);
    AddAttentionOps(list);
    AddQkvProjectOps(list);
    return list;
  }();
  return ops;
}

std::string DescribeJson() {
  auto io = [](const std::vector<IoSpec>& specs) {
    std::string s = "[";
    for (size_t i = 0; i < specs.size(); ++i) {
      s += Cat(i ? "," : "", "{\"name\":\"", specs[i].name, "\",\"optional\":", specs[i].optional ? "true" : "false",
               ",\"min_rank\":", specs[i].min_rank, ",\"types\":[");
      for (size_t j = 0; j < specs[i].types.size(); ++j) s += Cat(j ? "," : "", "\"", DTypeName(specs[i].types[j]), "\"");
      s += "]}";
    }
    return s + "]";
  };
  std::string s = "{\"domain\":\"com.kaio\",\"cuda\":";
#ifdef KAIO_WITH_CUDA
  s += "true";
#else
  s += "false";
#endif
  s += ",\"kernels\":[";
  const OpList& ops = AllOps();
  for (size_t i = 0; i < ops.size(); ++i) {
    s += Cat(i ? "," : "", "{\"op\":\"", ops[i]->name(), "\",\"ep\":\"", EpName(ops[i]->ep()),
             "\",\"inputs\":", io(ops[i]->inputs()), ",\"outputs\":", io(ops[i]->outputs()), "}");
  }
  return s + "]}";
}

std::mutex g_register_mutex;

}  // namespace
}  // namespace kaio

extern "C" {

__attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                   const OrtApiBase* api_base) {
  using namespace kaio;
  std::lock_guard<std::mutex> lock(g_register_mutex);
  if (OrtStatus* st = NegotiateOrtApi(api_base)) return st;
  const OrtApi& api = Api();
  // ORT keeps a pointer to the domain for as long as sessions use it: one domain per call, never
  // released (they are a few bytes each; a process registers a handful at most).
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* st = api.CreateCustomOpDomain("com.kaio", &domain)) return st;
  if (OrtStatus* st = AddOpsToDomain(domain, AllOps())) return st;
  return api.AddCustomOpDomain(options, domain);
}

__attribute__((visibility("default"))) const char* KaioOrtDescribe() {
  static const std::string json = kaio::DescribeJson();
  return json.c_str();
}

}  // extern "C"
