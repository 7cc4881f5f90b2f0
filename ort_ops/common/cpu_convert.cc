#include "common/cpu_convert.h"

#include "common/half.h"

namespace kaio {

std::vector<double> ToDouble(const ConstTensor& t) {
  int64_t n = NumElements(t.shape);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (t.type) {
      case kF32: out[i] = t.as<float>()[i]; break;
      case kF16: out[i] = HalfBitsToFloat(t.as<uint16_t>()[i]); break;
      case kBF16: out[i] = Bf16BitsToFloat(t.as<uint16_t>()[i]); break;
      case kI8: out[i] = t.as<int8_t>()[i]; break;
      case kU8: out[i] = t.as<uint8_t>()[i]; break;
      case kU32: out[i] = t.as<uint32_t>()[i]; break;
      default: out[i] = 0; break;  // callers validate types first
    }
  }
  return out;
}

void StoreDouble(const double* src, int64_t n, const MutTensor& t) {
  if (!t.present) return;  // an optional output the node does not produce
  for (int64_t i = 0; i < n; ++i) {
    float f = static_cast<float>(src[i]);
    switch (t.type) {
      case kF32: t.as<float>()[i] = f; break;
      case kF16: t.as<uint16_t>()[i] = FloatToHalfBits(f); break;
      case kBF16: t.as<uint16_t>()[i] = FloatToBf16Bits(f); break;
      default: break;
    }
  }
}

}  // namespace kaio
