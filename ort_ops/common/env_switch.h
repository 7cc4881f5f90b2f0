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

// A non-negative integer setting (probes' A/B runs of a launch parameter); `fallback` when unset or not a number.
inline int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return *end == '\0' && x >= 0 && x < (1 << 30) ? int(x) : fallback;
}

// KAIO_WGMMA=0: the ops with a Hopper wgmma kernel (the Async matmuls, MatmulTcGrad, MatmulInt8 W8A8)
// run their mma.sync kernels on sm_90 too, so that a Hopper tests those.
inline bool WgmmaEnabled() { return EnvSwitch("KAIO_WGMMA", true); }

}  // namespace kaio
