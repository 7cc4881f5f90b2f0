// Placeholder until this family's CPU kernels land (same commit series).
#include "op_families.h"

namespace kaio {
void AddQkvProjectOps(OpList&) {}
}  // namespace kaio
