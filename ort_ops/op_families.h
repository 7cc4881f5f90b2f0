// Each op family adds its ops (CPU kernels always, CUDA kernels where they exist) to the table.
#pragma once

#include "common/custom_op.h"

namespace kaio {
void AddMatmulTcOps(OpList& list);     // matmul_tc/
void AddQuantMatmulOps(OpList& list);  // quant_matmul/
void AddAttentionOps(OpList& list);    // attention/
void AddQkvProjectOps(OpList& list);   // qkv_project/
}  // namespace kaio
