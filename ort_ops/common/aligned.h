// Host checks of device pointers' alignment (16-byte vector loads, cp.async, TMA bases): one rule for
// every launcher.
#pragma once

#include <cstdint>

namespace kaio {

inline bool AlignedTo(const void* ptr, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(ptr) & (bytes - 1)) == 0;
}
inline bool Aligned16(const void* ptr) { return AlignedTo(ptr, 16); }

}  // namespace kaio
