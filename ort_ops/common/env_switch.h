// On/off switches from the environment for side-by-side runs of two kernel paths (benchmarks, probes,
// GPU tests): "0" or "1", anything else (or unset) the default. Read at each launch (one getenv, no
// measurable cost beside a launch), so one process can compare the paths.
#pragma once

#include <cstdlib>

namespace kaio {

inline bool EnvSwitch(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v && v[0] == '0' && v[1] == '\0') return false;
  if (v && v[0] == '1' && v[1] == '\0') return true;
  return fallback;
}

// KAIO_WGMMA=0: the ops with a Hopper wgmma kernel (the Async matmuls, MatmulTcGrad, MatmulInt8 W8A8)
// run their mma.sync kernels on sm_90 too, so that a Hopper tests those.
inline bool WgmmaEnabled() { return EnvSwitch("KAIO_WGMMA", true); }

}  // namespace kaio
