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

}  // namespace kaio
